"""Pictures of ``pixel_ref`` conditional frames: the display's own picture blended per pixel
with the previous picture, moved by the frame's block motion, plus a correction
(:mod:`lvc.models.conditional`).

The display transform (the heavy part) depends only on the exact context, so it still runs
on a synthesis worker as soon as the frame is entropy-decoded. The blend with the previous
picture is a few elementwise operations, done in the thread that asks for the picture, after
the previous picture has arrived: a worker never waits for another worker's job, so any
number of workers (one included) cannot deadlock. The decoder asks on a composing thread of
its own (:func:`lvc.codec.api.iter_decode`), in frame order, so its decoding thread never
waits for a picture; a blended (or skipped-block) picture is composed once, under a lock,
whichever thread asks first.
Pictures feed nothing the probabilities depend on, so the decoder still cannot drift; on
one machine, encoder and decoder compute the same float operations and show the same
picture bit for bit.
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from lvc.codec.frame import to_tensor
from lvc.codec.skip import CHAIN_LIMIT, moved_picture
from lvc.codec.synthesis import to_uint8
from lvc.models.conditional import blend


def blend_picture(raw: torch.Tensor, moved: np.ndarray | None) -> np.ndarray:
    """8-bit picture from the display's float output (PIXEL_OUT, h, w) and the moved previous
    picture (None: the display's own picture)."""
    h, w = raw.shape[-2:]
    return to_uint8(blend(raw[None], None if moved is None else to_tensor(moved)), h, w)


class BlendedPicture:
    """Future-like picture of a ``pixel_ref`` frame (module docstring). Composed on the first
    ``result()``, after which it lets go of the previous picture; a chain nobody asks for is
    resolved every ``CHAIN_LIMIT`` frames, so it never holds more than that many outputs."""

    def __init__(self, raw, previous, mv: torch.Tensor | None, block: int, moved: np.ndarray | None = None,
                 frac: int = 1) -> None:
        """``raw``: the display's float output, pending; ``moved``: the previous picture
        already moved by ``mv``, if the caller has it. No ``previous`` and no ``moved``:
        the display's own picture (a context shown alone)."""
        self._raw, self._previous, self._mv, self._block, self._moved = raw, previous, mv, block, moved
        self._frac = frac
        self._picture: np.ndarray | None = None
        self._lock = threading.RLock()  # composed once, whichever thread asks first
        self.depth = getattr(previous, "depth", 0) + 1 if moved is None and _unresolved(previous) else 1
        if self.depth > CHAIN_LIMIT:
            previous.result()
            self.depth = 1

    def moved(self) -> np.ndarray | None:
        """The previous picture moved by the motion (computed once; a ``FRAME_PS`` picture
        composed on top copies its skipped blocks from it too)."""
        with self._lock:
            if self._moved is None and self._previous is not None:
                self._moved = moved_picture(self._previous.result(), self._mv, self._block, self._frac)
            return self._moved

    def result(self) -> np.ndarray:
        with self._lock:
            if self._picture is None:
                self._picture = blend_picture(self._raw.result(), self.moved())
                self._raw, self._previous, self._moved = None, None, None
            return self._picture


def _unresolved(picture) -> bool:
    return getattr(picture, "_picture", 1) is None
