"""Colour format 1 (``syntax.COLOUR_YUV420``): pictures shown as 8-bit YUV 4:2:0 planes.

The learned layers code 8-bit RGB. A yuv420p source converted to RGB loses what falls
outside the RGB cube (swscale clips it: black bars below Y = 16, saturated colours), and
the shown picture converted back to YUV rounds again: on CiscoVT2 the round trip alone, with
nothing coded, stops PSNR-YUV at 38.6 dB (docs/models.md, "The residual layer"). In colour
format 1 the shown picture is the decoded RGB picture's exact conversion to BT.601
limited-range YUV 4:2:0, in quarter levels, plus the residual layer coded in Y, Cb and Cr
against the source's own planes; later frames predict from the RGB picture plus that
residual converted to RGB. Every step here is integer arithmetic (part of the bitstream),
so encoder and decoder agree bit for bit.
"""

from __future__ import annotations

import threading

import numpy as np

from lvc.io.convert import Planes

# BT.601 limited range in 1/256 (the usual 8-bit integer matrices): RGB -> Y, Cb, Cr, and the
# inverse's Y gain, Cr -> R, Cb -> G, Cr -> G, Cb -> B.
TO_YUV = np.array([[66, 129, 25], [-38, -74, 112], [112, -94, -18]], dtype=np.int32)
Y_GAIN, CR_R, CB_G, CR_G, CB_B = 298, 409, -100, -208, 516


def quarter_yuv(rgb: np.ndarray) -> Planes:
    """Y (H, W) and Cb, Cr (:func:`lvc.io.convert.chroma_size`) of a uint8 RGB picture in quarter levels, int32:
    ``Y = ((66 R + 129 G + 25 B + 32) >> 6) + 64``; chroma from the sums over 2x2 pixels
    (edge pixels repeated at odd sizes), ``Cb = ((sum(-38 R - 74 G + 112 B) + 128) >> 8) + 512``
    and Cr likewise."""
    h, w = rgb.shape[:2]
    r, g, b = (rgb[..., i].astype(np.int32) for i in range(3))
    y = ((TO_YUV[0, 0] * r + TO_YUV[0, 1] * g + TO_YUV[0, 2] * b + 32) >> 6) + 64
    sums = []
    for c in (r, g, b):  # each channel summed over 2x2 pixels first (the matrix is linear)
        c = np.pad(c, ((0, h % 2), (0, w % 2)), mode="edge") if h % 2 or w % 2 else c
        sums.append(c[0::2, 0::2] + c[1::2, 0::2] + c[0::2, 1::2] + c[1::2, 1::2])
    cb, cr = (((m[0] * sums[0] + m[1] * sums[1] + m[2] * sums[2] + 128) >> 8) + 512 for m in TO_YUV[1:])
    return y, cb, cr


def rgb_delta(dy: np.ndarray, dcb: np.ndarray, dcr: np.ndarray) -> np.ndarray:
    """(H, W, 3) int16 RGB change of a Y, Cb, Cr change in quarter levels (chroma repeated
    over its 2x2 pixels): ``R = (298 Y + 409 Cr + 512) >> 10``, ``G = (298 Y - 100 Cb - 208
    Cr + 512) >> 10``, ``B = (298 Y + 516 Cb + 512) >> 10``, each within +-255."""
    h, w = dy.shape
    hc, wc = dcb.shape
    # int32 where no sum can overflow it (any layer a stream can carry in range), else int64
    big = max(np.abs(p).max(initial=0) for p in (dy, dcb, dcr)) >= 1 << 20
    t = np.int64 if big else np.int32
    cb, cr = dcb.astype(t), dcr.astype(t)

    def up(c: np.ndarray) -> np.ndarray:  # each chroma sample over its 2x2 pixels
        return np.broadcast_to(c[:, None, :, None], (hc, 2, wc, 2)).reshape(2 * hc, 2 * wc)[:h, :w]

    y = Y_GAIN * dy.astype(t) + 512
    out = np.empty((h, w, 3), dtype=np.int16)
    for i, c in enumerate((CR_R * cr, CB_G * cb + CR_G * cr, CB_B * cb)):
        out[..., i] = np.clip((y + up(c)) >> 10, -255, 255)
    return out


def shown_planes(rgb: np.ndarray, delta: Planes | None = None) -> Planes:
    """The shown uint8 planes of an RGB picture and a residual ``delta`` (quarter levels, or
    None): ``(quarter + delta + 2) >> 2``, clamped to 0..255."""
    base = quarter_yuv(rgb)
    if delta is not None:
        base = tuple(b + d for b, d in zip(base, delta))
    return rounded_planes(base)


def rounded_planes(quarter: Planes) -> Planes:
    """uint8 planes of quarter-level ones: ``(p + 2) >> 2``, clamped to 0..255."""
    y, cb, cr = (np.clip((p + 2) >> 2, 0, 255).astype(np.uint8) for p in quarter)
    return y, cb, cr


def grey_planes(planes: Planes) -> Planes:
    """A grey frame's planes (``syntax.GREY_FLAG`` in colour format 1): chroma at 128."""
    y, cb, cr = planes
    return y, np.full_like(cb, 128), np.full_like(cr, 128)


class PlanesPicture:
    """Future-like: the shown planes of a pending RGB picture (``result()``). A pending
    picture that carries a residual layer (:class:`lvc.codec.residual_picture.ResidualPicture`)
    gives its own (``planes()``, None for colour format 0's); any other is converted."""

    def __init__(self, pending, grey: bool = False) -> None:
        self._pending, self._grey = pending, grey
        self._planes: Planes | None = None
        self._lock = threading.Lock()

    def result(self) -> Planes:
        with self._lock:
            if self._planes is None:
                p = self._pending
                planes = p.planes() if hasattr(p, "planes") else None
                if planes is None:
                    planes = shown_planes(p.result())
                self._planes = grey_planes(planes) if self._grey else planes
                self._pending = None
            return self._planes
