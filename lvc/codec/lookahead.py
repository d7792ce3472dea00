"""The encoder's work on frames still to come, on a thread of its own.

Some of a frame's work needs only the *input* frames, not anything the coding of the
frames before it produces: a conditional frame's motion (searched between two input
frames) and the intra analysis (the I-frame check, forced I-frames). While the encoder
codes frame n, this thread searches and analyses frame n + 1, so that on two cores that
work overlaps the rest of the coding, where letting the coding's small operations fan
out over both cores gained little (docs/models.md, "Session 33"). The analysis is
speculative: a conditional frame the encoder trusts without the I check never uses it.

Every job runs on one intra-op thread, so its result does not depend on the timing or
on which thread runs it. The helper thread runs jobs in the order they were started; a
job asked for (:meth:`Lookahead.take`) that the helper has not started yet runs on the
asking thread instead of waiting behind the others: on two cores the helper's queue,
not the coding, bounded the encoder (session 42). (An encoder that refines latents,
``slow`` and still images, keeps its analyses on its own thread, with all of its
intra-op threads; its motion search is still a job here.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Any, NamedTuple

import numpy as np
import torch

from lvc.codec.frame import STRIDE, _pad
from lvc.codec.motion import estimate_motion, frame_luma
from lvc.codec.partition import QUARTER_PAD, QuarterSearch
from lvc.codec.phases import PhasePlanes
from lvc.codec.synthesis import WorkerPool, serial_main_thread

QUARTER_BANDS = 3  # jobs a frame's quarters' search is split into (bands of block rows)
# jobs held: the frame being coded's and the next one's (a search, its quarters' bands, an analysis)
PENDING_LIMIT = 2 * (QUARTER_BANDS + 2)
PLANS_LIMIT = 4  # motion searches held (two are live: the frame being coded's and the next one's)


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

    def take(self, key: Hashable, fn: Callable, *args) -> Any:
        """The result of ``fn(*args)``: the job started ahead under ``key`` if the helper has
        begun it, else run here, on one intra-op thread as the helper's are."""
        pending = self._pending.pop(key, None)
        if pending is not None and not pending[1].cancel():
            return pending[1].result()
        with serial_main_thread():
            return fn(*args)

    def close(self) -> None:
        self._pending = {}
        self._pool.close()


class Found(NamedTuple):
    """A frame's motion: the vectors (hb, wb, 2); with ``sharp_too``, the sharp copy's own
    (:func:`lvc.codec.motion.estimate_motion`); with ``quarters``, its blocks' quarters'
    (2 hb, 2 wb, 2) (:class:`lvc.codec.partition.QuarterSearch`)."""

    mv: torch.Tensor
    sharp: torch.Tensor | None = None
    quarters: torch.Tensor | None = None


class _Once:
    """``fn(*args)``, computed by whichever thread asks first; the others wait for it."""

    def __init__(self, fn: Callable, *args) -> None:
        self._fn, self._args, self._lock, self._value = fn, args, threading.Lock(), None

    def get(self) -> Any:
        with self._lock:
            if self._fn is not None:
                self._value, self._fn, self._args = self._fn(*self._args), None, ()
            return self._value


