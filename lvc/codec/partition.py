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
a search around each block's own vector (:class:`QuarterSearch`), moved by a last
quarter-pixel step on the decoder's picture (:mod:`lvc.codec.picture_motion`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from lvc.codec.motion import (
    SEARCH,
    _blocks,
    _fetch,
    _mean_abs,
    _mean_satd,
    _replicate,
    _square,
)
from lvc.codec.phases import PhasePlanes
from lvc.codec.skip import SkipFlags, block_sse
from lvc.codec.vector_rate import _vector_bits
from lvc.entropy.tables import CdfTables

QUARTER = 2  # quarters per block side
# lambda * (SSE saved) must beat this many times the quarters' bits (encoder only). The
# residual layer recovers part of what a worse copy loses, but 0.5, 1 and 2 were within
# 0.3% on 8 training clips (docs/models.md, "Session 41").
SPLIT_COST = 1.0
QUARTER_RANGE = 4  # whole pixels around the block's vector a quarter's search covers (encoder only)
QUARTER_PAD = SEARCH + QUARTER_RANGE + 4  # the most QuarterSearch pads the reference (its ``r``)


def search_quarters(ref: torch.Tensor, cur: torch.Tensor, mv: torch.Tensor, block: int, frac: int,
                    rate_weight: float) -> torch.Tensor:
    """The quarters' vectors (2 hb, 2 wb, 2) in ``1/frac`` pixels for the blocks' vectors
    ``mv`` (hb, wb, 2): :class:`QuarterSearch` over the whole frame."""
    return QuarterSearch(ref, cur, mv, block, frac, rate_weight).rows(0, mv.shape[0])


