"""Every macroblock of a layer coded intra, in batches along anti-diagonals (an IL frame's
layer, :mod:`lvc.codec.layer_intra`).

A block's prediction reads only the row above it and the column left of it
(:func:`lvc.codec.intra.predict`), so the blocks of one anti-diagonal (block row + block
column constant) depend only on those before it: coding them a diagonal at a time gives the
decoder's raster-order pictures exactly, in about 130 batches (87 luma and 43 chroma
diagonals at 448x256) instead of 2,700 blocks one by one. Each block's mode is the one of
least SATD against its final neighbours (luma per 8x8 block, chroma one mode for both planes
of a macroblock); its coefficients are chosen by :meth:`lvc.codec.intra_rdo.IntraCoder.quantise`,
as that coder's own blocks are.
"""

from __future__ import annotations

import numpy as np

from lvc.codec import intra
from lvc.codec.intra_rdo import IntraCoder, satd
from lvc.codec.transform import BLOCK, DCT, forward4, inverse_blocks


def _views(planes: intra.IntraPlanes, plane: int) -> tuple[np.ndarray, np.ndarray]:
    """The padded plane, and its samples as (block rows, 8, block columns, 8) (a view)."""
    p = planes.planes[plane]
    h, w = p.shape[0] - 1, p.shape[1] - 1
    return p, p[1:, 1:].reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK)


def _neighbours(p: np.ndarray, by: np.ndarray, bx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows above and columns left (n, 8) of blocks (``by``, ``bx``) of padded plane ``p``."""
    k = np.arange(BLOCK)
    top = p[(by * BLOCK)[:, None], (bx * BLOCK + 1)[:, None] + k]
    return top, p[(by * BLOCK + 1)[:, None] + k, (bx * BLOCK)[:, None]]


def _code_blocks(coder: IntraCoder, plane: int, pred: np.ndarray, target: np.ndarray, live: np.ndarray,
                 small: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Blocks (n, 8, 8) predicted as ``pred`` for ``target`` (quarter levels): their
    pictures, coefficients, whether coded and whether as four 4x4 transforms (``small``:
    may be); ``live``: the blocks inside the layer's grid (others are not coded)."""
    error = (target - pred) / 4
    w, step = coder.scale[plane], coder.steps[min(plane, 1)]
    rec = pred.copy()
    cost = w * ((error ** 2).sum((-2, -1)))
    q = np.zeros(pred.shape, dtype=np.int64)
    coded = np.zeros(len(pred), dtype=bool)
    four = np.zeros(len(pred), dtype=bool)
    for size in (False, True) if small else (False,):  # 8x8 whenever it pays, 4x4 where cheaper still
        v, ok, rate = coder.quantise(plane, forward4(error) if size else DCT @ error @ DCT.T)
        ok &= live
        if not ok.any():
            continue
        r = pred[ok] + inverse_blocks(v[ok], step, np.full(int(ok.sum()), size))
        this = w * (((target[ok] - r) / 4) ** 2).sum((-2, -1)) + rate[ok] + (coder.small_flag if size else 0.0)
        take = np.flatnonzero(ok)[this < cost[ok]] if size else np.flatnonzero(ok)
        better = this < cost[ok] if size else np.ones(len(this), dtype=bool)
        rec[take], q[take], cost[take] = r[better], v[take], this[better]
        coded[take], four[take] = True, size
    return rec, q, coded, four


def code_everywhere(coder: IntraCoder, planes: intra.IntraPlanes, source: tuple[np.ndarray, ...],
                    grids: tuple[tuple[int, int], ...]) -> tuple[np.ndarray, np.ndarray, dict, set]:
    """Code every macroblock of ``planes`` (updated in place) intra, as
    :meth:`IntraCoder.code` returns its result: the intra macroblocks (all), their modes,
    the coded blocks' coefficients keyed (plane, block row, block column) and the luma
    blocks coded as 4x4 transforms."""
    mbh, mbw = planes.planes[1].shape[0] // BLOCK, planes.planes[1].shape[1] // BLOCK
    modes = np.zeros((mbh, mbw, intra.LUMA_MODES + 1), dtype=np.int64)
    coeffs: dict[tuple[int, int, int], np.ndarray] = {}
    small: set[tuple[int, int]] = set()
    src = []
    for i, s in enumerate(source):
        h, w = planes.planes[i].shape[0] - 1, planes.planes[i].shape[1] - 1
        src.append(np.pad(s, ((0, h - s.shape[0]), (0, w - s.shape[1])), mode="edge").astype(np.int64)
                   .reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK) * 4)
    # luma: 8x8 blocks along their diagonals
    p, view = _views(planes, 0)
    hb, wb = 2 * mbh, 2 * mbw
    for diag in range(hb + wb - 1):
        by = np.arange(max(0, diag - wb + 1), min(hb, diag + 1))
        bx = diag - by
        preds = intra.predictions(*_neighbours(p, by, bx))  # (n, MODES, 8, 8)
        target = src[0][by, :, bx, :]
        mode = satd(target[:, None] - preds).argmin(-1)
        pred = preds[np.arange(len(by)), mode]
        live = (by < grids[0][0]) & (bx < grids[0][1])
        rec, q, coded, four = _code_blocks(coder, 0, pred, target, live, coder.small_flag is not None)
        view[by, :, bx, :] = rec
        modes[by // 2, bx // 2, 2 * (by % 2) + bx % 2] = mode
        for i in np.flatnonzero(coded):
            coeffs[0, int(by[i]), int(bx[i])] = q[i]
            if four[i]:
                small.add((int(by[i]), int(bx[i])))
    # chroma: one mode for both planes of a macroblock
    (pb, vb), (pr, vr) = _views(planes, 1), _views(planes, 2)
    for diag in range(mbh + mbw - 1):
        my = np.arange(max(0, diag - mbw + 1), min(mbh, diag + 1))
        mx = diag - my
        preds = [intra.predictions(*_neighbours(pp, my, mx)) for pp in (pb, pr)]
        targets = [src[c][my, :, mx, :] for c in (1, 2)]
        mode = sum(satd(t[:, None] - pr_) for t, pr_ in zip(targets, preds, strict=True)).argmin(-1)
        modes[my, mx, intra.LUMA_MODES] = mode
        live = (my < grids[1][0]) & (mx < grids[1][1])
        for c, v in ((1, vb), (2, vr)):
            pred = preds[c - 1][np.arange(len(my)), mode]
            rec, q, coded, _ = _code_blocks(coder, c, pred, targets[c - 1], live, False)
            v[my, :, mx, :] = rec
            for i in np.flatnonzero(coded):
                coeffs[c, int(my[i]), int(mx[i])] = q[i]
    return np.ones((mbh, mbw), dtype=bool), modes.reshape(-1, intra.LUMA_MODES + 1), coeffs, small