class MotionSearch:
    """The motion (:class:`Found`) of ``frame`` against ``previous`` (8-bit RGB input
    frames), as :func:`lvc.codec.motion.estimate_motion` with this block size, effort and
    precision, searched on ``lookahead``'s thread: the blocks' search first, then its
    quarters' in ``QUARTER_BANDS`` jobs, of which the coding thread takes those the helper
    has not begun (from the last: the helper works from the first)."""

    def __init__(self, block: int, keep: int, frac: int, lookahead: Lookahead) -> None:
        self.block, self.keep, self.frac, self.lookahead = block, keep, frac, lookahead
        # the last frame's, from either thread: replaced whole (one tuple), never changed
        self._luma: tuple[np.ndarray, torch.Tensor] | None = None
        self._plans: dict[tuple, list[tuple[tuple, Callable]]] = {}  # search key -> its jobs

    def start(self, previous: np.ndarray, frame: np.ndarray, rate_weight: float, sharp_too: bool = False,
              quarters: bool = False) -> None:
        """Search ``frame`` against ``previous`` in the background (neither may change)."""
        key = self._key(previous, frame, rate_weight, sharp_too, quarters)
        if key in self._plans:
            return
        self._plans[key] = self._jobs(key, previous, frame, rate_weight, sharp_too, quarters)
        while len(self._plans) > PLANS_LIMIT:  # searches started and never asked for
            self._plans.pop(next(iter(self._plans)))
        for job, fn in self._plans[key]:
            self.lookahead.start(job, (previous, frame), fn)

    def vectors(self, previous: np.ndarray, frame: np.ndarray, rate_weight: float, sharp_too: bool = False,
                quarters: bool = False) -> Found:
        """The search's result, started now unless :meth:`start` already did."""
        key = self._key(previous, frame, rate_weight, sharp_too, quarters)
        self.start(previous, frame, rate_weight, sharp_too, quarters)
        (job, fn), *bands = self._plans.pop(key)
        _, _, mv, sharp, _ = self.lookahead.take(job, fn)
        fine = torch.cat([self.lookahead.take(band, f) for band, f in reversed(bands)][::-1]) if bands else None
        if fine is not None and fine.shape[0] != 2 * mv.shape[0]:
            raise RuntimeError("the quarters' bands do not cover the blocks")  # (a bug, not bad input)
        return Found(mv, sharp, fine)

    @staticmethod
    def _key(previous: np.ndarray, frame: np.ndarray, rate_weight: float, sharp_too: bool, quarters: bool) -> tuple:
        return "motion", id(previous), id(frame), rate_weight, sharp_too, quarters

    def _jobs(self, key: tuple, previous: np.ndarray, frame: np.ndarray, rate_weight: float, sharp_too: bool,
              quarters: bool) -> list[tuple[tuple, Callable]]:
        """The search's jobs, keyed: the blocks' search, then the quarters' bands."""
        found = _Once(self._search, previous, frame, rate_weight, sharp_too, quarters)
        jobs: list[tuple[tuple, Callable]] = [(key, found.get)]
        if quarters:
            def prepare() -> QuarterSearch:
                ref, cur, mv, _, phases = found.get()
                return QuarterSearch(ref, cur, mv, self.block, self.frac, rate_weight, phases)

            search = _Once(prepare)
            height = frame.shape[0] + -frame.shape[0] % STRIDE  # the luma's, padded as coded
            cuts = np.unique(np.linspace(0, -(-height // self.block), QUARTER_BANDS + 1).round().astype(int))
            for band, (first, last) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
                jobs.append(((*key, band), lambda a=int(first), b=int(last): search.get().rows(a, b)))
        return jobs

    def _search(self, previous: np.ndarray, frame: np.ndarray, rate_weight: float, sharp_too: bool,
                quarters: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, PhasePlanes]:
        """(reference luma, frame luma, vectors, the sharp copy's vectors or None, the
        reference's phase planes: padded for the quarters' search too if ``quarters``)."""
        ref, cur = self._luma_of(previous), self._luma_of(frame)
        phases = PhasePlanes(ref, self.frac, QUARTER_PAD if quarters else 0)
        found = estimate_motion(ref, cur, self.block, rate_weight=rate_weight, keep=self.keep, frac=self.frac,
                                sharp_too=sharp_too, phases=phases)
        mv, sharp = (found[0][0], found[1][0]) if sharp_too else (found[0], None)
        return ref, cur, mv, sharp, phases

    def _luma_of(self, frame: np.ndarray) -> torch.Tensor:
        """The search's luma of ``frame`` (padded as coded), kept for the next search, whose
        reference it is (with a copy of the frame: a caller may reuse its buffer)."""
        kept = self._luma
        if kept is None or not np.array_equal(kept[0], frame):
            kept = self._luma = np.array(frame), _pad(frame_luma(frame))
        return kept[1]
