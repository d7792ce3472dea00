"""The residual layer's encoder (:mod:`lvc.codec.residual`): steps, quantisation, and which
blocks and coefficients are worth their bits.

Everything is weighed by ``lambda_r * SSE / 3 + bits`` (the codec's ``lambda * MSE + bpp``
per block, SSE summed over RGB), with ``lambda_r = RESIDUAL_WEIGHT * lambda``: detail restored
in one picture is copied and predicted from by the frames after it, which a one-frame
decision does not see (as x264's macroblock tree lowers the quantiser of blocks that are
referenced). The step follows ``lambda_r`` as classical codecs' steps follow their lambda.
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import cached_property

import numpy as np

from lvc.bitstream import syntax
from lvc.codec import colour, deblock, intra, intra_rdo, intra_wavefront
from lvc.codec.residual import COEFF_LIMIT, CONTEXTS, GROUP_OF, GROUPS, LEVELS, Residual, ResidualCoder, context_class
from lvc.codec.transform import BLOCK, STEP_BASE, STEP_MAX, forward, forward4, pixel_blocks, step_size
from lvc.models.frozen import QUALITY_MAX

RESIDUAL_WEIGHT = 8.0  # lambda_r / lambda (module docstring), from RAMP_QUALITY up
RAMP_QUALITY = 0.33  # below it the weight falls linearly to 1 at quality 0
STEP_FACTOR = 6.0  # luma step ~ STEP_FACTOR / sqrt(lambda_r) pixels (colour format 0)
# Colour format 1's: finer steps for the same lambda_r, -5.6% PSNR-YUV on 8 training clips
# against 6 (5: -3.2%, 3: -7.3%, but the lowest rates rise 15% at 4 and 29% at 3;
# docs/models.md, "Colour format 1").
YUV_STEP_FACTOR = 4.0
CHROMA_OFFSET = 0  # chroma step index above luma's (+3, steps x 1.41, cost 1.3% bits; +6 about 4%)
DEADZONE = 0.1  # quantiser rounding offset 0.5 - DEADZONE before the coefficient choices
PLANE_WEIGHT = np.array([3.0, 2.0, 3.0])  # RGB squared error per squared error of Y, Co, Cg
# Colour format 1: RGB squared error per squared error of a luma sample (3 * (298 / 256)**2),
# and of a chroma sample: as much as the 4 luma samples it covers. (PSNR-YUV 6:1:1 in MSE
# terms would weigh it 2/3 of a luma sample, but it averages PSNRs, so a plane's error
# counts inversely to its MSE, and chroma's is the smaller; its RGB error weighs it 13-17.
# On 8 training clips, against colour format 0, per-clip BD-rate PSNR-YUV / RGB / Y:
# 2.7: -8.3 / +6.7 / -21.8%; 5.4: -11.4 / +0.1 / -20.6%; 10.8: -14.3 / -4.1 / -18.2%;
# 16.26 (shipped): -15.2 / -4.9 / -16.0%; 21.6: -16.0 / -4.8 / -13.7%; docs/models.md,
# "Colour format 1".)
YUV_LUMA_WEIGHT = 4.065
YUV_CHROMA_WEIGHT = 4 * YUV_LUMA_WEIGHT
# The choices' algorithm and constants: a change here changes streams (benchmark caches key on it).
RESIDUAL_ENCODER = (f"rdoq-blocks/1 w={RESIDUAL_WEIGHT:g}@{RAMP_QUALITY:g} k={STEP_FACTOR:g} c+{CHROMA_OFFSET} "
                    f"dz={DEADZONE:g}")
# Colour format 1's layers deblock in the loop (format 1.5, lvc.codec.deblock), each frame at the
# strengths nearest its source: -3.4% PSNR-YUV on 8 training clips, every clip better
# (docs/models.md, "Session 40").
DEBLOCKING = True
# Luma blocks as four 4x4 transforms (format 1.8, lvc.codec.transform), chosen per block by
# ``lambda_r / 3 * SSE + bits`` with a 4x4 block's flag at SMALL_FLAG_BITS: "search" codes
# each size on its own (two more choices of the luma coefficients per layer), "estimate"
# prices both after a plain dead-zone quantiser, a nonzero value of magnitude m at
# ESTIMATE_BITS + 2 log2 m bits: on 3 clips' layers 85-95% of the search's gain in that cost
# (docs/models.md, "Session 44").
TRANSFORM_SEARCHES = ("estimate", "search")
SMALL_FLAG_BITS = 1.0
ESTIMATE_BITS = 3.0
YUV_ENCODER = (f"yuv420/2 luma={YUV_LUMA_WEIGHT:g} chroma={YUV_CHROMA_WEIGHT:g} k={YUV_STEP_FACTOR:g}"
               f" dbk={int(DEBLOCKING)}/{deblock.BETA_RATIO}/{deblock.START}"
               f" intra={intra_rdo.INTRA_PENALTY:g},{intra_rdo.INTRA_PENALTY_SLOW:g}/{intra.MODES}/rd"
               f"/{intra_rdo.MODE_BITS:g}/{intra_rdo.FLAG_BITS:g}/{intra_rdo.DEADZONE:g}"
               f" t4={SMALL_FLAG_BITS:g}/{ESTIMATE_BITS:g}")  # format 1's
LIVE_BITS = 4.0  # blocks whose whole error is worth fewer bits than this are never coded
PASSES = 2  # coefficient and block choices, each with the tables refitted to the last
FLAG_SHARE_START, FLAG_SHARE_MIN = 0.1, 0.01  # the coded share the flags' cost assumes (first pass, bounds)
LUT_SIZE = 258  # magnitudes the choices price exactly (beyond: escapes, priced as the last)
_GROUP_SIZE = np.bincount(GROUP_OF.ravel(), minlength=GROUPS)


def step_indices(lmbda_r: float, chroma_weight: float = 1.0, luma_weight: float = 1.0,
                 factor: float = STEP_FACTOR) -> tuple[int, int]:
    """(luma, chroma) step indices for the rate weight ``lambda_r``: about ``factor /
    sqrt(lambda_r * weight)`` pixels, the weights being squared error per plane sample in
    units of YCoCg's Y."""
    def index(w: float) -> int:
        delta16 = 16 * factor / math.sqrt(lmbda_r * w)
        return min(max(round(6 * math.log2(delta16 / STEP_BASE[0])), 0), STEP_MAX)

    luma = index(luma_weight)
    chroma = luma if chroma_weight == luma_weight else index(chroma_weight)
    return luma, min(chroma + CHROMA_OFFSET, STEP_MAX)


