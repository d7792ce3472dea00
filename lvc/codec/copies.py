"""Frames of copies: ``FRAME_PM`` (since 1.5) and ``FRAME_PQ`` (since 1.6), both sides.

With the residual layer on, a conditional frame copies every block of the previous picture
(``lvc.codec.sequence.COPY_FRAMES``) and its payload is the copy's description alone, one
range-coded run:

1. the **filter** ``f``, one symbol under the motion tables' uniform row: 0 bilinear, 1
   HEVC's 8-tap filters (:mod:`lvc.codec.sharp`), and in PQ frames 2, chosen per block;
2. the motion, as a PC frame's (:meth:`lvc.codec.inter.InterCodec.write_motion`);
3. PQ only: the quartered blocks and their quarters' vectors (:mod:`lvc.codec.partition`);
4. PQ with ``f`` = 2 only: one flag per 16x16 block, 1 where it is copied through the 8-tap
   filters (coded as the skip flags are, :class:`lvc.codec.skip.SkipFlags`).

A payload must be exactly that coding: the decoder codes what it read again and compares
(the range coder's end cannot tell a word too many). The context is warped by the 16x16
vectors alone.

The encoder quarters the blocks worth it, then takes the filter per block where the 8-tap
copy is nearer the frame by more than its flags cost (squared error at the frame's lambda),
else for the whole frame, and writes PM unless a block is quartered or the filter varies.
Neither filter wins everywhere: bilinear smoothing removes a noisy picture's noise, 8-tap
filters keep detail (docs/models.md, "Session 40" and "Session 41").
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from lvc.codec.partition import QUARTER, QuarterCoder, block_quarters, quarter_field
from lvc.codec.sharp import PHASES, sharp_moved
from lvc.codec.skip import SkipFlags, block_pixels, block_sse, moved_picture

BILINEAR, SHARP, PER_BLOCK = 0, 1, 2  # the filter symbol


@dataclass
class Copies:
    """A frame of copies as coded: the blocks' vectors, the filter, and in PQ frames the
    quartered blocks (``split``, their ``quarters``) and the blocks copied sharp
    (``sharp_blocks``, with ``PER_BLOCK``). The last three fields are coding choices the
    payload sends (none: the encoder's cheapest; decoded ones, to code them again exactly)."""

    mv: torch.Tensor
    filter: int = BILINEAR
    split: np.ndarray | None = None
    quarters: np.ndarray | None = None
    sharp_blocks: np.ndarray | None = None
    split_levels: np.ndarray | None = None  # the quartered flags' levels (lvc.codec.skip.SkipFlags)
    quarter_row: int | None = None  # the quarters' motion table
    filter_levels: np.ndarray | None = None  # the sharp flags' levels

    @property
    def per_block(self) -> bool:
        """Whether this needs ``FRAME_PQ``."""
        return self.split is not None or self.filter == PER_BLOCK

    def field(self, block: int) -> tuple[torch.Tensor, int]:
        """The copies' vectors and block size: the quarters' (``block // 2``) where any is quartered."""
        if self.split is None or not self.split.any():
            return self.mv, block
        return quarter_field(self.mv, self.split, self.quarters), block // QUARTER

    def sharp(self, block: int) -> bool | np.ndarray:
        """The filter for :func:`lvc.codec.skip.moved_picture`: one for all, or per copied block."""
        if self.filter != PER_BLOCK:
            return self.filter == SHARP
        n = block // self.field(block)[1]  # copied blocks per block side
        return np.repeat(np.repeat(self.sharp_blocks, n, 0), n, 1)


class CopyCoder:
    """The payload of the module docstring and the encoder's choices, with the motion
    tables' ``coder`` and ``tables`` (``rows`` Laplacian rows, then the uniform row that
    codes choices among them)."""

    def __init__(self, mv_coder, tables, rows: int) -> None:
        self.mv_coder, self.choice_row = mv_coder, rows
        self.quarters = QuarterCoder(mv_coder, tables, rows, rows)
        self.filters = SkipFlags()

    def write(self, enc, c: Copies, write_motion) -> float:
        """Code ``c`` into ``enc`` (None: only count the bits of items 1, 3 and 4;
        ``write_motion(enc, mv)`` codes item 2 and returns its bits); its bits."""
        if enc is not None:
            self.mv_coder.encode(enc, np.array([c.filter]), np.array([self.choice_row]))
        bits = self.quarters.tables.bits(np.array([self.choice_row]), np.array([c.filter]))
        bits += write_motion(enc, c.mv) if enc is not None else 0.0
        if c.per_block:
            split = c.split if c.split is not None else np.zeros(tuple(c.mv.shape[:2]), dtype=bool)
            quarters = c.quarters if c.quarters is not None else np.zeros((0, QUARTER, QUARTER, 2), np.int64)
            bits += self.quarters.encode(enc, c.mv, split, quarters, c.split_levels, c.quarter_row)
        if c.filter == PER_BLOCK:
            bits += self.filters.encode(enc, c.sharp_blocks, c.filter_levels)
        return bits

    def read_filter(self, dec, per_block: bool, subpel: int) -> int:
        """Item 1: the filter, which the motion follows (filter 2 only in PQ frames, and
        the 8-tap filters only for quarter-pixel models)."""
        f = int(self.mv_coder.decode(dec, np.array([self.choice_row]))[0])
        if f not in ((BILINEAR, SHARP, PER_BLOCK) if per_block else (BILINEAR, SHARP)) or f and subpel != PHASES:
            raise ValueError("motion filter out of range")
        return f

    def read_rest(self, dec, mv: torch.Tensor, f: int, per_block: bool) -> Copies:
        """Items 3 and 4 after the filter ``f`` and the motion ``mv``."""
        c = Copies(mv, f)
        if per_block:
            c.split, c.quarters, c.split_levels, c.quarter_row = self.quarters.decode(dec, mv)
        if f == PER_BLOCK:
            c.sharp_blocks, c.filter_levels = self.filters.decode(dec, tuple(mv.shape[:2]), with_levels=True)
        return c

    def choose(self, frame: np.ndarray, previous: np.ndarray, moved: np.ndarray, mv: torch.Tensor,
               fine: torch.Tensor | None, mv_sharp: torch.Tensor | None, lmbda: float, block: int,
               frac: int, sharp_copies: bool) -> tuple[Copies, np.ndarray]:
        """The copies of ``frame`` from ``previous`` and the picture they give. ``moved``:
        ``previous`` copied bilinearly by ``mv``; ``fine``: the quarters' searched vectors
        (none: neither quarters nor filters per block, PM only); ``mv_sharp``: the sharp
        copy's own field (``slow``), an alternative copied sharp for the whole frame."""
        sharp_ok = sharp_copies and frac == PHASES
        c, picture = self._choose(frame, previous, moved, mv, fine, lmbda, block, frac, sharp_ok)
        if mv_sharp is None or torch.equal(mv_sharp, c.mv) or not sharp_ok or not (mv_sharp.numpy() % frac).any():
            return c, picture
        other = moved_picture(previous, mv_sharp, block, frac, sharp=True)
        extra = self._extra_bits(c) if c.per_block else 0.0
        if _sse(other, frame) * lmbda / 3 < _sse(picture, frame) * lmbda / 3 + extra:
            return Copies(mv_sharp, SHARP), other
        return c, picture

    def _extra_bits(self, c: Copies) -> float:
        """What ``c`` codes beyond a PM frame's filter and motion: items 3 and 4 (every
        filter symbol costs the same, under a uniform row)."""
        return self.write(None, c, None) - self.write(None, Copies(c.mv), None)

    def _choose(self, frame: np.ndarray, previous: np.ndarray, moved: np.ndarray, mv: torch.Tensor,
                fine: torch.Tensor | None, lmbda: float, block: int, frac: int,
                sharp_ok: bool) -> tuple[Copies, np.ndarray]:
        """:meth:`choose` on the one field ``mv``: the quarters, then the filter."""
        h, w = frame.shape[:2]
        grid = tuple(mv.shape[:2])
        c = Copies(mv)
        if fine is not None:
            moved_q = moved_picture(previous, fine, block // QUARTER, frac)
            split = self.quarters.choose(frame, moved, moved_q, mv, fine, lmbda)
            if split.any():
                c.split, c.quarters = split, block_quarters(fine, split)
                moved = np.where(block_pixels(split, block, h, w), moved_q, moved)
        field, per = c.field(block)
        if not sharp_ok or not (field.numpy() % frac).any():
            return c, moved
        other = moved_picture(previous, mv, block, frac, sharp=True)
        if c.split is not None:  # (the quartered blocks' quarters alone are copied again)
            only = np.repeat(np.repeat(c.split, QUARTER, 0), QUARTER, 1)
            other = np.where(block_pixels(c.split, block, h, w), sharp_moved(previous, field.numpy(), per, frac, only),
                             other)
        if fine is None:  # one filter for the frame (PM)
            return (Copies(mv, SHARP), other) if _sse(other, frame) < _sse(moved, frame) else (c, moved)
        sse_b, sse_s = block_sse(moved, frame, grid), block_sse(other, frame, grid)
        sharp_blocks = lmbda * (sse_b - sse_s) > 1.0  # (about a flag's bits)
        costs = [lmbda * sse_b.sum(), lmbda * sse_s.sum()]
        if sharp_blocks.any() and not sharp_blocks.all():  # the flags' bits (and a PM frame's quartered ones)
            added = self._extra_bits(replace(c, filter=PER_BLOCK, sharp_blocks=sharp_blocks)) - self._extra_bits(c)
            costs.append(lmbda * np.where(sharp_blocks, sse_s, sse_b).sum() + added)
        c.filter = int(np.argmin(costs))
        if c.filter == PER_BLOCK:
            c.sharp_blocks = sharp_blocks
            return c, np.where(block_pixels(sharp_blocks, block, h, w), other, moved)
        return c, other if c.filter == SHARP else moved


def _sse(a: np.ndarray, b: np.ndarray) -> int:
    """Squared error between two uint8 pictures, exact."""
    d = (a.astype(np.int64) - b).ravel()
    return int(d @ d)
