"""Quartered blocks in motion-only frames (frame type ``FRAME_PQ``, format 1.6).

A 16x16 block whose content moves in parts (an edge of a moving object, a limb) is copied
badly by one vector, and the residual layer pays for the difference in 8x8 transform
blocks. Classical codecs split such a macroblock into smaller partitions (x264 without
its partitions: +9% bits, docs/models.md, "Session 40"). A ``FRAME_PQ`` payload
(:mod:`lvc.codec.copies`) carries, after the 16x16 field:

1. which blocks are quartered, one flag per 16x16 block, coded as the skip flags are
   (:class:`lvc.codec.skip.SkipFlags`: row by row, the flag above as context, a level per
   context chosen by the encoder);
2. if any is: the choice of a motion table (its uniform row), then for every quartered
   block in raster order its four 8x8 quarters' vectors (raster order inside the block),
   each as its difference from the block's vector, x then y, under that table.

The picture is the previous one with every 8x8 quarter copied by its own vector (a whole
block's quarters all by the block's). Only the picture uses the quarters: the latent
context is warped by the 16x16 field, as in a ``FRAME_PM`` frame.

The encoder quarters a block when the copy's squared error falls by more than the
quarters' bits are worth (:meth:`QuarterCoder.choose`), the quarters' vectors coming from
a search around each block's own vector (:func:`search_quarters`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from lvc.codec.motion import (
    _block_sad,
    _blocks,
    _fetch,
    _mean_abs,
    _mean_satd,
    _replicate,
    _square,
    _vector_bits,
    phase_planes,
)
from lvc.codec.skip import SkipFlags, block_sse
from lvc.entropy.tables import CdfTables

QUARTER = 2  # quarters per block side
# lambda * (SSE saved) must beat this many times the quarters' bits (encoder only). The
# residual layer recovers part of what a worse copy loses, but 0.5, 1 and 2 were within
# 0.3% on 8 training clips (docs/models.md, "Session 41").
SPLIT_COST = 1.0
QUARTER_RANGE = 4  # whole pixels around the block's vector a quarter's search covers (encoder only)


def search_quarters(ref: torch.Tensor, cur: torch.Tensor, mv: torch.Tensor, block: int, frac: int,
                    rate_weight: float) -> torch.Tensor:
    """The quarters' vectors (2 hb, 2 wb, 2) in ``1/frac`` pixels for the blocks' vectors
    ``mv`` (hb, wb, 2): each 8x8 quarter of ``cur``'s luma (1, 1, H, W; ``ref`` likewise,
    padded to whole blocks) searched within about ``QUARTER_RANGE`` whole pixels of its
    block's vector by SAD (at half resolution, then one pixel around the best and the
    block's own), then refined by a half-pixel step by SAD and a quarter-pixel one by SATD
    (SATD in both: 0.2% fewer bits on 8 training clips, SAD in both: 1.0% more; the
    lookahead thread that runs this bounds the encoder's speed), every candidate charged
    ``rate_weight`` per bit of its difference from the block's vector (what the payload
    codes)."""
    size = block // QUARTER
    parent = mv.repeat_interleave(QUARTER, 0).repeat_interleave(QUARTER, 1)[None]  # (1, 2hb, 2wb, 2)

    def cheapest(v: torch.Tensor, distortion: torch.Tensor) -> torch.Tensor:
        """Each quarter's candidate (1, K, 2hb, 2wb, 2) of least distortion plus rate."""
        cost = distortion.numpy() * size * size + np.float32(rate_weight) * _vector_bits((v - parent[:, None]).numpy())
        pick = torch.from_numpy(cost.argmin(1))[:, None, ..., None].expand(-1, 1, *v.shape[2:])
        return v.gather(1, pick).squeeze(1)

    start = torch.div(parent, frac, rounding_mode="floor")  # whole pixels
    half_start = torch.div(start, 2, rounding_mode="floor")
    coarse = _square(QUARTER_RANGE // 2)  # at half resolution first, then one pixel around the best
    half = F.avg_pool2d(ref, 2), F.avg_pool2d(cur, 2)
    v = (half_start[:, None] + coarse.view(1, -1, 1, 1, 2)) * 2 * frac
    centre = torch.div(cheapest(v, _block_sad(*half, size // 2, coarse, half_start)), frac, rounding_mode="floor")
    fine, zero = _square(1), torch.zeros(1, 2, dtype=torch.long)
    v = torch.cat([centre[:, None] + fine.view(1, -1, 1, 1, 2), start[:, None]], 1) * frac
    sad = torch.cat([_block_sad(ref, cur, size, fine, centre), _block_sad(ref, cur, size, zero, start)], 1)
    best = cheapest(v, sad)
    if frac == 1:
        return best[0]
    r = int(best.abs().max()) // frac + 2
    planes = phase_planes(_replicate(ref, (r,) * 4), frac)
    hq, wq = best.shape[1:3]
    rows, cols = torch.arange(hq).view(1, 1, hq, 1) * size + r, torch.arange(wq).view(1, 1, 1, wq) * size + r
    cur_blocks = _blocks(cur, size)
    step = frac // 2
    while step >= 1:  # the last step by SATD, the others by SAD
        last = step == 1
        v = best[:, None] + step * _square(1).view(1, -1, 1, 1, 2)
        whole, phase = torch.div(v, frac, rounding_mode="floor"), torch.remainder(v, frac)
        moved = _fetch(planes, phase[..., 1] * frac + phase[..., 0], rows + whole[..., 1], cols + whole[..., 0], size)
        best = cheapest(v, (_mean_satd if last else _mean_abs)(moved, cur_blocks))
        step //= 2
    return best[0]


def quarter_field(mv: torch.Tensor, split: np.ndarray, quarters: np.ndarray) -> torch.Tensor:
    """(2 hb, 2 wb, 2) vectors of the 8x8 quarters: each block's own, replaced in the
    quartered blocks (``split``, (hb, wb) bool) by ``quarters`` ((n, 2, 2, 2): per quartered
    block in raster order, its quarters' vectors)."""
    fine = mv.repeat_interleave(QUARTER, 0).repeat_interleave(QUARTER, 1).clone()
    hb, wb = split.shape
    view = fine.view(hb, QUARTER, wb, QUARTER, 2).permute(0, 2, 1, 3, 4)  # (hb, wb, 2, 2, 2): shares fine
    ys, xs = np.nonzero(split)
    view[torch.from_numpy(ys), torch.from_numpy(xs)] = torch.from_numpy(quarters).to(fine.dtype)
    return fine


def block_quarters(fine: torch.Tensor, split: np.ndarray) -> np.ndarray:
    """The quarters' vectors of the blocks in ``split`` from a (2 hb, 2 wb, 2) field: (n, 2, 2, 2)."""
    hb, wb = split.shape
    view = fine[:hb * QUARTER, :wb * QUARTER].reshape(hb, QUARTER, wb, QUARTER, 2).permute(0, 2, 1, 3, 4)
    return view.numpy()[split]


def quarter_symbols(mv: torch.Tensor, split: np.ndarray, quarters: np.ndarray) -> np.ndarray:
    """The coded symbols of item 2: each quarter's difference from its block's vector."""
    return (quarters - mv.numpy()[split][:, None, None, :]).ravel().astype(np.int64)


class QuarterCoder:
    """Items 1 and 2 of the module docstring, into (or from) a frame's range-coded stream,
    with the motion tables' ``coder`` and ``tables``."""

    def __init__(self, coder, tables: CdfTables, choice_row: int, rows: int) -> None:
        self.flags = SkipFlags()
        self.coder, self.tables = coder, tables
        self.choice_row, self.rows = choice_row, rows

    def encode(self, enc, mv: torch.Tensor, split: np.ndarray, quarters: np.ndarray,
               levels: np.ndarray | None = None, row: int | None = None) -> float:
        """Code the flags and the quarters into ``enc`` (None: only count); their
        information content in bits. ``levels`` (the flags') and ``row`` (the quarters'
        table) default to the cheapest."""
        bits = self.flags.encode(enc, split, levels)
        if not split.any():
            return bits
        symbols = quarter_symbols(mv, split, quarters)
        row = self._cheapest_row(symbols) if row is None else row
        if enc is not None:
            self.coder.encode(enc, np.array([row]), np.array([self.choice_row]))
            self.coder.encode(enc, symbols, np.full(symbols.size, row))
        return bits + self.tables.bits(np.array([self.choice_row]), np.array([row])) + self.tables.bits(
            np.full(symbols.size, row), symbols)

    def _cheapest_row(self, symbols: np.ndarray) -> int:
        """The motion table that codes ``symbols`` in the fewest bits."""
        return int(np.argmin([self.tables.bits(np.full(symbols.size, r), symbols) for r in range(self.rows)]))

    def decode(self, dec, mv: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray, int | None]:
        """(split, quarters, the flags' levels, the quarters' table row) as :meth:`encode` takes them."""
        split, levels = self.flags.decode(dec, tuple(mv.shape[:2]), with_levels=True)
        n = int(split.sum())
        if n == 0:
            return split, np.zeros((0, QUARTER, QUARTER, 2), dtype=np.int64), levels, None
        row = int(self.coder.decode(dec, np.array([self.choice_row]))[0])
        if not 0 <= row < self.rows:
            raise ValueError("quarter motion table choice out of range")
        symbols = self.coder.decode(dec, np.full(n * QUARTER * QUARTER * 2, row))
        quarters = symbols.reshape(n, QUARTER, QUARTER, 2) + mv.numpy()[split][:, None, None, :]
        return split, quarters, levels, row

    def choose(self, frame: np.ndarray, moved: np.ndarray, moved_quarters: np.ndarray, mv: torch.Tensor,
               fine: torch.Tensor, lmbda: float) -> np.ndarray:
        """The blocks worth quartering: ``moved`` is the previous picture copied by ``mv``,
        ``moved_quarters`` by ``fine`` (the searched 8x8 field); a block is quartered where
        ``lmbda * (SSE saved) > SPLIT_COST * bits`` (SSE as :func:`block_sse`; bits of its
        flag and its quarters under the table that codes all candidates cheapest)."""
        grid = tuple(mv.shape[:2])
        saved = block_sse(moved, frame, grid) - block_sse(moved_quarters, frame, grid)
        every = np.ones(grid, dtype=bool)
        symbols = quarter_symbols(mv, every, block_quarters(fine, every)).reshape(grid[0], grid[1], -1)
        differs = (symbols != 0).any(-1)
        if not differs.any():
            return np.zeros(grid, dtype=bool)
        row = self._cheapest_row(symbols[differs].ravel())
        per = self.tables.element_bits(np.full(symbols.shape, row), symbols).sum(-1) + 1.0  # + about a flag
        return differs & (lmbda * saved > SPLIT_COST * per)
