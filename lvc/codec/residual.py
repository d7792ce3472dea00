"""The residual layer: a frame's picture refined by a coded 8x8 transform residual.

Learned transforms saturate at high rates, and a conditional frame's picture loses detail
where content moves (docs/models.md, "Session 36"); a block transform of the remaining error
restores it at the cost classical codecs pay. Any frame may carry the layer (frame-type bit
``syntax.RESIDUAL_FLAG``, format 1.3): its picture is the base picture (what the frame type
decodes to) plus this residual, and later frames predict from, and copy blocks of, that sum.

In colour format 0 the residual is coded in YCoCg (``Y = (R + 2G + B) / 4``, ``Co = (R -
B) / 2``, ``Cg = (-R + 2G - B) / 4``), one component of three planes; in colour format 1
(:mod:`lvc.codec.colour`) in Y, then Cb and Cr at half size, two components (``COMPONENTS``).
Each plane is coded in 8x8 blocks of an orthonormal DCT (colour format 1's luma blocks may
be four 4x4 DCTs, since 1.8: :mod:`lvc.codec.transform`) with a uniform step per plane
(``step_size``, H.264's geometric steps). In the stream, after the declared
``syntax.RESIDUAL_HEADER``, one range-coded section holds, component after component:

1. for each plane and each of ``GROUPS`` frequency groups, a level: 0 (all zero) or the row
   + 1 of :func:`lvc.entropy.tables.laplace_tables` its coefficients use;
2. which blocks are coded, one flag per block in two vectorised passes: the anchors (even
   ``row + column``) without context, then the others with a context from how many of
   their four neighbours are coded (:func:`flag_contexts`); each context's binary row is
   chosen by the encoder and sent in 1.; then, with ``syntax.SMALL_FLAG`` (the luma
   component, since 1.8), the coded blocks' transform flags: their level, then the flags;
3. the coefficients of the coded blocks, plane by plane and group by group, each group's
   row moved by the block's context: its count of nonzero coefficients in the plane's lower
   groups, in classes (``CONTEXTS``, :func:`coefficient_rows`);
4. with ``syntax.INTRA_FLAG`` (colour format 1, since 1.7): its intra macroblocks and their
   modes (:mod:`lvc.codec.intra`), whose blocks are predicted from their neighbours.

Nothing here depends on the picture, and the inverse transform is exact integer arithmetic
(a 13-bit basis, quarter-pixel intermediate), so the residual decodes identically on every
machine; the picture it is added to is as deterministic as the frame type makes it.
The encoder's side (quantisation and its choices) is :mod:`lvc.codec.residual_rdo`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from lvc.bitstream import syntax
from lvc.codec import colour, deblock, intra
from lvc.codec.transform import BLOCK, inverse_blocks, step_size
from lvc.entropy import coder
from lvc.entropy.tables import LAPLACE_THETAS, CdfTables, binary_row, cheapest_rows, laplace_tables, uniform_row
from lvc.errors import BitstreamError

# Frequency group of each coefficient (u, v), by its diagonal u + v: 0, 1, 2, 3, 4-5, 6-7, 8-10, 11-14.
_DIAGONAL_GROUP = (0, 1, 2, 3, 4, 4, 5, 5, 6, 6, 6, 7, 7, 7, 7)
GROUP_OF = np.array([[_DIAGONAL_GROUP[u + v] for v in range(BLOCK)] for u in range(BLOCK)], dtype=np.int64)
GROUPS = 8
LEVELS = len(LAPLACE_THETAS)
# P(coded) of the coded-block flags' rows, in 64ths; the encoder picks one per frame
FLAG_LEVELS = (1, 2, 4, 8, 12, 16, 24, 32, 40, 48, 52, 56, 60, 62, 63)
LEVEL_ROW, FLAG_CHOICE_ROW, FLAG_ROW = LEVELS, LEVELS + 1, LEVELS + 2  # rows of residual_tables()
MODE_ROW = FLAG_ROW + len(FLAG_LEVELS)  # intra modes (since 1.7)
FLAG_CONTEXTS = 4
# Coefficient contexts per colour format (coefficient_rows): the classes' upper bounds of a
# block's nonzero count in the plane's lower groups, and each class's row offset. Format 0:
# none, 1-2, 3 or more. Format 1 (since 1.4): 0-1, 2-4, 5-9, 10-19, 20 or more, 6% fewer
# coefficient bits than format 0's classes on its layers (docs/models.md, "Colour format 1").
CONTEXTS = {syntax.COLOUR_RGB: ((0, 2), (-1, 0, 1)), syntax.COLOUR_YUV420: ((1, 4, 9, 19), (0, 1, 2, 3, 4))}
COEFF_LIMIT = 2047  # |quantised coefficient| at most this (the encoder clamps; more is corrupt)


# The components of each colour format's residual: (planes, log2 subsampling). Planes of one
# component share its coded-block flags; the first plane of the first is luma.
COMPONENTS = {syntax.COLOUR_RGB: ((3, 0),),  # Y, Co, Cg
              syntax.COLOUR_YUV420: ((1, 0), (2, 1))}  # Y; Cb and Cr at half size


def grid(colour_format: int, height: int, width: int) -> list[tuple[int, int, int]]:
    """(planes, plane height, plane width) of each component of a frame's residual."""
    return [(n, -(-height >> s), -(-width >> s)) for n, s in COMPONENTS[colour_format]]