class QuarterSearch:
    """Each 8x8 quarter of ``cur``'s luma (1, 1, H, W; ``ref`` likewise, both padded to
    whole blocks) searched within about ``QUARTER_RANGE`` whole pixels of its block's vector
    (``mv``, (hb, wb, 2) in ``1/frac`` pixels) by SAD (at half resolution, then one pixel
    around the best and the block's own), then refined by a half-pixel step by SAD and a
    quarter-pixel one by SATD (SATD in both: 0.2% fewer bits on 8 training clips, SAD in
    both: 1.0% more), every candidate charged ``rate_weight`` per bit of its difference from
    the block's vector (what the payload codes).

    The frame's padded planes are made once (here, or by the blocks' search:
    :mod:`lvc.codec.phases`); :meth:`rows` then searches any band of block rows, on any
    thread: each quarter's costs come from its own pixels by the same operations whatever
    the band (a test checks that bands give the whole search's vectors). The lookahead
    thread that runs this bounds the encoder's speed, and the coding thread takes the bands
    it has not reached (:mod:`lvc.codec.lookahead`)."""

    def __init__(self, ref: torch.Tensor, cur: torch.Tensor, mv: torch.Tensor, block: int, frac: int,
                 rate_weight: float, phases: PhasePlanes | None = None) -> None:
        """``phases``: ``ref``'s phase planes if made already (:mod:`lvc.codec.phases`)."""
        self.size, self.frac, self.rate_weight = block // QUARTER, frac, rate_weight
        self.parent = mv.repeat_interleave(QUARTER, 0).repeat_interleave(QUARTER, 1)[None]  # (1, 2hb, 2wb, 2)
        self.start = torch.div(self.parent, frac, rounding_mode="floor")  # whole pixels
        self.half_start = torch.div(self.start, 2, rounding_mode="floor")
        reach = int(self.start.abs().max())
        # padding beyond every fetch: the whole-pixel stage stays within QUARTER_RANGE + 2 of
        # ``start``, the sub-pixel steps within one more pixel (replicated edges: the values do
        # not depend on how far the planes are padded)
        self.r, self.r_half = reach + QUARTER_RANGE + 4, reach // 2 + QUARTER_RANGE // 2 + 2
        half_ref, half_cur = F.avg_pool2d(ref, 2), F.avg_pool2d(cur, 2)
        self.half_ref = _replicate(half_ref, (self.r_half,) * 4)
        self.half_blocks = _blocks(half_cur, self.size // 2)
        self.cur_blocks = _blocks(cur, self.size)
        if frac > 1:  # (plane 0, phase 0, is the reference itself: the whole-pixel stage's)
            self.planes, self.r = (phases or PhasePlanes(ref, frac)).padded(self.r)
            self.ref = self.planes
        else:
            self.ref, self.planes = _replicate(ref, (self.r,) * 4), None

    def rows(self, first: int, last: int) -> torch.Tensor:
        """The quarters' vectors (2 (last - first), 2 wb, 2) of block rows ``first`` to ``last``."""
        q0, q1 = first * QUARTER, last * QUARTER
        parent, start, half_start = self.parent[:, q0:q1], self.start[:, q0:q1], self.half_start[:, q0:q1]
        frac, size = self.frac, self.size

        def cheapest(v: torch.Tensor, distortion: torch.Tensor) -> torch.Tensor:
            return _cheapest(v, distortion, parent, size, self.rate_weight)

        def fetch(planes: torch.Tensor, plane: torch.Tensor | int, r: int, n: int, v: torch.Tensor) -> torch.Tensor:
            """The blocks of side ``n`` at the band's quarters moved by whole-pixel ``v``."""
            rows = (torch.arange(q1 - q0).view(1, 1, -1, 1) + q0) * n + r
            cols = torch.arange(v.shape[3]).view(1, 1, 1, -1) * n + r
            return _fetch(planes, plane, rows + v[..., 1], cols + v[..., 0], n)

        coarse = _square(QUARTER_RANGE // 2)  # at half resolution first, then one pixel around the best
        v = half_start[:, None] + coarse.view(1, -1, 1, 1, 2)
        sad = _mean_abs(fetch(self.half_ref, 0, self.r_half, size // 2, v), self.half_blocks[:, :, q0:q1])
        centre = torch.div(cheapest(v * 2 * frac, sad), frac, rounding_mode="floor")
        v = torch.cat([centre[:, None] + _square(1).view(1, -1, 1, 1, 2), start[:, None]], 1)
        cur_blocks = self.cur_blocks[:, :, q0:q1]
        best = cheapest(v * frac, _mean_abs(fetch(self.ref, 0, self.r, size, v), cur_blocks))
        step = frac // 2
        while step >= 1:  # the last step by SATD, the others by SAD
            v = best[:, None] + step * _square(1).view(1, -1, 1, 1, 2)
            whole, phase = torch.div(v, frac, rounding_mode="floor"), torch.remainder(v, frac)
            moved = fetch(self.planes, phase[..., 1] * frac + phase[..., 0], self.r, size, whole)
            best = cheapest(v, (_mean_satd if step == 1 else _mean_abs)(moved, cur_blocks))
            step //= 2
        return best[0]


def polish_quarters(ref: torch.Tensor, cur: torch.Tensor, mv: torch.Tensor, fine: torch.Tensor, block: int,
                    frac: int, rate_weight: float, phases: PhasePlanes | None = None) -> torch.Tensor:
    """The quarters' vectors ``fine`` (2 hb, 2 wb, 2; ``1/frac`` pixels, ``frac`` > 1) moved
    by at most one step of ``1/frac`` pixel where that copies ``cur``'s quarters from
    ``ref`` (lumas as :class:`QuarterSearch` takes them) better by SATD plus ``rate_weight``
    per bit of their difference from their block's vector in ``mv`` (hb, wb, 2).
    ``phases``: ``ref``'s phase planes if made already (:mod:`lvc.codec.phases`)."""
    size = block // QUARTER
    parent = mv.repeat_interleave(QUARTER, 0).repeat_interleave(QUARTER, 1)[None]
    v = fine[None, None] + _square(1).view(1, -1, 1, 1, 2)  # (1, 9, 2hb, 2wb, 2)
    planes, r = (phases or PhasePlanes(ref, frac)).padded(quarter_reach(v, frac))
    whole, phase = torch.div(v, frac, rounding_mode="floor"), torch.remainder(v, frac)
    rows = torch.arange(v.shape[2]).view(1, 1, -1, 1) * size + r
    cols = torch.arange(v.shape[3]).view(1, 1, 1, -1) * size + r
    moved = _fetch(planes, phase[..., 1] * frac + phase[..., 0], rows + whole[..., 1], cols + whole[..., 0], size)
    return _cheapest(v, _mean_satd(moved, _blocks(cur, size)), parent, size, rate_weight)[0]


def quarter_reach(v: torch.Tensor, frac: int) -> int:
    """The padding that covers fetching the quarters moved by ``v`` (``1/frac`` pixels)."""
    return int(v.abs().max()) // frac + 2


def _cheapest(v: torch.Tensor, distortion: torch.Tensor, parent: torch.Tensor, size: int,
              rate_weight: float) -> torch.Tensor:
    """Each quarter's candidate of ``v`` (1, K, n, 2wb, 2) of least mean ``distortion`` (1, K,
    n, 2wb) over its ``size`` x ``size`` pixels plus ``rate_weight`` per bit of its difference
    from its block's vector in ``parent`` (1, n, 2wb, 2): (1, n, 2wb, 2)."""
    cost = distortion.numpy() * size * size + np.float32(rate_weight) * _vector_bits((v - parent[:, None]).numpy())
    pick = torch.from_numpy(cost.argmin(1))[:, None, ..., None].expand(-1, 1, *v.shape[2:])
    return v.gather(1, pick).squeeze(1)


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
        return int(np.argmin(self.tables.row_bits(np.arange(self.rows), symbols)))

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
