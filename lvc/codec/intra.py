"""Intra macroblocks in the residual layer (colour format 1, format 1.7): spatial prediction.

Where a copy fails (uncovered background, a deforming object, a hand that turns), the
residual layer pays for the whole block. Classical codecs predict such a block from its
decoded neighbours instead: x264 coding lvc's own copied pictures of native-resolution
clips gains 12-17% from its intra 4x4 / 8x8 blocks alone (docs/models.md, "Session 43").

A layer with intra macroblocks (frame-type bit ``syntax.INTRA_FLAG``) appends to its section
(:mod:`lvc.codec.residual`, item 4):

1. one flag per 16x16 macroblock (an 8x8 block of each chroma plane), coded as the coded-block
   flags are (anchors, then the others by their neighbours' count, a level per context);
2. for every intra macroblock in raster order, the modes of its four 8x8 luma blocks (raster
   order) and one chroma mode for both chroma planes, each under a uniform row over ``MODES``.

An intra block's picture is its prediction plus its residual (instead of the base picture
plus its residual). Predictions read the unfiltered sum of the row above and the column to
the left, in quarter levels; samples above or left of the picture read ``OUTSIDE``. Blocks
are predicted in raster order of macroblocks (luma blocks in raster order inside), so every
sample read is final. Everything is integer arithmetic: encoder and decoder agree exactly.
"""

from __future__ import annotations

import numpy as np

BLOCK = 8
MB = 16  # luma samples per macroblock side
LUMA_MODES = 4  # luma mode symbols per intra macroblock (its 8x8 blocks)
MODES = 4
DC, VERTICAL, HORIZONTAL, PLANAR = range(MODES)
OUTSIDE = 512  # quarter levels (mid grey) of the samples above or left of the picture
_X = np.arange(BLOCK)


def predict(top: np.ndarray, left: np.ndarray, mode: int, out: np.ndarray | None = None) -> np.ndarray:
    """(8, 8) integer prediction in quarter levels from the 8 samples ``top`` (the row above)
    and ``left`` (the column to the left); ``...`` batch dimensions lead. Planar is HEVC's
    with the top row's last sample for the top right and the left column's for the bottom
    left. ``out``: where to write it (else a new array)."""
    top, left = np.asarray(top), np.asarray(left)  # integers: exact in their own type (int32 holds every sum)
    if out is None:
        out = np.empty((*top.shape[:-1], BLOCK, BLOCK), dtype=np.result_type(top, left))
    if mode == DC:
        out[...] = ((top.sum(-1) + left.sum(-1) + 8) >> 4)[..., None, None]
    elif mode == VERTICAL:
        out[...] = top[..., None, :]
    elif mode == HORIZONTAL:
        out[...] = left[..., :, None]
    elif mode == PLANAR:
        x, y = _X[None, :], _X[:, None]
        t, lf = top[..., None, :], left[..., :, None]
        right, bottom = top[..., -1, None, None], left[..., -1, None, None]
        out[...] = ((BLOCK - 1 - x) * lf + (x + 1) * right + (BLOCK - 1 - y) * t + (y + 1) * bottom + BLOCK) >> 4
    else:
        raise ValueError(f"intra mode {mode} out of range")
    return out


def predictions(top: np.ndarray, left: np.ndarray) -> np.ndarray:
    """Every mode's prediction: (..., MODES, 8, 8)."""
    out = np.empty((*top.shape[:-1], MODES, BLOCK, BLOCK), dtype=np.result_type(top, left))
    for m in range(MODES):
        predict(top, left, m, out[..., m, :, :])
    return out