def _inverse(coeffs: np.ndarray, coded: np.ndarray, steps: list[int], small: np.ndarray | None = None) -> np.ndarray:
    """(planes, hb * 8, wb * 8) int32 quarter levels of one component's coded blocks
    (``small``: those of them coded as 4x4 transforms)."""
    hb, wb = coded.shape
    planes = coeffs.shape[0]
    quarter = np.zeros((planes, hb, BLOCK, wb, BLOCK), dtype=np.int32)  # |value| < 2**26
    ys, xs = np.nonzero(coded)
    four = small[ys, xs] if small is not None else None
    for p in range(planes):
        quarter[p, ys, :, xs, :] = inverse_blocks(coeffs[p], steps[p], four)
    return quarter.reshape(planes, hb * BLOCK, wb * BLOCK)


@dataclass(frozen=True)
class Residual:
    """A decoded (or just coded) residual: per component (``COMPONENTS``), which blocks are
    coded and their quantised coefficients."""

    steps: tuple[int, int]  # step indices: luma, chroma
    coded: tuple[np.ndarray, ...]  # per component: (hb, wb) bool, 8x8 blocks
    coeffs: tuple[np.ndarray, ...]  # per component: (planes, n_coded, 8, 8) int64, raster order of ``coded``
    colour_format: int = syntax.COLOUR_RGB
    deblock: tuple[int, int] = (0, 0)  # luma, chroma strengths (lvc.codec.deblock; colour format 1)
    intra: np.ndarray | None = None  # (mbh, mbw) bool: intra macroblocks (lvc.codec.intra; colour format 1)
    modes: np.ndarray | None = None  # (intra count, 5): their luma and chroma modes
    small: np.ndarray | None = None  # (hb, wb) bool: luma blocks coded as four 4x4 transforms (since 1.8)
    # planes() by size, computed once: the encoder's deblocking choice and the picture both
    # need them (dataclasses.replace with other strengths shares it: planes() ignores them)
    _planes: dict = field(default_factory=dict, compare=False, repr=False)

    def quarter(self, height: int, width: int, crop: bool = True) -> list[np.ndarray]:
        """Per component, (planes, plane height, plane width) int32: the residual in quarter
        levels (``crop=False``: whole blocks)."""
        out = []
        for c, (planes, ph, pw) in enumerate(grid(self.colour_format, height, width)):
            steps = [self.steps[min(c + p, 1)] for p in range(planes)]
            q = _inverse(self.coeffs[c], self.coded[c], steps, self.small if c == 0 else None)
            out.append(q[:, :ph, :pw] if crop else q)
        return out

    @property
    def has_small(self) -> bool:
        """Whether the layer says its coded luma blocks' transform sizes (syntax.SMALL_FLAG;
        a decoded layer may say all 8x8, the encoder then writes none)."""
        return self.small is not None

    @property
    def has_intra(self) -> bool:
        return self.intra is not None and bool(self.intra.any())

    @property
    def filtered(self) -> tuple[np.ndarray, ...]:
        """The blocks whose edges deblocking looks at, per component: the coded ones and
        those of intra macroblocks."""
        if not self.has_intra:
            return self.coded
        masks = intra.block_masks(self.intra, self.coded[0].shape, self.coded[1].shape)
        return tuple(c | m for c, m in zip(self.coded, masks, strict=True))

    def pixels(self, height: int, width: int) -> np.ndarray:
        """The residual in RGB pixels, (height, width, 3) int16: exact integers."""
        parts = self.quarter(height, width)
        if self.colour_format == syntax.COLOUR_YUV420:
            return colour.rgb_delta(parts[0][0], parts[1][0], parts[1][1])
        y, co, cg = parts[0]
        rgb = np.stack([y + co - cg, y + cg, y - co - cg], axis=-1)
        return np.clip((rgb + 2) >> 2, -255, 255).astype(np.int16)

    def planes(self, height: int, width: int) -> colour.Planes:
        """Y, Cb, Cr in quarter levels (colour format 1; not to be modified)."""
        if (height, width) not in self._planes:
            luma, chroma = self.quarter(height, width)
            self._planes[height, width] = luma[0], chroma[0], chroma[1]
        return self._planes[height, width]

    @property
    def step_sizes(self) -> tuple[int, int]:
        """Luma and chroma steps in 1/16."""
        return step_size(self.steps[0]), step_size(self.steps[1])

    def delta(self, base: colour.Planes, height: int, width: int) -> colour.Planes:
        """What this layer adds to ``base`` (the picture's quarter-level planes) in colour
        format 1: its residual (in intra macroblocks, the prediction's difference from the
        base too), and then what the deblocking changes of the sum."""
        total = self.unfiltered(base, height, width)
        if any(self.deblock):
            total = deblock.apply(list(total), self.filtered, self.step_sizes, self.deblock, self.small)
        return tuple(t - b for t, b in zip(total, base, strict=True))

    def unfiltered(self, base: colour.Planes, height: int, width: int) -> colour.Planes:
        """``base`` plus this layer before deblocking (colour format 1)."""
        if not self.has_intra:
            return tuple(b + d for b, d in zip(base, self.planes(height, width), strict=True))
        known = self._planes.get(("sums", height, width))
        if known is not None and all(np.array_equal(a, b) for a, b in zip(known[0], base, strict=True)):
            return known[1]
        luma, chroma = self.quarter(height, width, crop=False)
        return intra.compose(base, (luma[0], chroma[0], chroma[1]), self.intra, self.modes)

    def keep_sums(self, base: colour.Planes, sums: colour.Planes) -> None:
        """Remember ``sums``, what :meth:`unfiltered` gives on ``base`` (the encoder's own
        coding made them: composing again would repeat its work). A ``replace`` that changes
        the coding must pass ``_planes={}``."""
        self._planes["sums", sums[0].shape[0], sums[0].shape[1]] = (base, sums)


