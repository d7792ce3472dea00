"""Block motion: estimation (the encoder's choice) and warping of a feature map (both sides).

Motion is one vector per ``block x block`` pixel block, in ``1/frac`` pixels (whole pixels,
or quarter pixels for models with ``subpel`` 4). It moves a feature map held at ``1/scale``
of the frame resolution, so a vector is a displacement of ``mv / (scale * frac)`` feature
pixels: an integer part and a fraction, sampled bilinearly with weights in
``1/(scale * frac)**2`` units. For integer (fixed-point) features the weighted sum is
floored (contexts) or rounded (8-bit pictures) exactly, so the warp is identical on every
machine; float features (training) take the same weights without the rounding.

Estimation matches luma blocks of the current frame against the previous frame with a
coarse-to-fine search (half resolution over the whole range, then a small full-resolution
refinement, then halving sub-pixel steps on the bilinearly interpolated reference), which
costs a few milliseconds per 416x240 frame instead of a full search; the ``fast`` preset
starts one level coarser still.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from lvc.codec.phases import PhasePlanes, phase_planes  # noqa: F401 (phase_planes: re-exported)
from lvc.codec.sharp import sharp_phase_planes
from lvc.codec.vector_rate import _cheapest, _first_row, _pick_rows

SEARCH = 16  # search range in pixels, the encoder's and the training cache's
LENGTH_COST = 0.05  # mean-abs-difference (0..255 luma) per pixel of vector length
# Block SAD (0..255 luma) one bit of motion is worth at the lowest quality; the codec scales
# it by sqrt(lambda_min / lambda), as rate-constrained search does with the quantiser step.
# Chosen on two training clips (co-tracker bear, sam2 bedroom: -2% to -4% of the bits at
# q=0 with the step-14,000 conditional model, docs/models.md), not on benchmark clips.
RATE_WEIGHT = 64.0
# Bumped whenever the search may choose other vectors (benchmark caches key on it): 2, rows
# fetched as windows, sub-pixel values from phase planes; 3, luma straight from 8-bit frames
# (both float rounding only); 4, phase planes by linear interpolation (torch.lerp's rounding);
# 5, the rate-constrained search also around the second-best half-resolution vector; 6,
# sub-pixel steps by SATD (SUBPEL_SATD); 7, a second field for sharp copies (``sharp_too``).
SEARCH_VERSION = 7
# The sub-pixel refinement compares candidates by the sum of absolute 4x4 Hadamard
# coefficients (SATD, halved, as x264's) instead of absolute differences: closer to what the
# residual's transform coding pays. -1.1% on 8 training clips (docs/models.md, "Session 40").
SUBPEL_SATD = True
# The rate-constrained search also weighs the neighbours of each block's second-best
# half-resolution vector (18 full-resolution candidates instead of 9): -0.20% BD-rate on 8
# training clips for about 1.3 ms more per 416x240 frame, on the encoder's lookahead thread
# (docs/models.md, "Session 33").
RUNNER_UP = True
GATHER_PIXELS = 1 << 22  # pixels fetched per batch of candidates: bounds memory on large frames


LUMA = (0.299, 0.587, 0.114)


def _luma(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) float luma (any scale); luma (B, 1, H, W) as it is."""
    if x.shape[1] == 1:
        return x.float()
    w = torch.tensor(LUMA, dtype=torch.float32).view(1, 3, 1, 1)
    return (x.float() * w).sum(1, keepdim=True)


