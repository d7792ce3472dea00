"""A picture with its residual layer (:mod:`lvc.codec.residual`), composed once, on whichever
thread first asks: the decoder leaves the layer's decoding and composition to the thread
composing pictures, since nothing the decoding thread needs depends on them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

from lvc.bitstream import syntax
from lvc.codec import colour
from lvc.codec.residual import Residual, add_residual

FLAT = 128  # an IL frame's base picture: R = G = B = FLAT (lvc.codec.layer_intra)


def flat_picture(height: int, width: int) -> Future:
    """The base picture of an IL frame, as a finished pending picture."""
    done: Future = Future()
    done.set_result(np.full((height, width, 3), FLAT, dtype=np.uint8))
    return done


class ResidualPicture:
    """Future-like: the base picture (pending) plus a residual, composed once on the first
    ``result()`` (or ``planes()``), whichever thread asks. Later frames' pictures ask it for
    theirs. The residual may be given as a function that decodes it: nothing the decoding
    thread needs depends on it, so the decoder leaves that work to the thread composing
    pictures. In colour format 1, ``planes()`` gives the shown planes (lvc.codec.colour)."""

    def __init__(self, base, residual: Residual | Callable[[], Residual], height: int, width: int) -> None:
        self._base, self._residual, self._size = base, residual, (height, width)
        self._picture: np.ndarray | None = None
        self._planes: colour.Planes | None = None
        self._lock = threading.Lock()
        self.depth = getattr(base, "depth", 0)  # pictures chained unresolved (lvc.codec.blend)

    def _compose(self) -> None:
        if self._picture is None:
            r = self._residual if isinstance(self._residual, Residual) else self._residual()
            base = self._base.result()
            if r.colour_format == syntax.COLOUR_YUV420:
                quarter = colour.quarter_yuv(base)
                delta = r.delta(quarter, *self._size)
                self._picture = add_residual(base, colour.rgb_delta(*delta))
                self._planes = colour.rounded_planes(tuple(q + d for q, d in zip(quarter, delta, strict=True)))
            else:
                self._picture = add_residual(base, r.pixels(*self._size))
            self._base = self._residual = None

    def result(self) -> np.ndarray:
        with self._lock:
            self._compose()
            return self._picture

    def planes(self) -> colour.Planes | None:
        """The shown planes of a colour format 1 layer (None for format 0's)."""
        with self._lock:
            self._compose()
            return self._planes