class IntraPlanes:
    """Y, Cb, Cr sums (base plus residual, quarter levels) padded to whole macroblocks, with
    a row above and a column left of ``OUTSIDE``: where intra blocks are predicted and set."""

    def __init__(self, base: tuple[np.ndarray, ...], residual: tuple[np.ndarray, ...],
                 mb_shape: tuple[int, int]) -> None:
        self.size = [p.shape for p in base]
        self.planes = []
        for i, (b, r) in enumerate(zip(base, residual, strict=True)):
            s = MB >> min(i, 1)  # a macroblock's side in this plane
            h, w = mb_shape[0] * s, mb_shape[1] * s
            p = np.full((h + 1, w + 1), OUTSIDE, dtype=np.int64)
            p[1:, 1:] = np.pad(b, ((0, h - b.shape[0]), (0, w - b.shape[1])), mode="edge")
            p[1:1 + r.shape[0], 1:1 + r.shape[1]] += r[:h, :w]
            self.planes.append(p)

    def neighbours(self, plane: int, y: int, x: int) -> tuple[np.ndarray, np.ndarray]:
        """The row above and the column left of the 8x8 block at sample (y, x)."""
        p = self.planes[plane]
        return p[y, x + 1:x + 1 + BLOCK], p[y + 1:y + 1 + BLOCK, x]

    def block(self, plane: int, y: int, x: int) -> np.ndarray:
        """The 8x8 block at sample (y, x) (a view)."""
        return self.planes[plane][y + 1:y + 1 + BLOCK, x + 1:x + 1 + BLOCK]

    def whole(self, r: np.ndarray, plane: int) -> np.ndarray:
        """A residual plane ``r`` (whole blocks) zero-padded to ``plane``'s macroblocks."""
        h, w = self.planes[plane].shape
        return np.pad(r, ((0, h - 1 - r.shape[0]), (0, w - 1 - r.shape[1])))

    def cropped(self) -> tuple[np.ndarray, ...]:
        """The planes at the picture's size."""
        return tuple(p[1:1 + h, 1:1 + w] for p, (h, w) in zip(self.planes, self.size, strict=True))


def luma_blocks(my: int, mx: int) -> list[tuple[int, int]]:
    """Sample positions of macroblock (my, mx)'s four luma blocks, in coding order."""
    return [(my * MB + dy, mx * MB + dx) for dy in (0, BLOCK) for dx in (0, BLOCK)]


def compose(base: tuple[np.ndarray, ...], residual: tuple[np.ndarray, ...], intra: np.ndarray,
            modes: np.ndarray) -> tuple[np.ndarray, ...]:
    """The unfiltered sums (cropped to ``base``'s sizes) of a layer with intra macroblocks:
    ``base + residual`` everywhere but in the ``intra`` macroblocks (mbh, mbw) bool, where
    each block is its prediction (``modes``, (intra count, 5): four luma, one chroma) plus
    its residual. ``residual`` planes are uncropped (whole blocks, zero beyond)."""
    planes = IntraPlanes(base, residual, intra.shape)
    res = [planes.whole(r, i) for i, r in enumerate(residual)]
    for (my, mx), m in zip(zip(*np.nonzero(intra), strict=True), modes, strict=True):
        for (y, x), mode in zip(luma_blocks(my, mx), m[:LUMA_MODES], strict=True):
            pred = predict(*planes.neighbours(0, y, x), int(mode))
            planes.block(0, y, x)[:] = pred + res[0][y:y + BLOCK, x:x + BLOCK]
        y, x = my * BLOCK, mx * BLOCK
        for c in (1, 2):
            planes.block(c, y, x)[:] = predict(*planes.neighbours(c, y, x), int(m[LUMA_MODES])) \
                + res[c][y:y + BLOCK, x:x + BLOCK]
    return planes.cropped()


def block_masks(intra: np.ndarray, luma_grid: tuple[int, int], chroma_grid: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """The 8x8 blocks of intra macroblocks, per component (luma, chroma), on the layer's grids
    (macroblocks cover both: the chroma grid is theirs, the luma grid at most twice it)."""
    luma = np.repeat(np.repeat(intra, 2, 0), 2, 1)[:luma_grid[0], :luma_grid[1]]
    return luma, intra[:chroma_grid[0], :chroma_grid[1]]