def frame_luma(frame: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 1, H, W) float luma on the 0..255 scale, the search's input:
    one float copy of the frame instead of the several of the float RGB path (any strides)."""
    x = torch.from_numpy(np.require(frame, np.uint8, ["C", "W"])).float()  # copied if read-only or strided
    return (x @ torch.tensor(LUMA, dtype=torch.float32)).view(1, 1, *frame.shape[:2])


def _block_sad(ref: torch.Tensor, cur: torch.Tensor, block: int, cands: torch.Tensor,
               base: torch.Tensor | None = None) -> torch.Tensor:
    """SAD of every block of ``cur`` against ``ref`` moved by each candidate (plus ``base``,
    a per-block starting vector): (B, K, hb, wb)."""
    b, _, h, w = cur.shape
    hb, wb = -(-h // block), -(-w // block)
    r = int(cands.abs().max()) + (int(base.abs().max()) if base is not None else 0)
    pad = F.pad(ref, (r, r + wb * block - w, r, r + hb * block - h), mode="replicate")
    curp = _replicate(cur, (0, wb * block - w, 0, hb * block - h))
    if base is None:
        return _shifted_sad(pad, curp, block, cands, r)
    # per-block start: as many candidates' blocks fetched at once as GATHER_PIXELS allows
    step = max(1, GATHER_PIXELS // (b * hb * wb * block * block))
    rows = torch.arange(hb).view(1, 1, hb, 1) * block + r
    cols = torch.arange(wb).view(1, 1, 1, wb) * block + r
    cur_blocks = _blocks(curp, block)
    out = []
    for k in range(0, len(cands), step):
        v = base[:, None] + cands[k:k + step].view(1, -1, 1, 1, 2)  # (B, K, hb, wb, 2)
        out.append(_mean_abs(_fetch(pad, 0, rows + v[..., 1], cols + v[..., 0], block), cur_blocks))
    return torch.cat(out, 1)


def _replicate(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """``x`` edge-padded by ``pads`` (left, right, top, bottom); ``x`` itself when they are 0."""
    return F.pad(x, pads, mode="replicate") if any(pads) else x


def _blocks(x: torch.Tensor, block: int) -> torch.Tensor:
    """(B, 1, hb * block, wb * block) -> (B, 1, hb, wb, block, block), contiguous."""
    b, c, h, w = x.shape
    return x.view(b, c, h // block, block, w // block, block).transpose(3, 4).contiguous()


def _fetch(planes: torch.Tensor, plane: torch.Tensor | int, y: torch.Tensor, x: torch.Tensor,
           block: int) -> torch.Tensor:
    """The ``block x block`` pixels of ``planes`` (B, P, H, W) whose top-left is (``y``, ``x``)
    in plane ``plane``, for every entry of those (B, K, hb, wb) tensors: (B, K, hb, wb, block,
    block). One index per block row (a window of the flattened planes), not one per pixel:
    several times faster than a pixel gather. Callers keep every block inside its plane
    (``0 <= y <= H - block``, ``0 <= x <= W - block``: padding covers the search range);
    nothing checks it, a row outside would read the next row or plane."""
    b, p, h, w = planes.shape
    top = (torch.arange(b).view(-1, 1, 1, 1) * p + plane) * (h * w) + y * w + x
    rows = (top[..., None] + torch.arange(block) * w).reshape(-1)
    return planes.reshape(-1).unfold(0, block, 1).index_select(0, rows).view(*top.shape, block, block)


def _mean_abs(moved: torch.Tensor, cur_blocks: torch.Tensor) -> torch.Tensor:
    """Mean absolute differences (B, K, hb, wb) of fetched blocks against the frame's."""
    d = moved - cur_blocks
    return d.abs_().sum((-2, -1)) / (d.shape[-1] * d.shape[-2])


def _hadamard4(x: torch.Tensor, dim: int) -> torch.Tensor:
    """4-point Hadamard transform along ``dim`` (size 4) by butterflies (in a permuted order,
    which sums of magnitudes do not see): far cheaper than batched 4x4 products."""
    a0, a1, a2, a3 = x.unbind(dim)
    s01, d01, s23, d23 = a0 + a1, a0 - a1, a2 + a3, a2 - a3
    out = torch.empty_like(x)  # written through views: half the time of stacking new tensors
    o0, o1, o2, o3 = out.unbind(dim)
    torch.add(s01, s23, out=o0)
    torch.sub(s01, s23, out=o1)
    torch.add(d01, d23, out=o2)
    torch.sub(d01, d23, out=o3)
    return out


