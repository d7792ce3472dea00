"""The encoder's work on frames still to come, on a thread of its own.

Some of a frame's work needs only the *input* frames, not anything the coding of the
frames before it produces: a conditional frame's motion (searched between two input
frames) and the intra analysis (the I-frame check, forced I-frames). While the encoder
codes frame n, this thread searches and analyses frame n + 1, so that on two cores that
work overlaps the rest of the coding, where letting the coding's small operations fan
out over both cores gained little (docs/models.md, "Session 33"). The analysis is
speculative: a conditional frame the encoder trusts without the I check never uses it.

Where an encoder has a lookahead, every such job runs on its thread, on one intra-op
thread, whether it was started ahead or is asked for on the spot, so the results do not
depend on the timing. (An encoder that refines latents, ``slow`` and still images, keeps
its analyses on its own thread, with all of its intra-op threads; its motion search
still runs here.)
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import NamedTuple

import numpy as np
import torch

from lvc.codec.frame import _pad
from lvc.codec.motion import estimate_motion, frame_luma
from lvc.codec.partition import search_quarters
from lvc.codec.synthesis import WorkerPool

PENDING_LIMIT = 4  # jobs held: the frame being coded's and the next one's (a search and an analysis each)


class Lookahead:
    """Keyed jobs on one helper thread: started ahead (:meth:`start`), collected once (:meth:`take`)."""

    def __init__(self) -> None:
        self._pool = WorkerPool(1, "lvc-lookahead")
        # key -> (what the key's ids refer to, held so they cannot be reused; the job)
        self._pending: dict[Hashable, tuple[object, Future]] = {}

    def start(self, key: Hashable, held: object, fn: Callable, *args) -> None:
        """Run ``fn(*args)`` in the background unless a job with ``key`` is pending; the
        oldest pending job beyond ``PENDING_LIMIT`` is forgotten (its result unused)."""
        if key in self._pending:
            return
        self._pending[key] = (held, self._pool.submit(fn, *args))
        while len(self._pending) > PENDING_LIMIT:
            self._pending.pop(next(iter(self._pending)))[1].cancel()  # (runs on if it has started)

    def take(self, key: Hashable, held: object, fn: Callable, *args):
        """The result of ``fn(*args)``, from the job started ahead under ``key`` if there is one."""
        self.start(key, held, fn, *args)
        return self._pending.pop(key)[1].result()

    def close(self) -> None:
        self._pending = {}
        self._pool.close()


class Found(NamedTuple):
    """A frame's motion: the vectors (hb, wb, 2); with ``sharp_too``, the sharp copy's own
    (:func:`lvc.codec.motion.estimate_motion`); with ``quarters``, its blocks' quarters'
    (2 hb, 2 wb, 2) (:func:`lvc.codec.partition.search_quarters`)."""

    mv: torch.Tensor
    sharp: torch.Tensor | None = None
    quarters: torch.Tensor | None = None


class MotionSearch:
    """The motion (:class:`Found`) of ``frame`` against ``previous`` (8-bit RGB input
    frames), as :func:`lvc.codec.motion.estimate_motion` with this block size, effort and
    precision, searched on ``lookahead``'s thread."""

    def __init__(self, block: int, keep: int, frac: int, lookahead: Lookahead) -> None:
        self.block, self.keep, self.frac, self.lookahead = block, keep, frac, lookahead
        self._luma: tuple[np.ndarray, torch.Tensor] | None = None  # the last frame's (that thread only)

    def start(self, previous: np.ndarray, frame: np.ndarray, rate_weight: float, sharp_too: bool = False,
              quarters: bool = False) -> None:
        """Search ``frame`` against ``previous`` in the background (neither may change)."""
        key = self._key(previous, frame, rate_weight, sharp_too, quarters)
        self.lookahead.start(key, (previous, frame), self._search, previous, frame, rate_weight, sharp_too, quarters)

    def vectors(self, previous: np.ndarray, frame: np.ndarray, rate_weight: float, sharp_too: bool = False,
                quarters: bool = False) -> Found:
        """The search's result, started now unless :meth:`start` already did."""
        key = self._key(previous, frame, rate_weight, sharp_too, quarters)
        return self.lookahead.take(key, (previous, frame), self._search, previous, frame, rate_weight, sharp_too,
                                   quarters)

    @staticmethod
    def _key(previous: np.ndarray, frame: np.ndarray, rate_weight: float, sharp_too: bool, quarters: bool) -> tuple:
        return "motion", id(previous), id(frame), rate_weight, sharp_too, quarters

    def _search(self, previous: np.ndarray, frame: np.ndarray, rate_weight: float, sharp_too: bool,
                quarters: bool) -> Found:
        ref, cur = self._luma_of(previous), self._luma_of(frame)
        found = estimate_motion(ref, cur, self.block, rate_weight=rate_weight, keep=self.keep, frac=self.frac,
                                sharp_too=sharp_too)
        mv, sharp = (found[0][0], found[1][0]) if sharp_too else (found[0], None)
        fine = search_quarters(ref, cur, mv, self.block, self.frac, rate_weight) if quarters else None
        return Found(mv, sharp, fine)

    def _luma_of(self, frame: np.ndarray) -> torch.Tensor:
        """The search's luma of ``frame`` (padded as coded), kept for the next search, whose
        reference it is (with a copy of the frame: a caller may reuse its buffer)."""
        kept = self._luma
        if kept is None or not np.array_equal(kept[0], frame):
            kept = self._luma = np.array(frame), _pad(frame_luma(frame))
        return kept[1]
