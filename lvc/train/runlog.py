"""A run's CSV logs (``log.csv``, ``val.csv``), consistent across kills and resumes.

A process killed after its last checkpoint has already logged steps that the resumed run
repeats. Resuming therefore first drops the rows after the checkpoint's step, so every
step appears once and the curves do not fold back. The ``time`` column is the run's wall
time (training plus the validation and plots done along the way, without the gaps between
a kill and its resume): checkpoints record it (``elapsed``) and a resumed process counts
on from there instead of from zero.
"""

from __future__ import annotations

import csv
import os
import sys
import time
from pathlib import Path


def truncate_after(path: Path, step: int) -> list[str] | None:
    """Drop the rows of ``path`` (a CSV whose first column is the step) after ``step``, and a
    last line a kill cut short (no newline, or fewer fields than the header); rewrites the
    file atomically only if that changes it. Returns its header (None if absent or empty).

    At step 0 (a fresh run into a folder that holds an older run's logs) nothing of them is
    kept: they are moved aside to a free ``NAME.previous*.csv`` instead of being mixed with
    the new run. So is a log that cannot be read as CSV text, whatever the step.
    """
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        text = path.read_text(encoding="utf-8")
        rows = list(csv.reader(text.splitlines()))
    except (UnicodeDecodeError, csv.Error):
        _set_aside(path, "is not a readable CSV log")
        return None
    if not rows or not any(rows[0]):
        _set_aside(path, "has no header")
        return None
    header, rows = rows[0], rows[1:]
    if step == 0:
        if rows:
            _set_aside(path, "is an earlier run's log")
            return None
        return header
    cut = bool(rows) and (not text.endswith("\n") or len(rows[-1]) < len(header))  # by a kill
    kept = [r for r in (rows[:-1] if cut else rows) if r and _step(r) <= step]
    if len(kept) != len(rows):
        tmp = path.with_suffix(path.suffix + ".tmp")
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([header, *kept])
        os.replace(tmp, path)
    return header


def _set_aside(path: Path, why: str) -> Path:
    """Move ``path`` to the first free ``NAME.previous.csv``, ``NAME.previous-2.csv``, ...
    so no earlier log is ever overwritten."""
    n = 1
    while (aside := path.with_suffix(".previous.csv" if n == 1 else f".previous-{n}.csv")).exists():
        n += 1
    os.replace(path, aside)
    print(f"{path}: {why}; moved to {aside.name}", file=sys.stderr, flush=True)
    return aside


def _step(row: list[str]) -> float:
    try:
        return float(row[0])
    except ValueError:
        return float("inf")


def has_step(path: Path, step: int) -> bool:
    """Whether a log holds a row for ``step``."""
    if not path.exists():
        return False
    with open(path, newline="", errors="replace") as f:
        return any(r and r[0] == str(step) for r in csv.reader(f))


def last_time(path: Path) -> float:
    """The ``time`` of the last row of a log (0 if none): where older checkpoints, which did
    not record their elapsed time, continue from."""
    if not path.exists():
        return 0.0
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    try:
        return float(rows[-1]["time"]) if rows else 0.0
    except (KeyError, TypeError, ValueError):
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
        n = len(self.header)  # an older run's columns: cut or pad, so every row has n fields
        row = [step, f"{self.elapsed():.1f}", *values]
        self._writer.writerow((row + [""] * n)[:n])
        self._file.flush()

    def close(self) -> None:
        self._file.close()