def _mean_satd(moved: torch.Tensor, cur_blocks: torch.Tensor) -> torch.Tensor:
    """:func:`_mean_abs` of the differences' 4x4 Hadamard transforms, halved (x264's SATD
    scale: half the absolute differences on a constant error, about twice on noise)."""
    d = moved - cur_blocks
    *lead, bh, bw = d.shape
    t = d.reshape(*lead, bh // 4, 4, bw // 4, 4)
    t = _hadamard4(_hadamard4(t, -3), -1)
    return t.abs_().sum((-4, -3, -2, -1)) / (2 * bh * bw)


def _shifted_sad(pad: torch.Tensor, curp: torch.Tensor, block: int, cands: torch.Tensor, r: int) -> torch.Tensor:
    """Block SADs of whole-frame shifts, batched per candidate row (one vertical offset, all
    its horizontal ones at once): a few large operations instead of one small one per
    candidate, with the same values (to float rounding). Laid out (B, h, K, w) so that every
    step runs over contiguous memory."""
    b, _, h, w = curp.shape
    hb, wb = h // block, w // block
    out = torch.empty(b, len(cands), hb, wb)
    cur = curp[:, 0, :, None, :]  # (B, h, 1, w)
    for dy in cands[:, 1].unique().tolist():
        idx = (cands[:, 1] == dy).nonzero()[:, 0]
        rows = pad[:, 0, r + dy:r + dy + h].unfold(2, w, 1)  # (B, h, 2r+1+extra, w) windows
        dx = (cands[idx, 0] + r).tolist()
        if dx == list(range(dx[0], dx[0] + len(dx))):  # a run (a square's row): no copy of the windows first
            d = torch.sub(rows[:, :, dx[0]:dx[0] + len(dx)], cur, out=torch.empty(b, h, len(dx), w))
        else:
            d = rows.index_select(2, cands[idx, 0] + r)  # (B, h, K, w), a copy
            d -= cur
        sad = d.abs_().view(b, hb, block, -1).sum(2).view(b, hb, len(idx), wb, block).sum(-1)  # (B, hb, K, wb)
        out[:, idx] = sad.transpose(1, 2) / (block * block)
    return out


def _square(radius: int) -> torch.Tensor:
    r = torch.arange(-radius, radius + 1)
    return torch.stack(torch.meshgrid(r, r, indexing="xy"), -1).reshape(-1, 2)


def _rate_constrained(lr: torch.Tensor, lc: torch.Tensor, block: int, cands: torch.Tensor, sad: torch.Tensor,
                      rate_weight: float, search: int, pad: torch.Tensor) -> torch.Tensor:
    """Re-decide each block among its full-resolution candidates ``cands`` (B, K, hb, wb, 2)
    (mean abs differences ``sad``), the zero vector and its predictor, by block SAD plus
    ``rate_weight`` times the bits of the residual the codec sends (``lvc.codec.inter``:
    row 0 against the left block, later rows against the block above). Rows after the first
    are decided in parallel, so this stays a few vectorised steps per frame. ``pad``: ``lr``
    edge-padded by ``search + 1``."""
    b, _, hb, wb, _ = cands.shape
    zero = torch.zeros(b, hb, wb, 2, dtype=torch.long)
    cands = torch.cat([cands, zero[:, None]], 1).numpy()
    sad = (torch.cat([sad, _block_sad(lr, lc, block, torch.zeros(1, 2, dtype=torch.long))], 1)
           * block * block).numpy()
    r = search + 1
    cur_blocks = _blocks(lc, block)
    cols = torch.arange(wb) * block + r
    out = np.zeros((b, hb, wb, 2), np.int64)

    # Row 0 is sequential (each block predicted from its left neighbour), so it runs on
    # plain numbers. The predictor is always one of the row's candidates: the block SADs
    # of all of them are computed beforehand, in one batched pass.
    row0 = cands[:, :, 0]  # (B, K, wb, 2)
    vecs = np.unique(row0.reshape(-1, 2), axis=0)
    table = (_shifted_sad(pad, lc[..., :block, :], block, torch.from_numpy(vecs), r)[:, :, 0]
             * block * block).numpy()
    index = {tuple(v): i for i, v in enumerate(vecs.tolist())}
    for i in range(b):
        out[i, 0] = _first_row(row0[i], sad[i, :, 0], rate_weight, lambda pred, col, t=table[i]: t[index[pred], col])
    for row in range(1, hb):  # later rows: from the row above, all blocks of a row at once
        pred = out[:, row - 1]  # (B, wb, 2)
        pt = torch.from_numpy(pred)[:, None, None]  # (B, 1, 1, wb, 2)
        moved = _fetch(pad, 0, row * block + r + pt[..., 1], cols + pt[..., 0], block)
        own_pred = (_mean_abs(moved, cur_blocks[:, :, row:row + 1]) * block * block)[:, :, 0].numpy()
        c = np.concatenate([cands[:, :, row], pred[:, None]], 1)
        s = np.concatenate([sad[:, :, row], own_pred], 1)
        out[:, row] = _cheapest(c, s, pred, rate_weight)
    return torch.from_numpy(out)


def _quarter_search(half: tuple[torch.Tensor, torch.Tensor], block: int, search: int, length_cost: float,
                    keep: int) -> torch.Tensor:
    """Whole-pixel vectors (B, hb, wb, 2) from a search over the range at quarter
    resolution whose ``keep`` best candidates per block are refined by one pixel at half
    resolution: about a twelfth of the half-resolution search's block differences."""
    quarter = F.avg_pool2d(half[0], 2), F.avg_pool2d(half[1], 2)
    coarse, fine = _square(search // 4), _square(1)
    sad = _block_sad(*quarter, block // 4, coarse)
    sad = sad + length_cost * 4 * coarse.abs().sum(1).view(1, -1, 1, 1)
    top = coarse[sad.topk(keep, 1, largest=False).indices] * 2  # (B, keep, hb, wb, 2), half-res pixels
    cands = (top[:, :, None] + fine.view(1, 1, -1, 1, 1, 2)).flatten(1, 2)
    sad = torch.cat([_block_sad(*half, block // 2, fine, base=top[:, k]) for k in range(keep)], 1)
    sad = (sad + length_cost * 2 * cands.abs().sum(-1)).masked_fill((cands.abs() > search // 2).any(-1), math.inf)
    return cands.gather(1, sad.argmin(1)[:, None, ..., None].expand(-1, 1, *cands.shape[2:])).squeeze(1) * 2


def estimate_motion(ref: torch.Tensor, cur: torch.Tensor, block: int = 16, search: int = SEARCH,
                    length_cost: float = LENGTH_COST, rate_weight: float = 0.0, keep: int = 0,
                    frac: int = 1, runner_up: bool = RUNNER_UP, sharp_too: bool = False,
                    phases: PhasePlanes | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Vectors (B, hb, wb, 2) as (dx, dy) in ``1/frac`` pixels: ``cur`` block ~ ``ref`` at
    block + mv.

    ``ref`` and ``cur`` are (B, 3, H, W) frames on the 0..255 scale, or their luma (B, 1, H, W)
    (:func:`frame_luma`); neither is modified. Each pixel of vector length adds
    ``length_cost`` to a block's mean absolute difference, so near-ties
    go to the shorter vector (cheaper to code; flat areas do not pick up noise motion).
    ``rate_weight`` > 0 then re-decides each block against the vector the codec predicts it
    from (block SAD + ``rate_weight`` x residual bits): smoother fields, fewer motion bits.
    ``keep`` > 0 starts from a quarter-resolution search instead of the half-resolution one
    (:func:`_quarter_search`: the ``fast`` preset's; with ``keep=3`` 0.35% more bits on 8 training
    clips, and since the whole-range search got faster only about 10% less time; docs/models.md).
    ``frac`` > 1 refines the whole-pixel vectors to ``1/frac`` pixel (:func:`_subpel_refine`).
    ``runner_up`` (with ``rate_weight`` and the half-resolution start): see ``RUNNER_UP``.
    ``sharp_too`` (quarter pixels) also refines the whole-pixel vectors on the 8-tap phase
    planes (:mod:`lvc.codec.sharp`) and returns both fields, the bilinear copy's and the sharp one's.
    ``phases``: the (padded) reference luma's phase planes, to share with later steps
    (:mod:`lvc.codec.phases`; ``ref`` a luma already in whole blocks).
    """
    if block % 2:
        raise ValueError("block size must be even")
    h, w = cur.shape[-2:]
    pad = (0, -w % block, 0, -h % block)  # whole blocks at both search levels
    lr, lc = _replicate(_luma(ref), pad), _replicate(_luma(cur), pad)
    half = F.avg_pool2d(lr, 2), F.avg_pool2d(lc, 2)
    if keep:
        mv = _quarter_search(half, block, search, length_cost, keep)
    else:
        coarse = _square(search // 2)
        sad = _block_sad(*half, block // 2, coarse)
        sad = sad + length_cost * 2 * coarse.abs().sum(1).view(1, -1, 1, 1)
        best = sad.argmin(1)
        mv = coarse[best] * 2  # (B, hb, wb, 2)
    fine = _square(1)
    if rate_weight > 0:
        starts = [mv]
        if runner_up and not keep:  # the second-best half-resolution vector's neighbours too
            starts.append(coarse[sad.scatter(1, best[:, None], math.inf).argmin(1)] * 2)
        cands = torch.cat([m[:, None] + fine.view(1, -1, 1, 1, 2) for m in starts], 1)
        sad = torch.cat([_block_sad(lr, lc, block, fine, base=m) for m in starts], 1)
        outside = (cands.abs() > search).any(-1)  # beyond the range: never chosen
        sad = sad.masked_fill(outside, float("inf"))
        mv = _rate_constrained(lr, lc, block, cands.clamp(-search, search), sad, rate_weight, search,
                               _replicate(lr, (search + 1,) * 4))
    else:
        sad = _block_sad(lr, lc, block, fine, base=mv)
        sad = sad + length_cost * (mv[:, None] + fine.view(1, -1, 1, 1, 2)).abs().sum(-1)
        mv = (mv + fine[sad.argmin(1)]).clamp(-search, search)
    if frac == 1:
        return mv
    if phases is not None and phases.luma.shape != lr.shape:
        raise ValueError("the phase planes are not the reference's")
    out = _subpel_refine(phases or PhasePlanes(lr, frac), lc, block, mv * frac, frac, search, length_cost,
                         rate_weight)
    if sharp_too:
        return out, _subpel_refine(PhasePlanes(lr, frac, planes_of=sharp_phase_planes), lc, block, mv * frac, frac,
                                   search, length_cost, rate_weight)
    return out


def _subpel_refine(phases: PhasePlanes, lc: torch.Tensor, block: int, mv: torch.Tensor, frac: int, search: int,
                   length_cost: float, rate_weight: float, first_step: int = 0) -> torch.Tensor:
    """Whole-pixel vectors ``mv`` (in ``1/frac`` units) refined by halving steps (1/2, then
    1/4, ... pixel): the 9 vectors around the current one by block SATD (``SUBPEL_SATD``) on
    the bilinearly interpolated reference, plus the length cost, or with ``rate_weight`` the bits of the
    residual the codec sends (decided row by row, as :func:`_rate_constrained`). ``phases``:
    the reference's phase planes (bilinear, or another interpolation's); ``first_step``: the
    first step's length (default half a pixel)."""
    planes, r = phases.padded(search + 1)
    b, hb, wb = mv.shape[:3]
    rows = torch.arange(hb).view(1, 1, hb, 1) * block + r
    cols = torch.arange(wb).view(1, 1, 1, wb) * block + r
    cur_blocks = _blocks(lc, block)
    limit = search * frac
    step = first_step or frac // 2
    while step >= 1:
        cands = (mv[:, None] + step * _square(1).view(1, -1, 1, 1, 2))  # (B, 9, hb, wb, 2)
        v = cands.clamp(-limit, limit)
        whole, phase = torch.div(v, frac, rounding_mode="floor"), torch.remainder(v, frac)
        moved = _fetch(planes, phase[..., 1] * frac + phase[..., 0], rows + whole[..., 1], cols + whole[..., 0],
                       block)
        sad = (_mean_satd if SUBPEL_SATD else _mean_abs)(moved, cur_blocks)
        sad = sad.masked_fill((cands.abs() > limit).any(-1), math.inf)
        if rate_weight > 0:
            mv = _pick_rows(cands, sad * block * block, rate_weight)
        else:
            sad = sad + length_cost * cands.abs().sum(-1) / frac
            mv = cands.gather(1, sad.argmin(1)[:, None, ..., None].expand(-1, 1, *cands.shape[2:])).squeeze(1)
        step //= 2
    return mv


def warp(feat: torch.Tensor, mv: torch.Tensor, block: int, scale: int, frac: int = 1,
         rounded: bool = False) -> torch.Tensor:
    """``feat`` (B, C, h, w) at ``1/scale`` resolution moved by per-block vectors ``mv`` in
    ``1/frac`` pixels.

    Bilinear with weights in ``1/(scale * frac)**2`` units and edge replication; integer
    ``feat`` gives the exactly floored result (the codec's context path), or with ``rounded``
    the nearest integer, halves up (the codec's 8-bit pictures); float ``feat`` the same
    weights.
    """
    b, c, h, w = feat.shape
    per = block // scale  # feature pixels per block
    den = scale * frac  # vector units per feature pixel
    d = mv.permute(0, 3, 1, 2).repeat_interleave(per, 2).repeat_interleave(per, 3)[..., :h, :w]
    if d.shape[-2] < h or d.shape[-1] < w:
        d = F.pad(d.float(), (0, w - d.shape[-1], 0, h - d.shape[-2]), mode="replicate").long()
    d = d.long()
    ix, fx = torch.div(d[:, 0], den, rounding_mode="floor"), torch.remainder(d[:, 0], den)
    iy, fy = torch.div(d[:, 1], den, rounding_mode="floor"), torch.remainder(d[:, 1], den)
    x0 = torch.arange(w).view(1, 1, w) + ix
    y0 = torch.arange(h).view(1, h, 1) + iy
    flat = feat.flatten(2)

    def tap(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
        idx = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).flatten(1)[:, None].expand(b, c, -1)
        return flat.gather(2, idx).view(b, c, h, w)

    wx1, wy1 = fx[:, None], fy[:, None]
    wx0, wy0 = den - wx1, den - wy1
    acc = (tap(y0, x0) * (wx0 * wy0) + tap(y0, x0 + 1) * (wx1 * wy0)
           + tap(y0 + 1, x0) * (wx0 * wy1) + tap(y0 + 1, x0 + 1) * (wx1 * wy1))
    if feat.dtype.is_floating_point:
        return acc / (den * den)
    return torch.div(acc + (den * den // 2 if rounded else 0), den * den, rounding_mode="floor")