def transform(frame: np.ndarray, picture: np.ndarray) -> np.ndarray:
    """DCT coefficients (3, hb, wb, 8, 8) of ``frame - picture`` in YCoCg."""
    res = frame.astype(np.float64) - picture
    r, g, b = res[..., 0], res[..., 1], res[..., 2]
    return forward(np.stack([(r + 2 * g + b) / 4, (r - b) / 2, (2 * g - r - b) / 4]))


def transform_yuv(planes: colour.Planes, picture: np.ndarray) -> list[np.ndarray]:
    """DCT coefficients of the source ``planes`` minus ``picture``'s exact conversion
    (:func:`lvc.codec.colour.quarter_yuv`): luma (1, hb, wb, 8, 8), chroma (2, ...); and
    the luma error itself (1, H, W), which the 4x4 transforms start from."""
    y, cb, cr = colour.quarter_yuv(picture)
    luma = planes[0].astype(np.float64) - y / 4
    chroma = np.stack([planes[1].astype(np.float64) - cb / 4, planes[2].astype(np.float64) - cr / 4])
    return [forward(luma[None]), forward(chroma), luma[None]]


class ResidualEncoder:
    """Chooses and codes a frame's residual layer."""

    def __init__(self, weight: float = RESIDUAL_WEIGHT, deblocking: bool = DEBLOCKING,
                 intra_penalty: float | None = intra_rdo.INTRA_PENALTY,
                 transform_search: str | None = "estimate") -> None:
        """``intra_penalty``: the intra candidates' (:mod:`lvc.codec.intra_rdo`); None codes
        no intra macroblocks. ``transform_search``: how luma blocks' transform sizes are
        chosen (``TRANSFORM_SEARCHES``); None codes every block as one 8x8 transform."""
        if transform_search not in (None, *TRANSFORM_SEARCHES):
            raise ValueError(f"transform_search must be one of {TRANSFORM_SEARCHES} or None")
        self.weight, self.deblocking, self.intra_penalty = weight, deblocking, intra_penalty
        self.transform_search = transform_search
        self.coder = ResidualCoder()

    @cached_property
    def lut(self) -> np.ndarray:
        """(LEVELS, LUT_SIZE) bits of a coefficient by row and magnitude (the rows are
        symmetric; magnitudes from LUT_SIZE - 1 up cost as much as that one)."""
        t, mags = self.coder.tables, np.arange(LUT_SIZE, dtype=np.int64)
        return np.stack([t.element_bits(np.full(LUT_SIZE, row), mags) for row in range(LEVELS)])

    def weight_at(self, quality: int) -> float:
        """``lambda_r / lambda`` at integer quality ``quality`` (the sequence's: every frame of
        it, raised I-frames included, so that those are not coded far finer than the frames
        copying them): ``weight`` from ``RAMP_QUALITY`` up, falling linearly to 1 at quality
        0, so that the lowest qualities keep about the base layer's rates."""
        if self.weight <= 1:
            return self.weight
        return 1 + (self.weight - 1) * min(1.0, quality / (RAMP_QUALITY * QUALITY_MAX))

    def encode(self, frame: np.ndarray, picture: np.ndarray, lmbda: float, quality: int = QUALITY_MAX,
               planes: colour.Planes | None = None, chroma: bool = True,
               intra_everywhere: bool = False) -> tuple[bytes, float, Residual] | None:
        """(section, bits, residual) for ``frame`` shown as ``picture`` at rate weight
        ``lmbda`` and integer ``quality``, or None where no block is worth coding. With the
        source's yuv420p ``planes`` the layer is colour format 1's (coded against them);
        there, ``chroma=False`` codes none of its chroma (a grey frame shows none; colour
        format 0's YCoCg planes are one component and ignore it). ``intra_everywhere``: every
        macroblock intra, coded by :mod:`lvc.codec.intra_wavefront` (an IL frame's layer; with
        intra macroblocks on and chroma only)."""
        lmbda_r = self.weight_at(quality) * lmbda
        if planes is None:
            fmt, steps = syntax.COLOUR_RGB, step_indices(lmbda_r)
            comps = [(transform(frame, picture), PLANE_WEIGHT)]
        else:
            fmt = syntax.COLOUR_YUV420
            steps = step_indices(lmbda_r, YUV_CHROMA_WEIGHT / 3, YUV_LUMA_WEIGHT / 3, YUV_STEP_FACTOR)
            luma, cbcr, pixels = transform_yuv(planes, picture)
            comps = [(luma, np.array([YUV_LUMA_WEIGHT])), (cbcr, np.array([YUV_CHROMA_WEIGHT] * 2))]
        chosen, small = [], None
        for component, (coef, weights) in enumerate(comps):
            d = np.array([step_size(steps[min(component + p, 1)]) / 16 for p in range(coef.shape[0])])
            skip = component > 0 and not chroma  # a component of chroma planes only (format 1's second)
            scale = lmbda_r / 3 * weights * (0 if skip else 1)
            if component == 0 and fmt == syntax.COLOUR_YUV420 and self.transform_search:
                coef, small = self._transform_sizes(coef, pixels, scale, d)
            chosen.append(self._choose(coef, scale, d, fmt))
        if not any(mask.any() for mask, _, _ in chosen):
            return None
        if small is not None:
            small &= chosen[0][0]
        residual = Residual(steps, tuple(c[0] for c in chosen), tuple(c[1] for c in chosen), fmt,
                            small=small if small is not None and small.any() else None)
        levels = tuple(c[2] for c in chosen)
        if fmt == syntax.COLOUR_YUV420:
            quarter = colour.quarter_yuv(picture)
            if self.intra_penalty is not None and chroma:
                scale = lmbda_r / 3 * np.array([YUV_LUMA_WEIGHT, YUV_CHROMA_WEIGHT, YUV_CHROMA_WEIGHT])
                residual, levels = self._with_intra(residual, levels, quarter, planes, scale, intra_everywhere)
            if self.deblocking:
                shown = list(residual.unfiltered(quarter, *frame.shape[:2]))
                residual = replace(residual, deblock=deblock.choose(shown, planes, residual.filtered,
                                                                    residual.step_sizes, chroma, residual.small))
        section, total = self.coder.encode(residual, levels)
        return section, total, residual

    def _transform_sizes(self, coef8: np.ndarray, pixels: np.ndarray, scale: np.ndarray,
                         d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Luma coefficients ``coef8`` (1, hb, wb, 8, 8) of the error ``pixels`` (1, H, W) with
        each block in the transform size of least cost (module constants), and the 4x4 blocks.
        Blocks never coded (``LIVE_BITS``) keep their 8x8 coefficients."""
        live = scale[0] * (coef8[0] ** 2).sum((-2, -1)) > LIVE_BITS
        coef4 = coef8.copy()
        coef4[0, live] = forward4(pixel_blocks(pixels)[0][live])
        if self.transform_search == "search":
            cost8, cost4 = (self._block_costs(c, scale, d, self._choose(c, scale, d, syntax.COLOUR_YUV420))
                            for c in (coef8, coef4))
        else:
            cost8, cost4 = (_estimated_costs(c[0], scale[0], d[0]) for c in (coef8, coef4))
        small = cost4 + SMALL_FLAG_BITS < cost8
        return np.where(small[None, :, :, None, None], coef4, coef8), small

    def _block_costs(self, coef: np.ndarray, scale: np.ndarray, d: np.ndarray,
                     chosen: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        """(hb, wb) ``lambda_r / 3 * SSE + bits`` of one plane's blocks as ``chosen`` codes them."""
        mask, q, levels = chosen
        cost = scale[0] * (coef[0] ** 2).sum((-2, -1))
        if not mask.any():
            return cost
        c = coef[0][mask]
        n = c.shape[0]
        plane, blk, fu, fv = np.nonzero(q)
        val, gid = q[plane, blk, fu, fv], GROUP_OF[fu, fv]
        rows = _rows(levels, _contexts(plane, blk, gid, val, n, 1, syntax.COLOUR_YUV420), syntax.COLOUR_YUV420)[0]
        ext = self._lut_ext()
        bits = (ext[rows, 0] * _GROUP_SIZE).sum(1)
        r = rows[blk, gid]
        mags = np.minimum(np.abs(val), LUT_SIZE - 1).astype(np.int64)
        bits += np.bincount(blk, ext[r, mags] - ext[r, 0], minlength=n)
        cost[mask] = scale[0] * ((c - q[0] * d[0]) ** 2).sum((-2, -1)) + bits
        return cost

    def _with_intra(self, residual: Residual, levels: tuple[np.ndarray, ...], quarter: colour.Planes,
                    planes: colour.Planes, scale: np.ndarray,
                    everywhere: bool = False) -> tuple[Residual, tuple[np.ndarray, ...]]:
        """``residual`` with the intra macroblocks worth it (:mod:`lvc.codec.intra_rdo`), or
        every macroblock intra (``everywhere``), and its levels refitted; as it is where there
        are none."""
        h, w = planes[0].shape
        grids = tuple(c.shape for c in residual.coded)
        luma, chroma = residual.quarter(h, w, crop=False)
        res = [luma[0], chroma[0], chroma[1]]  # whole blocks
        if everywhere:  # (an IL frame's layer: lvc.codec.intra_wavefront)
            mb, modes = np.ones(residual.coded[1].shape, dtype=bool), None
        else:
            total = tuple(b + r[:b.shape[0], :b.shape[1]] for b, r in zip(quarter, res, strict=True))
            mb, modes = intra_rdo.candidates(planes, quarter, total, residual.coded,
                                             step_size(residual.steps[0]) / 16, self.intra_penalty)
        if not mb.any():
            return residual, levels
        full = []
        for coded, coeffs in zip(residual.coded, residual.coeffs, strict=True):
            f = np.zeros((coeffs.shape[0], *coded.shape, BLOCK, BLOCK), dtype=np.int64)
            f[:, coded] = coeffs
            full.append(f)
        inter = None if everywhere else [r.copy() for r in res]
        masks = intra.block_masks(mb, *grids)
        for i, r in enumerate(res):  # the candidates' blocks start from their base
            r[np.repeat(np.repeat(masks[min(i, 1)], BLOCK, 0), BLOCK, 1)] = 0
        sums = intra.IntraPlanes(quarter, tuple(res), mb.shape)
        coder = intra_rdo.IntraCoder(self._lut_ext(), scale, residual.steps, levels,
                                     SMALL_FLAG_BITS if self.transform_search else None)
        if everywhere:
            mb, modes, coded_blocks, small_blocks = intra_wavefront.code_everywhere(coder, sums, planes, grids)
        else:
            whole = tuple(sums.whole(r, i) for i, r in enumerate(inter))
            mb, modes, coded_blocks, small_blocks = coder.code(sums, planes, mb, modes, grids, whole, tuple(full))
        if not mb.any():
            return residual, levels
        masks = intra.block_masks(mb, *grids)
        for f, m in zip(full, masks, strict=True):
            f[:, m] = 0  # the intra macroblocks' blocks are coded again
        kept = tuple(c & ~m for c, m in zip(residual.coded, masks, strict=True))
        small = np.zeros(grids[0], dtype=bool) if residual.small is None else residual.small & kept[0]
        coded = list(kept)
        for (p, by, bx), q in coded_blocks.items():
            full[min(p, 1)][max(p - 1, 0), by, bx] = q
            coded[min(p, 1)][by, bx] = True
        for by, bx in small_blocks:
            small[by, bx] = True
        small = small if small.any() else None
        coeffs = tuple(f[:, c] for f, c in zip(full, coded, strict=True))
        out = replace(residual, coded=tuple(coded), coeffs=coeffs, intra=mb, modes=modes, small=small, _planes={})
        out.keep_sums(quarter, sums.cropped())  # what the decoder's composition gives (tests check)
        return out, tuple(self._refit(c) for c in coeffs)

    def _refit(self, coeffs: np.ndarray) -> np.ndarray:
        """The levels of one component's coded blocks' coefficients (planes, n, 8, 8) (colour format 1)."""
        fmt = syntax.COLOUR_YUV420
        n = coeffs.shape[1]
        plane, blk, fu, fv = np.nonzero(coeffs)
        val, gid = coeffs[plane, blk, fu, fv], GROUP_OF[fu, fv]
        ctx = _contexts(plane, blk, gid, val, n, coeffs.shape[0], fmt)
        return self._levels(plane, blk, gid, val, ctx, np.ones(n, dtype=bool), fmt)

    def _choose(self, coef: np.ndarray, scale: np.ndarray, d: np.ndarray,
                fmt: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One component's choices: (coded-block mask, coefficients of the coded blocks,
        levels) for its DCT coefficients ``coef`` (planes, hb, wb, 8, 8), priced with
        ``scale`` (per plane: lambda_r / 3 * RGB squared error per squared error) at steps
        ``d``, with colour format ``fmt``'s coefficient contexts."""
        planes = coef.shape[0]
        nothing = (np.zeros(coef.shape[1:3], dtype=bool), np.zeros((planes, 0, BLOCK, BLOCK), dtype=np.int64),
                   np.zeros((planes, GROUPS), dtype=np.int64))
        energy = (scale[:, None, None, None, None] * coef ** 2).sum((0, 3, 4))
        live = energy > LIVE_BITS  # even a perfect coding would not pay for its flag and symbols
        if not live.any():
            return nothing
        c = coef[:, live]  # (planes, n, 8, 8)
        dd = d[:, None, None, None]
        q = np.clip(np.sign(c) * np.floor(np.abs(c) / dd + 0.5 - DEADZONE), -COEFF_LIMIT, COEFF_LIMIT)
        # Only nonzero coefficients have choices (zeros cost their band's zero symbol): each
        # is (plane, block, u, v) with its coefficient ``cv`` and quantised value ``val``.
        nz = np.nonzero(q)
        plane, blk, fu, fv = nz
        cv, val = c[nz], q[nz]
        w, dq = scale[plane], d[plane]
        n, gid = c.shape[1], GROUP_OF[fu, fv]
        share, coded = FLAG_SHARE_START, np.ones(n, dtype=bool)
        ext = self._lut_ext()
        flat = ext.ravel()
        for _ in range(PASSES):
            ctx = _contexts(plane, blk, gid, val, n, planes, fmt)  # (planes, n, GROUPS)
            levels = self._levels(plane, blk, gid, val, ctx, coded, fmt)
            rows = _rows(levels, ctx, fmt)  # (planes, n, GROUPS); LEVELS: a group not coded
            at = rows[plane, blk, gid] * LUT_SIZE  # where each nonzero's prices start
            zero = flat[at]
            cands = np.stack([val, val - np.sign(val), np.zeros_like(val)])  # the value, a step in, zero
            costs = w * (cv - cands * dq) ** 2 + flat[at + np.minimum(np.abs(cands), LUT_SIZE - 1).astype(np.int64)]
            pick = np.argmin(costs, axis=0)
            val = np.take_along_axis(cands, pick[None], axis=0)[0]
            bits = np.take_along_axis(costs, pick[None], axis=0)[0] - w * (cv - val * dq) ** 2
            base = (ext[rows, 0] * _GROUP_SIZE).sum((0, 2))  # each block's symbols if all were zero
            rate = base + np.bincount(blk, bits - zero, minlength=n)
            gain = np.bincount(blk, w * (cv ** 2 - (cv - val * dq) ** 2), minlength=n)
            flag = math.log2(1 / share) - math.log2(1 / (1 - share))
            coded = (gain > rate + flag) & (np.bincount(blk, val != 0, minlength=n) > 0)
            share = min(max(float(coded.mean()) * live.mean(), FLAG_SHARE_MIN), 1 - FLAG_SHARE_MIN)
        if not coded.any():
            return nothing
        q = np.zeros_like(q)
        q[nz] = val
        q = q[:, coded]
        levels = self._levels(plane, blk, gid, val, _contexts(plane, blk, gid, val, n, planes, fmt), coded, fmt)
        mask = np.zeros(live.shape, dtype=bool)
        mask[np.nonzero(live)[0][coded], np.nonzero(live)[1][coded]] = True
        # raster order of the coded blocks in ``mask`` equals their order among the live ones
        return mask, q.astype(np.int64), levels

    def _levels(self, plane: np.ndarray, blk: np.ndarray, gid: np.ndarray, val: np.ndarray, ctx: np.ndarray,
                coded: np.ndarray, fmt: int) -> np.ndarray:
        """The cheapest level (table row + 1) per plane and group for the ``coded`` blocks,
        their coefficients priced in their contexts ``ctx`` (:func:`_contexts`); 0 for a
        group of zeros. From the nonzero coefficients (plane, block, group, value) only:
        every other coefficient of a coded block is a zero."""
        keep = coded[blk] & (val != 0)
        k = ctx[plane[keep], blk[keep], gid[keep]]
        mag = np.minimum(np.abs(val[keep]), LUT_SIZE - 1).astype(np.int64)
        shifts = CONTEXTS[fmt][1]
        key = ((plane[keep] * GROUPS + gid[keep]) * len(shifts) + k) * LUT_SIZE + mag
        planes = ctx.shape[0]
        counts = np.bincount(key, minlength=planes * GROUPS * len(shifts) * LUT_SIZE)
        counts = counts.reshape(planes, GROUPS, len(shifts), LUT_SIZE).astype(np.float64)
        nonzero = counts[..., 1:].sum(-1)
        blocks = np.stack([(ctx[:, coded, :] == i).sum(1) for i in range(len(shifts))], -1)
        counts[..., 0] = np.maximum(blocks * _GROUP_SIZE[None, :, None] - nonzero, 0)
        costs = sum(counts[:, :, i, :] @ self.lut[np.clip(np.arange(LEVELS) + sh, 0, LEVELS - 1)].T
                    for i, sh in enumerate(shifts))  # (planes, GROUPS, LEVELS)
        return np.where(nonzero.sum(-1) > 0, np.argmin(costs, -1) + 1, 0)

    def _lut_ext(self) -> np.ndarray:
        """:attr:`lut` and a last row for groups at level 0: zeros free, nothing else."""
        ext = np.concatenate([self.lut, np.full((1, LUT_SIZE), 1e9)])
        ext[-1, 0] = 0.0
        return ext


def _estimated_costs(coef: np.ndarray, scale: float, d: float) -> np.ndarray:
    """(hb, wb) estimated ``lambda_r / 3 * SSE + bits`` of one plane's blocks of
    coefficients (hb, wb, 8, 8) at step ``d`` (module constants), or of not coding them."""
    flat = coef.reshape(-1, BLOCK * BLOCK)
    cost = scale * (flat ** 2).sum(1)
    live = cost > LIVE_BITS  # (the others are never coded)
    mag = np.abs(flat[live])
    q = np.maximum(np.floor(mag / d + (0.5 - DEADZONE)), 0)
    rate = np.where(q > 0, ESTIMATE_BITS + 2 * np.log2(np.maximum(q, 1)), 0).sum(1)
    cost[live] = np.minimum(cost[live], scale * ((mag - q * d) ** 2).sum(1) + rate)
    return cost.reshape(coef.shape[:2])


def _contexts(plane: np.ndarray, blk: np.ndarray, gid: np.ndarray, val: np.ndarray, n: int,
              planes: int, fmt: int) -> np.ndarray:
    """(planes, n, GROUPS) coefficient context class of every block and group, from its
    count of nonzero values in the plane's lower groups of the block
    (:func:`lvc.codec.residual.context_class`)."""
    nonzero = val != 0
    key = (plane[nonzero] * n + blk[nonzero]) * GROUPS + gid[nonzero]
    counts = np.bincount(key, minlength=planes * n * GROUPS).reshape(planes, n, GROUPS)
    before = np.cumsum(counts, axis=2) - counts
    return context_class(before, fmt)


def _rows(levels: np.ndarray, ctx: np.ndarray, fmt: int) -> np.ndarray:
    """(planes, n, GROUPS) table row of every block's groups (``LEVELS`` where the group is
    not coded: the last row of :meth:`ResidualEncoder._lut_ext`), as the decoder derives it."""
    lv = levels[:, None, :]
    rows = np.clip(lv - 1 + np.asarray(CONTEXTS[fmt][1])[ctx], 0, LEVELS - 1)
    return np.where(lv > 0, rows, LEVELS)
