"""Block skip in conditional P-frames (frame type ``FRAME_PS``): the encoder's decision, the
flags' syntax and the picture the decoder shows.

A skipped 16x16 block (one position of the 1/16 latent grid) sends no latent symbols; the
decoder keeps the motion-compensated context there (``context_w``) instead of updating it,
and shows the previous picture's pixels moved by the motion (a copy, as classical codecs'
skip). Without skip, the context update of a trained model is not an identity even for zero
symbols: static background cost a few bits per block and frame only to hold its picture
(``vtest``, a fixed camera: 93% of the blocks static, carrying 44-54% of a PC frame's latent
bits), and it was shown at the quality of the context's display, which stays below an
I-frame's at high rates; a copied block keeps the quality the previous picture had.

Pictures are float (the display transform), so copying them makes a picture depend on the
earlier ones; the context, and so every probability, does not: decoding still cannot drift.

The decision is the encoder's alone: a block is skipped when ``lambda * (SSE_skip -
SSE_coded) < its latent bits``, where ``SSE_skip`` is the error of the copy (exact) and
``SSE_coded`` the error coding the block achieved the last time it was coded, standing in
for this frame's, which is not known before the picture is synthesised. In the first PC
frame after an I- or P-frame, nothing has been coded yet; only ``--preset slow`` skips
there (against the error of the display of the context the I-frame started, one more
synthesis per I-frame). That skip copies the I-frame's own picture and is worth most on a
fixed camera, but on moving content the encoder then returns to I-frames more often: 8.2-8.8
fps instead of 10.5-10.7 on a 416x240 training clip (docs/models.md).

That decision is the encoder's without the residual layer. With the layer, whose copies
cost less than learned blocks almost everywhere, the encoder skips every block
(``lvc.codec.sequence.COPY_FRAMES``). A frame whose every block is skipped runs neither
the context update nor the display, on either side: its context is the warped one and its
picture the moved previous one, exactly what the full path gives.

Flags are coded row by row (the decoder needs the row above first): the flag above (or,
in the first row, a context of its own) picks the row of ``skip_tables``; the encoder
picks per frame, for each of the three contexts, one of ``SKIP_LEVELS`` probabilities,
sent first under a uniform row.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from lvc.codec.sharp import sharp_moved
from lvc.entropy import coder
from lvc.entropy.tables import CdfTables, binary_row, cheapest_rows, uniform_row

# P(skip) of each table, in 64ths: fixed integers, so the tables are identical everywhere.
SKIP_LEVELS = (1, 4, 12, 32, 52, 60, 63)
_CONTEXTS = 3  # the flag above is 0 / 1 / there is no row above
CHAIN_LIMIT = 8  # unresolved skip pictures chained before the oldest is composed anyway


def skip_tables() -> CdfTables:
    """One binary row per level (no skip, skip, escape) and a last, uniform row for the
    per-context level choice (part of the bitstream: do not change)."""
    rows = [binary_row(n) for n in SKIP_LEVELS] + [uniform_row(len(SKIP_LEVELS))]
    return CdfTables.from_rows(rows, [0] * len(rows))


class SkipFlags:
    """Entropy coding of a (hb, wb) boolean skip map (see the module docstring)."""

    def __init__(self) -> None:
        self.tables = skip_tables()
        self.coder = coder.TableCoder(self.tables)
        self._choice_row = len(SKIP_LEVELS)

    @staticmethod
    def _contexts(mask: np.ndarray) -> np.ndarray:
        ctx = np.full(mask.shape, 2, dtype=np.int64)
        ctx[1:] = mask[:-1]
        return ctx

    def _choose(self, mask: np.ndarray) -> np.ndarray:
        """The cheapest level per context for this map."""
        return cheapest_rows(self.tables, np.arange(len(SKIP_LEVELS)), self._contexts(mask).ravel(),
                             mask.ravel().astype(np.int64), _CONTEXTS)

    def encode(self, enc, mask: np.ndarray, levels: np.ndarray | None = None) -> float:
        """Code ``mask`` (each context's level ``levels``, by default the cheapest) into
        ``enc`` (None: only count); returns its information content in bits."""
        choice = self._choose(mask) if levels is None else levels
        rows, ctx, flags = np.full(_CONTEXTS, self._choice_row), self._contexts(mask), mask.astype(np.int64)
        if enc is not None:
            self.coder.encode(enc, choice, rows)
            for r in range(mask.shape[0]):  # row by row, as the decoder must
                self.coder.encode(enc, flags[r], choice[ctx[r]])
        return self.tables.bits(rows, choice) + self.tables.bits(choice[ctx].ravel(), flags.ravel())

    def decode(self, dec, shape: tuple[int, int], with_levels: bool = False) -> np.ndarray | tuple:
        """The mask (and, ``with_levels``, each context's level, as :meth:`encode` takes them)."""
        choice = self.coder.decode(dec, np.full(_CONTEXTS, self._choice_row))
        if (choice < 0).any() or (choice >= len(SKIP_LEVELS)).any():
            raise ValueError("skip table choice out of range")
        mask = np.zeros(shape, dtype=bool)
        above = np.full(shape[1], 2, dtype=np.int64)
        for r in range(shape[0]):
            row = self.coder.decode(dec, choice[above])
            if ((row != 0) & (row != 1)).any():
                raise ValueError("skip flag out of range")
            mask[r] = row == 1
            above = row
        return (mask, choice) if with_levels else mask


def moved_picture(previous: np.ndarray, mv: torch.Tensor, block: int, frac: int = 1,
                  sharp: bool | np.ndarray = False) -> np.ndarray:
    """``previous`` (h, w, 3) with every pixel taken from itself plus its motion block's
    vector (dx, dy) in ``1/frac`` pixels, coordinates clamped to the picture (edge
    replication). Still blocks cost nothing; whole-pixel ones are one slice each from an
    edge-padded copy (about 1 ms at 416x240, 6x faster than gathering pixel by pixel, so
    callers that need a few blocks take the whole picture too). A field with fractional
    vectors is interpolated (:func:`_interpolated`; ``sharp``: through 8-tap filters,
    :mod:`lvc.codec.sharp`, everywhere or in the blocks where that (hb, wb) mask is set)."""
    h, w = previous.shape[:2]
    if isinstance(sharp, np.ndarray):  # (the sharp blocks alone are filtered)
        picture = moved_picture(previous, mv, block, frac)
        v = mv.numpy()
        if frac > 1 and (v[sharp] % frac).any():  # (then some block moves: ``picture`` is a copy)
            np.copyto(picture, sharp_moved(previous, v, block, frac, sharp), where=block_pixels(sharp, block, h, w))
        return picture
    v = mv.numpy()
    moving = v.any(-1)
    if not moving.any():
        return previous
    if frac > 1 and (v % frac).any():
        return sharp_moved(previous, v, block, frac) if sharp else _interpolated(previous, v, block, frac)
    v = v // frac
    r = int(np.abs(v).max())
    pad = np.pad(previous, ((r, r + block), (r, r + block), (0, 0)), mode="edge")
    out = previous.copy()
    for by, bx in zip(*np.nonzero(moving), strict=True):
        y0, x0 = int(by) * block, int(bx) * block
        if y0 >= h or x0 >= w:
            continue
        dx, dy = (int(d) for d in v[by, bx])
        bh, bw = min(block, h - y0), min(block, w - x0)
        out[y0:y0 + bh, x0:x0 + bw] = pad[r + y0 + dy:r + y0 + dy + bh, r + x0 + dx:r + x0 + dx + bw]
    return out


def block_pixels(blocks: np.ndarray, block: int, h: int, w: int) -> np.ndarray:
    """A (hb, wb) mask of ``block`` x ``block`` blocks as an (h, w, 1) mask of pixels."""
    return np.repeat(np.repeat(blocks, block, 0), block, 1)[:h, :w, None]


def _interpolated(previous: np.ndarray, v: np.ndarray, block: int, frac: int) -> np.ndarray:
    """:func:`moved_picture` for vectors ``v`` (hb, wb, 2) with fractions: every block's
    ``block + 1`` square source region gathered at once, then the bilinear weights in
    integers, rounded half up: exactly :func:`lvc.codec.motion.warp` with ``rounded`` (about
    a fifth of its time: no per-pixel index arithmetic)."""
    h, w = previous.shape[:2]
    hb, wb = v.shape[:2]
    whole, part = v // frac, (v % frac).astype(np.int16)
    r = int(np.abs(whole).max()) + 1
    pad = np.pad(previous, ((r, r + hb * block - h + 1), (r, r + wb * block - w + 1), (0, 0)), mode="edge")
    # every block's square as one index into the view of all such squares (half the time of
    # indexing pixel by pixel)
    squares = np.lib.stride_tricks.sliding_window_view(pad, (block + 1, block + 1), axis=(0, 1))
    top_left = (np.arange(hb)[:, None] * block + r + whole[..., 1], np.arange(wb)[None, :] * block + r + whole[..., 0])
    reg = squares[top_left].astype(np.int16).transpose(0, 1, 3, 4, 2)  # (hb, wb, block+1, block+1, 3)
    fx, fy = part[..., 0, None, None, None], part[..., 1, None, None, None]
    top = (frac - fx) * reg[:, :, :-1, :-1] + fx * reg[:, :, :-1, 1:]
    bottom = (frac - fx) * reg[:, :, 1:, :-1] + fx * reg[:, :, 1:, 1:]
    out = ((frac - fy) * top + fy * bottom + frac * frac // 2) // (frac * frac)
    out = out.transpose(0, 2, 1, 3, 4).reshape(hb * block, wb * block, 3)[:h, :w]
    return np.ascontiguousarray(out.astype(np.uint8))


class SkippedPicture:
    """Future-like picture of a ``FRAME_PS`` frame: the display of its context, with every
    skipped block's pixels copied from the previous picture moved by their vectors (no
    ``display`` when every block is skipped: the moved picture itself). Composed
    on the first ``result()`` (in the caller's thread), after which it lets go of the previous
    picture, so a chain of them never holds more than the pictures not yet asked for."""

    def __init__(self, display, previous, skipped: np.ndarray, mv: torch.Tensor, block: int,
                 moved: np.ndarray | None = None, frac: int = 1, sharp: bool | np.ndarray = False) -> None:
        """``moved``: the previous picture already moved by ``mv`` (through the 8-tap
        filters with ``sharp``: everywhere, or in the blocks of that mask), if the caller has it."""
        self._display, self._previous = display, previous
        self._skipped, self._mv, self._block, self._moved = skipped, mv, block, moved
        self._frac, self._sharp = frac, sharp
        self._picture: np.ndarray | None = None
        self._lock = threading.Lock()  # composed once, whichever thread asks first
        chained = getattr(previous, "_picture", 1) is None  # a composed picture not composed yet
        self.depth = previous.depth + 1 if chained else 1
        if self.depth > CHAIN_LIMIT:  # nobody asks for the pictures (a decoder skipping ahead)
            previous.result()
            self.depth = 1

    def result(self) -> np.ndarray:
        with self._lock:
            return self._compose()

    def _compose(self) -> np.ndarray:
        if self._picture is None:
            moved = self._moved
            if moved is None:  # a pixel_ref display moves the same picture (lvc.codec.blend): once
                shared = getattr(self._display, "moved", None)
                moved = shared() if shared else None
            if moved is None:
                moved = moved_picture(self._previous.result(), self._mv, self._block, self._frac, self._sharp)
            if self._display is None:  # every block skipped: the moved picture itself
                out = np.array(moved)
            else:
                out = self._display.result().copy()
                h, w = out.shape[:2]
                np.copyto(out, moved, where=block_pixels(self._skipped, 16, h, w))
            self._picture, self._display, self._previous, self._moved = out, None, None, None
        return self._picture


@dataclass
class ShownPicture:
    """What the decoder shows before the frame being coded, for its skip decision: the
    picture (anything with ``result()``), the input frame it stands for, and each block's
    coding error so far: carried over for blocks skipped since (``coded_sse``, ``skipped``),
    else the picture's own, or, after an I- or P-frame, that of ``context_picture``, the
    display of the context it started (what coding the block from there would give)."""

    pending: object
    frame: np.ndarray
    context_picture: object | None = None
    coded_sse: np.ndarray | None = None
    skipped: np.ndarray | None = None
    _errors: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    _moved: np.ndarray | None = field(default=None, repr=False)

    def block_errors(self, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(the picture, each block's coding error) once the pictures have arrived."""
        if self._errors is None:
            picture = self.pending.result()
            coding = picture if self.context_picture is None else self.context_picture.result()
            sse = block_sse(coding, self.frame, grid)
            if self.coded_sse is not None and self.skipped is not None:
                sse = np.where(self.skipped, self.coded_sse, sse)
            self._errors = picture, sse
        return self._errors

    def moved(self, mv: torch.Tensor, block: int, frac: int = 1) -> np.ndarray:
        """The picture moved by ``mv`` (:func:`moved_picture`), kept for the frame's picture."""
        if self._moved is None:
            self._moved = moved_picture(self.pending.result(), mv, block, frac)
        return self._moved

    def after(self, pending: object, frame: np.ndarray, skipped: np.ndarray | None) -> ShownPicture:
        """The next frame's view after a PC frame that skipped ``skipped``."""
        if skipped is None or self._errors is None:
            return ShownPicture(pending, frame)
        return ShownPicture(pending, frame, None, self._errors[1], skipped)


def block_sse(a: np.ndarray, b: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Per 16x16 block of the latent ``grid`` (which may reach past the frame): the sum over
    pixels of the mean over channels of squared 8-bit differences (pixels outside count 0).
    The mean as the channels' sum over 3 (exact integers, then one division: the float32
    values of ``torch.mean``, for every possible sum, without its slow 3-wide reduction)."""
    x = (a.astype(np.float32) - b.astype(np.float32)) ** 2
    d = torch.from_numpy(x[..., 0] + x[..., 1] + x[..., 2]) / 3
    h, w = d.shape
    e = F.pad(d[None, None], (0, grid[1] * 16 - w, 0, grid[0] * 16 - h))
    return (F.avg_pool2d(e, 16) * 256)[0, 0].numpy()


def decide(frame: np.ndarray, shown: ShownPicture, mv: torch.Tensor, motion_block: int,
           position_bits: np.ndarray, lmbda: float, frac: int = 1) -> np.ndarray:
    """The blocks (latent grid) to skip: see the module docstring."""
    _, coded = shown.block_errors(position_bits.shape)
    sse_skip = block_sse(shown.moved(mv, motion_block, frac), frame, position_bits.shape)
    return lmbda * (sse_skip - coded) < position_bits
