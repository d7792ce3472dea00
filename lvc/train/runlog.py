"""A run's CSV logs (``log.csv``, ``val.csv``), consistent across kills and resumes.

A process killed after its last checkpoint has already logged steps that the resumed run
repeats. Resuming therefore first drops the rows after the checkpoint's step, so every
step appears once and the curves do not fold back. The ``time`` column is the run's
training wall time: checkpoints record it (``elapsed``) and a resumed process counts on
from there instead of from zero.
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path


def truncate_after(path: Path, step: int) -> list[str] | None:
    """Drop the rows of ``path`` (a CSV whose first column is the step) after ``step``,
    rewriting it atomically only if that changes it; returns its header (None if absent)."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        rows = list(reader)
    kept = [r for r in rows if r and _step(r) <= step]
    if len(kept) != len(rows):
        tmp = path.with_suffix(path.suffix + ".tmp")
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([header, *kept])
        os.replace(tmp, path)
    return header


def _step(row: list[str]) -> float:
    try:
        return float(row[0])
    except ValueError:  # a line cut short by a kill: drop it
        return float("inf")


def last_time(path: Path) -> float:
    """The ``time`` of the last row of a log (0 if none): where older checkpoints, which did
    not record their elapsed time, continue from."""
    if not path.exists():
        return 0.0
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    try:
        return float(rows[-1]["time"]) if rows else 0.0
    except (KeyError, ValueError):
        return 0.0


class RunLog:
    """``log.csv`` of a run starting (or resuming) at ``step``: ``write(step, ...)`` adds a
    row with the run's elapsed training time after the step."""

    def __init__(self, path: Path, header: list[str], step: int, elapsed: float | None = None) -> None:
        old = truncate_after(path, step)
        self.header = old or header  # keep an older run's columns
        self.base = elapsed if elapsed is not None else (last_time(path) if step else 0.0)
        self.t0 = time.time()
        self._file = open(path, "a", newline="")
        self._writer = csv.writer(self._file)
        if old is None:
            self._writer.writerow(self.header)

    def elapsed(self) -> float:
        return self.base + time.time() - self.t0

    def write(self, step: int, *values: str) -> None:
        self._writer.writerow([step, f"{self.elapsed():.1f}", *values][:len(self.header)])
        self._file.flush()

    def close(self) -> None:
        self._file.close()
