"""The residual layer's block transforms and quantiser steps (:mod:`lvc.codec.residual`).

A block is 8x8 samples, coded as one 8x8 DCT or (luma blocks, since format 1.8) as four 4x4
DCTs: a 8x8 transform spends fewer bits on smooth errors, four 4x4 ones keep an edge or a
small detail from ringing across the whole block (x264 and HEVC choose per block too).

The decoder's inverses are exact integer arithmetic on 13-bit bases (part of the bitstream);
the encoders' forward transforms are their float counterparts. A 4x4 block's coefficient
(u, v) of the sub-block (i, j) is stored at (2u + i, 2v + j) of the block's 8x8 array, so that
the coefficient groups and contexts of the layer see similar frequencies in similar places
whichever the transform.
"""

from __future__ import annotations

import numpy as np

BLOCK = 8
STEP_BASE = (10, 11, 13, 14, 16, 18)  # in 1/16 pixel: step i is STEP_BASE[i % 6] << (i // 6)
STEP_MAX = 51
# DCT-II bases, rows are frequencies, round(2**13 * c(u) * cos((2x + 1) u pi / (2 n))).
BASIS = np.array([
    [2896, 2896, 2896, 2896, 2896, 2896, 2896, 2896],
    [4017, 3406, 2276, 799, -799, -2276, -3406, -4017],
    [3784, 1567, -1567, -3784, -3784, -1567, 1567, 3784],
    [3406, -799, -4017, -2276, 2276, 4017, 799, -3406],
    [2896, -2896, -2896, 2896, 2896, -2896, -2896, 2896],
    [2276, -4017, 799, 3406, -3406, -799, 4017, -2276],
    [1567, -3784, 3784, -1567, -1567, 3784, -3784, 1567],
    [799, -2276, 3406, -4017, 4017, -3406, 2276, -799]], dtype=np.int64)
BASIS4 = np.array([[4096, 4096, 4096, 4096], [5352, 2217, -2217, -5352], [4096, -4096, -4096, 4096],
                   [2217, -5352, 5352, -2217]], dtype=np.int64)
BASIS_BITS = 13
DCT = BASIS.astype(np.float64) / (1 << BASIS_BITS)  # the encoders' float transforms (not the format's)
DCT4 = BASIS4.astype(np.float64) / (1 << BASIS_BITS)


def step_size(index: int) -> int:
    """Quantisation step of index 0..STEP_MAX, in 1/16 pixel."""
    return STEP_BASE[index % 6] << (index // 6)


def _separable4(x: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``left @ block @ right`` for every 4x4 block of ``x`` (..., 4, 4), as two 2-D products
    with 4 columns (never a product large enough for a BLAS library to split across threads,
    which on two busy cores costs far more than it saves)."""
    shape = x.shape
    a = (x.reshape(-1, 4) @ right).reshape(shape)  # rows kept, columns transformed
    return (a.swapaxes(-1, -2).reshape(-1, 4) @ left.T).reshape(shape).swapaxes(-1, -2)


def _quarter_levels(r: np.ndarray) -> np.ndarray:
    """Products at scale 2**(2 * 13 + 4) -> quarter pixels, rounded half up."""
    return np.floor((r + (1 << 27)) / (1 << 28)).astype(np.int32)


def _inverse8(v: np.ndarray) -> np.ndarray:
    """(n, 8, 8) quarter levels of n blocks of coefficients times their step, as 8x8 transforms."""
    n = v.shape[0]
    basis = BASIS.astype(np.float64)
    a = (v.reshape(n * BLOCK, BLOCK) @ basis).reshape(n, BLOCK, BLOCK)  # rows: u, columns: x
    r = (a.transpose(0, 2, 1).reshape(n * BLOCK, BLOCK) @ basis).reshape(n, BLOCK, BLOCK)  # (x, y)
    return _quarter_levels(r.transpose(0, 2, 1))


def inverse_blocks(coeffs: np.ndarray, step: int, small: np.ndarray | None = None) -> np.ndarray:
    """(n, 8, 8) int32 quarter levels of n blocks of quantised coefficients at step index
    ``step``; ``small`` (n,) marks the blocks coded as four 4x4 transforms. (The products run
    in float64, where they are exact: with |coefficient| <= 2047 and steps up to STEP_MAX
    every partial sum is an integer below 2**53.)"""
    v = coeffs.astype(np.float64) * step_size(step)
    if small is None or not small.any():
        return _inverse8(v)
    out = np.empty(coeffs.shape, dtype=np.int32)
    out[~small] = _inverse8(v[~small])
    b4 = BASIS4.astype(np.float64)
    stored = v[small].reshape(-1, 4, 2, 4, 2).transpose(0, 2, 4, 1, 3)  # (m, i, j, u, v)
    r = _separable4(stored, b4.T, b4)  # (m, i, j, a, b): rows i * 4 + a, columns j * 4 + b
    out[small] = _quarter_levels(r.transpose(0, 1, 3, 2, 4).reshape(-1, BLOCK, BLOCK))
    return out


def pixel_blocks(planes: np.ndarray) -> np.ndarray:
    """(planes, hb, wb, 8, 8) blocks of (planes, H, W) planes, edges replicated up to whole blocks."""
    n, h, w = planes.shape
    p = np.pad(planes, ((0, 0), (0, -h % BLOCK), (0, -w % BLOCK)), mode="edge")
    return p.reshape(n, p.shape[1] // BLOCK, BLOCK, p.shape[2] // BLOCK, BLOCK).transpose(0, 1, 3, 2, 4)


def forward(planes: np.ndarray) -> np.ndarray:
    """8x8 DCT coefficients (planes, hb, wb, 8, 8) of float planes (the encoders')."""
    return DCT @ pixel_blocks(planes) @ DCT.T


def forward4(blocks: np.ndarray) -> np.ndarray:
    """Four 4x4 DCTs of each 8x8 block of samples (..., 8, 8), stored as the layer stores them."""
    sub = blocks.reshape(*blocks.shape[:-2], 2, 4, 2, 4).swapaxes(-3, -2)  # (..., i, j, a, b)
    t = _separable4(sub, DCT4, DCT4.T)  # (..., i, j, u, v)
    lead = blocks.ndim - 2
    return t.transpose(*range(lead), lead + 2, lead, lead + 3, lead + 1).reshape(blocks.shape)  # at (2u + i, 2v + j)
