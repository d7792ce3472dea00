"""The residual layer's intra macroblocks, encoder side (:mod:`lvc.codec.intra`).

After the layer's usual choices (every block coded against the base picture,
:class:`lvc.codec.residual_rdo.ResidualEncoder`), a macroblock is a candidate where the best
spatial predictions from that layer's sums (luma per 8x8 block, chroma per macroblock) leave
less SATD than the base picture does by more than a penalty in steps (the preset's,
:mod:`lvc.codec.presets`; ``INTRA_PENALTY`` at ``medium``): x264's fast intra/inter
analysis, which prices a residual by its Hadamard transform. Only macroblocks
the first choices code a block of are looked at. The candidates are then coded in raster
order against the predictions their final neighbours give, each coefficient and block by
``lambda_r * SSE + bits`` at the first choices' table rows, and a candidate stays intra only
where that costs less than the first choices' coding of it; the levels are refitted to the
result.
"""

from __future__ import annotations

import numpy as np

from lvc.codec import intra
from lvc.codec.residual import COEFF_LIMIT, GROUP_OF
from lvc.codec.transform import BLOCK, DCT, forward4, inverse_blocks, step_size

# SATD (in steps) an intra candidate must save (encoder only). Lower finds more candidates
# and codes each: on 6 native-resolution clips 4 is -0.42% bits against 8, for about 1.25x
# the intra macroblocks' time (docs/models.md, "Session 43"), so medium takes 8 and slow 4.
INTRA_PENALTY = 8.0
INTRA_PENALTY_SLOW = 4.0
DEADZONE = 0.1  # as lvc.codec.residual_rdo.DEADZONE
FLAG_BITS = 2.0  # about a coded-block flag
MODE_BITS = 12.0  # an intra macroblock's flag and five modes, about
_H = np.array([[1]])
for _ in range(3):
    _H = np.block([[_H, _H], [_H, -_H]])
_H = _H.astype(np.float32)  # 8x8 Hadamard (unnormalised)
_QY, _QX = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])  # a macroblock's luma blocks, in order


def satd(d: np.ndarray) -> np.ndarray:
    """Sum of absolute 8x8 Hadamard coefficients of ``d`` (..., 8, 8), over 8 (float32: a
    decision's estimate)."""
    return np.abs(_H @ d.astype(np.float32) @ _H).sum((-2, -1)) / BLOCK


def _padded(p: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.pad(p, ((0, h - p.shape[0]), (0, w - p.shape[1])), mode="edge").astype(np.int32)


def _block_view(p: np.ndarray) -> np.ndarray:
    """(rows, cols, 8, 8) view of a plane of whole blocks."""
    h, w = p.shape
    return p.reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK).transpose(0, 2, 1, 3)