def add_residual(picture: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """The 8-bit picture plus an int16 residual, clamped to 0..255."""
    return np.clip(picture.astype(np.int16) + residual, 0, 255).astype(np.uint8)


def residual_tables() -> CdfTables:
    """Every row the section uses, fixed integers (part of the bitstream: do not change):
    the Laplacian rows, then ``LEVEL_ROW`` (uniform over 0..LEVELS), ``FLAG_CHOICE_ROW``
    (uniform over the flag levels), then one binary row per ``FLAG_LEVELS`` entry."""
    lap = laplace_tables()
    rows = [lap.freqs[i, :n] for i, n in enumerate(lap.lengths)]
    rows += [uniform_row(LEVELS + 1), uniform_row(len(FLAG_LEVELS))] + [binary_row(n) for n in FLAG_LEVELS]
    rows += [uniform_row(intra.MODES)]
    return CdfTables.from_rows(rows, [*lap.offsets, 0, 0, *[0] * len(FLAG_LEVELS), 0])


class ResidualCoder:
    """Entropy coding of a :class:`Residual` (module docstring, items 1-4): runs of the range
    coder for the levels with the flags' levels, the anchors' flags, the other flags, and
    each plane's groups of coefficients; then the intra flags (their levels, anchors,
    others) and the modes."""

    @cached_property
    def tables(self) -> CdfTables:
        return residual_tables()

    @cached_property
    def _coder(self) -> coder.TableCoder:
        return coder.TableCoder(self.tables)

    def flag_choices(self, coded: np.ndarray) -> np.ndarray:
        """For each flag context, the level that codes its flags in the fewest bits."""
        return cheapest_rows(self.tables, FLAG_ROW + np.arange(len(FLAG_LEVELS)), flag_contexts(coded),
                             coded.astype(np.int64), FLAG_CONTEXTS)

    def encode(self, r: Residual, levels: tuple[np.ndarray, ...]) -> tuple[bytes, float]:
        """The section (declared header + range-coded words) and its information content
        in bits. ``levels``, per component (planes, GROUPS): 0, or the table row + 1; groups
        at 0 must be zero."""
        enc = coder.new_encoder()
        bits = 0.0
        for c, (coded, coeffs, lv) in enumerate(zip(r.coded, r.coeffs, levels, strict=True)):
            small = r.small[coded] if c == 0 and r.has_small else None
            bits += self._encode_component(enc, coded, coeffs, lv, r.colour_format, small)
        if r.has_intra:  # (the frame type's syntax.INTRA_FLAG says so)
            bits += self._encode_flags(enc, r.intra)
            symbols = r.modes.ravel()
            self._coder.encode(enc, symbols, np.full(symbols.size, MODE_ROW))
            bits += self.tables.bits(np.full(symbols.size, MODE_ROW), symbols)
        words = coder.finish(enc)
        head = syntax.pack(syntax.RESIDUAL_HEADER, dict(residual_length=len(words), luma_step=r.steps[0],
                                                        chroma_step=r.steps[1], deblock_luma=r.deblock[0],
                                                        deblock_chroma=r.deblock[1]))
        return head + words, bits + 8 * len(head)

    def _encode_component(self, enc, coded: np.ndarray, coeffs: np.ndarray, levels: np.ndarray,
                          colour_format: int, small: np.ndarray | None = None) -> float:
        """One component's levels, flags and coefficients (module docstring, items 1-3)."""
        bits = self._encode_flags(enc, coded, levels.ravel(), _head_rows(levels.shape[0]))
        if small is not None:
            bits += self._encode_small(enc, small)
        before = np.zeros(coeffs.shape[:2], dtype=np.int64)
        for p, level, take in _runs(levels):
            symbols = coeffs[p][:, take]
            rows = np.repeat(coefficient_rows(level, before[p], colour_format)[:, None], symbols.shape[1], axis=1)
            self._coder.encode(enc, symbols.ravel(), rows.ravel())
            bits += self.tables.bits(rows.ravel(), symbols.ravel())
            before[p] += (symbols != 0).sum(1)
        return bits

    def _encode_flags(self, enc, flags: np.ndarray, head: np.ndarray | None = None,
                      head_rows: np.ndarray | None = None) -> float:
        """Block flags (module docstring, item 2) with their contexts' levels, after the
        symbols ``head`` under ``head_rows`` (a component's levels); their bits."""
        choices = self.flag_choices(flags)
        ctx, anchor = flag_contexts(flags), _anchors(flags.shape)
        f = flags.astype(np.int64)
        first = choices if head is None else np.concatenate([head, choices])
        first_rows = np.full(choices.size, FLAG_CHOICE_ROW) if head_rows is None else head_rows
        bits = 0.0
        for symbols, rows in ((first, first_rows), (f[anchor], FLAG_ROW + choices[ctx[anchor]]),
                              (f[~anchor], FLAG_ROW + choices[ctx[~anchor]])):
            self._coder.encode(enc, symbols, rows)
            bits += self.tables.bits(rows, symbols)
        return bits

    def _encode_small(self, enc, small: np.ndarray) -> float:
        """The coded blocks' transform flags: the level of their binary row, then the flags."""
        s = small.astype(np.int64)
        choice = int(cheapest_rows(self.tables, FLAG_ROW + np.arange(len(FLAG_LEVELS)), np.zeros(s.size, np.int64),
                                   s, 1)[0]) if s.size else 0
        bits = 0.0
        for symbols, rows in ((np.array([choice]), np.array([FLAG_CHOICE_ROW])),
                              (s, np.full(s.size, FLAG_ROW + choice))):
            self._coder.encode(enc, symbols, rows)
            bits += self.tables.bits(rows, symbols)
        return bits

    def _decode_small(self, dec, n: int) -> np.ndarray:
        """Inverse of :meth:`_encode_small` for ``n`` coded blocks."""
        choice = int(self._coder.decode(dec, np.array([FLAG_CHOICE_ROW]))[0])
        if not 0 <= choice < len(FLAG_LEVELS):
            raise ValueError("level out of range")
        values = self._coder.decode(dec, np.full(n, FLAG_ROW + choice))
        if ((values != 0) & (values != 1)).any():
            raise ValueError("transform flag out of range")
        return values == 1

    def _decode_flags(self, dec, shape: tuple[int, int], choices: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`_encode_flags` once the levels ``choices`` are read."""
        if choices.min() < 0 or choices.max() >= len(FLAG_LEVELS):
            raise ValueError("level out of range")
        flags = np.zeros(shape, dtype=bool)
        anchor = _anchors(shape)
        for part in (anchor, ~anchor):  # the second's contexts read the first's flags
            rows = FLAG_ROW + choices[flag_contexts(flags)[part]]
            values = self._coder.decode(dec, rows)
            if ((values != 0) & (values != 1)).any():
                raise ValueError("block flag out of range")
            flags[part] = values == 1
        return flags

    def decode(self, section: bytes, height: int, width: int, where: str,
               colour_format: int = syntax.COLOUR_RGB, with_intra: bool = False, with_small: bool = False) -> Residual:
        """Inverse of :meth:`encode` (``section`` as split off by the container;
        ``with_intra``, ``with_small``: the frame type's ``syntax.INTRA_FLAG`` and ``SMALL_FLAG``)."""
        values, pos = syntax.unpack(syntax.RESIDUAL_HEADER, section, 0, where)
        if (with_intra or with_small) and colour_format != syntax.COLOUR_YUV420:
            raise BitstreamError("intra macroblocks or transform sizes in a colour format 0 layer", where,
                                 "the file is corrupted")
        mb, modes = None, None
        try:
            dec = coder.new_decoder(section[pos:])
            parts = [self._decode_component(dec, planes, (-(-ph // BLOCK), -(-pw // BLOCK)), colour_format,
                                            c == 0 and with_small)
                     for c, (planes, ph, pw) in enumerate(grid(colour_format, height, width))]
            if with_intra:
                mb = self._decode_flags(dec, parts[1][0].shape, self._coder.decode(
                    dec, np.full(FLAG_CONTEXTS, FLAG_CHOICE_ROW)))
                n = int(mb.sum()) * (intra.LUMA_MODES + 1)
                modes = self._coder.decode(dec, np.full(n, MODE_ROW)).reshape(-1, intra.LUMA_MODES + 1)
                if modes.size and (modes.min() < 0 or modes.max() >= intra.MODES):
                    raise ValueError("intra mode out of range")
            if not dec.maybe_exhausted():
                raise ValueError("section holds more data than the layer needs")
        except Exception as e:  # noqa: BLE001 - any failure inside a CRC-valid section means a bad stream
            raise BitstreamError(f"residual layer does not decode ({e.__class__.__name__}: {e})", where,
                                 "the file is corrupted") from None
        if max(np.abs(p[1]).max(initial=0) for p in parts) > COEFF_LIMIT:
            raise BitstreamError("residual coefficient out of range", where, "the file is corrupted")
        strengths = (values["deblock_luma"], values["deblock_chroma"])
        if any(strengths) and colour_format != syntax.COLOUR_YUV420:
            raise BitstreamError("residual layer deblocks a colour format 0 picture", where, "the file is corrupted")
        small = parts[0][2]
        return Residual((values["luma_step"], values["chroma_step"]), tuple(p[0] for p in parts),
                        tuple(p[1] for p in parts), colour_format, strengths, mb, modes, small)

    def _decode_component(self, dec, planes: int, shape: tuple[int, int],
                          colour_format: int, with_small: bool = False
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        head = self._coder.decode(dec, _head_rows(planes))
        levels, choices = head[:planes * GROUPS].reshape(planes, GROUPS), head[planes * GROUPS:]
        if levels.min() < 0 or levels.max() > LEVELS:
            raise ValueError("level out of range")
        coded = self._decode_flags(dec, shape, choices)
        n = int(coded.sum())
        small = None
        if with_small:
            small = np.zeros(shape, dtype=bool)
            small[coded] = self._decode_small(dec, n)
        coeffs = np.zeros((planes, n, BLOCK, BLOCK), dtype=np.int64)
        before = np.zeros((planes, n), dtype=np.int64)
        for p, level, take in _runs(levels):
            rows = np.repeat(coefficient_rows(level, before[p], colour_format)[:, None], int(take.sum()), axis=1)
            symbols = self._coder.decode(dec, rows.ravel()).reshape(rows.shape)
            coeffs[p][:, take] = symbols
            before[p] += (symbols != 0).sum(1)
        return coded, coeffs, small


def _head_rows(planes: int) -> np.ndarray:
    """Rows of a component's levels (planes x GROUPS) and flag choices."""
    return np.array([LEVEL_ROW] * (planes * GROUPS) + [FLAG_CHOICE_ROW] * FLAG_CONTEXTS)


def _anchors(shape: tuple[int, int]) -> np.ndarray:
    """The flags coded first: blocks with an even ``row + column``."""
    return np.indices(shape).sum(0) % 2 == 0


def flag_contexts(coded: np.ndarray) -> np.ndarray:
    """Context of every flag: 0 for the anchors (coded first, without context); for the
    others, from how many of their four neighbours (anchors all) are coded: 1 for none,
    2 for one or two, 3 for three or four."""
    n = np.zeros(coded.shape, dtype=np.int64)
    c = coded.astype(np.int64)
    n[1:] += c[:-1]
    n[:-1] += c[1:]
    n[:, 1:] += c[:, :-1]
    n[:, :-1] += c[:, 1:]
    ctx = np.where(n == 0, 1, np.where(n <= 2, 2, 3))
    return np.where(_anchors(coded.shape), 0, ctx)


def context_class(before: np.ndarray, colour_format: int) -> np.ndarray:
    """Each block's coefficient context: the class (``CONTEXTS``) of ``before``, its count
    of nonzero coefficients in the plane's lower groups."""
    return np.searchsorted(np.asarray(CONTEXTS[colour_format][0]), before, side="left")


def coefficient_rows(level: int, before: np.ndarray, colour_format: int) -> np.ndarray:
    """Table row of each block's coefficients in a group at ``level`` (> 0): the level's
    row, moved by the offset of the block's context class."""
    shift = np.asarray(CONTEXTS[colour_format][1])[context_class(before, colour_format)]
    return np.clip(level - 1 + shift, 0, LEVELS - 1)


def _runs(levels: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """(plane, level, its bands) of every group with a level, in coding order."""
    return [(p, int(levels[p, g]), GROUP_OF == g)
            for p in range(levels.shape[0]) for g in range(GROUPS) if levels[p, g]]