def _neighbours(total: np.ndarray, by: np.ndarray, bx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows above and columns left (k, 8) of blocks (``by``, ``bx``) of a plane, read in
    ``total`` as it is (the decision's estimate of the final sums)."""
    h, w = total.shape
    p = np.full((h + 1, w + 1), intra.OUTSIDE, dtype=np.int32)
    p[1:, 1:] = total
    k = np.arange(BLOCK)
    top = p[(by * BLOCK)[:, None], (bx * BLOCK + 1)[:, None] + k]
    return top, p[(by * BLOCK + 1)[:, None] + k, (bx * BLOCK)[:, None]]


def candidates(source: tuple[np.ndarray, ...], base: tuple[np.ndarray, ...], total: tuple[np.ndarray, ...],
               coded: tuple[np.ndarray, ...], step: float,
               penalty: float = INTRA_PENALTY) -> tuple[np.ndarray, np.ndarray]:
    """The macroblocks worth coding intra, (mbh, mbw) bool, and their modes (intra count,
    5) (module docstring). ``source``: uint8 planes; ``base`` and ``total``: the base
    picture and the first choices' sums in quarter levels; ``coded``: the first choices'
    coded blocks (luma, chroma); ``step``: the luma step in pixels. Only macroblocks with
    a coded block whose copy leaves more SATD than the penalty are looked at (where the
    first choices code nothing, the copy is near enough at this rate)."""
    mb_shape = mbh, mbw = coded[1].shape
    luma = np.zeros((2 * mbh, 2 * mbw), dtype=bool)
    luma[:coded[0].shape[0], :coded[0].shape[1]] = coded[0]
    live = coded[1] | luma.reshape(mbh, 2, mbw, 2).any((1, 3))
    ys, xs = np.nonzero(live)
    by, bx = (2 * ys[:, None] + _QY).ravel(), (2 * xs[:, None] + _QX).ravel()  # their luma blocks
    src, inter, at = [], np.zeros(ys.size), [(by, bx), (ys, xs), (ys, xs)]
    for i, (y, x) in enumerate(at):
        s = intra.MB >> min(i, 1)
        blocks = _block_view(_padded(source[i], mbh * s, mbw * s) * 4)[y, x]
        cost = satd(blocks - _block_view(_padded(base[i], mbh * s, mbw * s))[y, x])
        inter += (cost.reshape(-1, intra.LUMA_MODES).sum(1) if i == 0 else cost) / 4  # (quarter levels)
        src.append(blocks)
    limit = penalty * step
    keep = inter > limit
    ys, xs, inter, src[1], src[2] = ys[keep], xs[keep], inter[keep], src[1][keep], src[2][keep]
    keep4 = np.repeat(keep, intra.LUMA_MODES)
    by, bx, src[0] = by[keep4], bx[keep4], src[0][keep4]
    modes = np.zeros((ys.size, intra.LUMA_MODES + 1), dtype=np.int64)
    top, left = _neighbours(_padded(total[0], mbh * intra.MB, mbw * intra.MB), by, bx)
    err = satd(src[0][:, None] - intra.predictions(top, left))  # (4 k, MODES)
    modes[:, :intra.LUMA_MODES] = err.argmin(-1).reshape(-1, intra.LUMA_MODES)
    cost = err.min(-1).reshape(-1, intra.LUMA_MODES).sum(1)
    err = sum(satd(src[c][:, None] - intra.predictions(*_neighbours(
        _padded(total[c], mbh * BLOCK, mbw * BLOCK), ys, xs))) for c in (1, 2))
    modes[:, intra.LUMA_MODES] = err.argmin(-1)
    chosen = inter - (cost + err.min(-1)) / 4 > limit
    mb = np.zeros(mb_shape, dtype=bool)
    mb[ys[chosen], xs[chosen]] = True
    return mb, modes[chosen]


class IntraCoder:
    """The closed loop of the module docstring for one layer: ``bits`` (LEVELS + 1, 258) the
    residual encoder's coefficient prices by row (the last row: a group not coded),
    ``scale`` its per-plane weights (luma, Cb, Cr), ``steps`` its step indices (luma, chroma),
    ``levels`` the first choices' (per component, (planes, GROUPS)); ``small_flag``: the
    bits a luma block coded as four 4x4 transforms is priced at more (None: 8x8 only)."""

    def __init__(self, bits: np.ndarray, scale: np.ndarray, steps: tuple[int, int],
                 levels: tuple[np.ndarray, ...], small_flag: float | None = None) -> None:
        self.bits, self.scale, self.steps, self.small_flag = bits, scale, steps, small_flag
        lv = [levels[0][0], levels[1][0], levels[1][1]]
        # each plane's row per coefficient: its group's row (a group the first choices left
        # empty priced at the steepest row; the levels are refitted afterwards)
        self.rows = [np.maximum(v, 1)[GROUP_OF] - 1 for v in lv]

    def values(self, plane: int, coef: np.ndarray) -> np.ndarray:
        """Each coefficient's magnitude (..., 8, 8): the dead-zone value, one step nearer zero
        or zero, by ``lambda_r * SSE + bits`` at its row."""
        d = step_size(self.steps[min(plane, 1)]) / 16
        w, mag = self.scale[plane], np.abs(coef)
        rows, lut, top = self.rows[plane], self.bits, self.bits.shape[1] - 1
        val = np.minimum(np.floor(mag / d + 0.5 - DEADZONE), COEFF_LIMIT)
        lower = np.maximum(val - 1, 0)
        cost = [w * (mag - v * d) ** 2 + lut[rows, np.minimum(v, top).astype(np.int64)] for v in (val, lower)]
        val = np.where(cost[1] < cost[0], lower, val)
        return np.where(w * mag ** 2 + lut[rows, 0] < np.minimum(cost[0], cost[1]), 0, val)

    def rate(self, plane: int, val: np.ndarray) -> np.ndarray:
        """Bits of blocks of values ``val`` (..., 8, 8), their coded-block flag included."""
        top = self.bits.shape[1] - 1
        return self.bits[self.rows[plane], np.minimum(np.abs(val), top).astype(np.int64)].sum((-2, -1)) + FLAG_BITS

    def quantise(self, plane: int, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Blocks' coefficients (..., 8, 8) quantised (:meth:`values`, signed, int64), whether
        coding each pays (its gain in ``lambda_r * SSE`` above its bits), and their bits."""
        d = step_size(self.steps[min(plane, 1)]) / 16
        mag, val = np.abs(coef), self.values(plane, coef)
        rate = self.rate(plane, val)
        gain = self.scale[plane] * (mag ** 2 - (mag - val * d) ** 2).sum((-2, -1))
        return (np.sign(coef) * val).astype(np.int64), val.any((-2, -1)) & (gain > rate), rate

    def _quantise(self, plane: int, coef: np.ndarray) -> np.ndarray | None:
        """One block's quantised coefficients (8, 8), or None where coding it does not pay."""
        q, coded, _ = self.quantise(plane, coef)
        return q if coded else None

    def code(self, planes: intra.IntraPlanes, source: tuple[np.ndarray, ...], mb: np.ndarray,
             modes: np.ndarray, grids: tuple[tuple[int, int], ...], inter: tuple[np.ndarray, ...],
             first: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray, dict, set]:
        """Code the candidate macroblocks ``mb`` with their ``modes`` in order into ``planes``
        (updated in place), each kept intra only where it costs less (``lambda_r * SSE +
        bits``) than the first choices' coding of it: ``inter``, their residual planes
        (whole blocks), and ``first``, their coefficients (per component, (planes, rows,
        columns, 8, 8)). Returns the intra macroblocks, their modes and each of their coded
        blocks' coefficients, keyed (plane, block row, block column), and the luma blocks
        (block row, block column) of them coded as 4x4 transforms; blocks past a component's
        ``grids`` are not coded."""
        src = [_padded(s, *p.shape) * 4 for s, p in zip(source, [q[1:, 1:] for q in planes.planes], strict=True)]
        coeffs: dict[tuple[int, int, int], np.ndarray] = {}
        small: set[tuple[int, int]] = set()
        kept = np.zeros(len(modes), dtype=bool)
        for i, (my, mx, m) in enumerate(zip(*np.nonzero(mb), modes, strict=True)):
            blocks = [(0, y, x, int(mode)) for (y, x), mode in zip(intra.luma_blocks(my, mx), m[:intra.LUMA_MODES],
                                                                    strict=True)]
            blocks += [(c, my * BLOCK, mx * BLOCK, int(m[intra.LUMA_MODES])) for c in (1, 2)]
            before = [planes.block(c, y, x).copy() for c, y, x, _ in blocks]
            other = sum(self._inter_cost(b, src, inter, first, c, y, x, grids[min(c, 1)])
                        for (c, y, x, _), b in zip(blocks, before, strict=True))
            mine: dict[tuple[int, int, int], np.ndarray] = {}
            mine_small: set[tuple[int, int]] = set()
            cost = MODE_BITS + sum(self._block(planes, src, c, y, x, mode, mine, grids[min(c, 1)], mine_small)
                                   for c, y, x, mode in blocks)
            if cost < other:
                kept[i] = True
                coeffs.update(mine)
                small |= mine_small
                continue
            for (c, y, x, _), b in zip(blocks, before, strict=True):  # the first choices' coding instead
                planes.block(c, y, x)[:] = b + inter[c][y:y + BLOCK, x:x + BLOCK]
        out = np.zeros_like(mb)
        ys, xs = np.nonzero(mb)
        out[ys[kept], xs[kept]] = True
        return out, modes[kept], coeffs, small

    def _inter_cost(self, base: np.ndarray, src: list[np.ndarray], inter: tuple[np.ndarray, ...],
                    first: tuple[np.ndarray, ...], c: int, y: int, x: int, grid: tuple[int, int]) -> float:
        """``lambda_r * SSE + bits`` of plane ``c``'s block at (y, x), whose ``base`` it is,
        as the first choices coded it."""
        rec = base + inter[c][y:y + BLOCK, x:x + BLOCK]
        cost = self.scale[c] * float((((src[c][y:y + BLOCK, x:x + BLOCK] - rec) / 4) ** 2).sum())
        if y // BLOCK < grid[0] and x // BLOCK < grid[1]:
            q = first[min(c, 1)][max(c - 1, 0), y // BLOCK, x // BLOCK]
            if q.any():
                cost += self.bits[self.rows[c], np.minimum(np.abs(q), self.bits.shape[1] - 1)].sum() + FLAG_BITS
        return cost

    def _block(self, planes: intra.IntraPlanes, src: list[np.ndarray], c: int, y: int, x: int, mode: int,
               coeffs: dict, grid: tuple[int, int], small: set) -> float:
        """Code one block of plane ``c`` at sample (y, x) against its prediction in
        ``mode`` (its coefficients into ``coeffs``; a luma block coded as 4x4 transforms
        into ``small``); its ``lambda_r * SSE + bits``."""
        pred = intra.predict(*planes.neighbours(c, y, x), mode)
        rec = pred
        target = src[c][y:y + BLOCK, x:x + BLOCK]
        cost = self.scale[c] * float((((target - rec) / 4) ** 2).sum())
        if y // BLOCK < grid[0] and x // BLOCK < grid[1]:
            error = (target - pred) / 4
            sizes = [False] + ([True] if c == 0 and self.small_flag is not None else [])
            for four in sizes:  # an 8x8 block whenever it pays its bits, 4x4 where cheaper still
                q = self._quantise(c, forward4(error) if four else DCT @ error @ DCT.T)
                if q is None:
                    continue
                r = pred + inverse_blocks(q[None], self.steps[min(c, 1)], np.array([four]))[0]
                b = self.bits[self.rows[c], np.minimum(np.abs(q), self.bits.shape[1] - 1)].sum() + FLAG_BITS
                b += self.small_flag if four else 0.0
                this = self.scale[c] * float((((target - r) / 4) ** 2).sum()) + b
                if not four or this < cost:
                    cost, rec = this, r
                    coeffs[c, y // BLOCK, x // BLOCK] = q
                    if four:
                        small.add((y // BLOCK, x // BLOCK))
        planes.block(c, y, x)[:] = rec
        return cost
