"""Block motion: estimation (the encoder's choice) and warping of a feature map (both sides).

Motion is one integer-pixel vector per ``block x block`` pixel block. It moves a feature map
held at ``1/scale`` of the frame resolution, so a vector is a displacement of
``mv / scale`` feature pixels: an integer part and a fraction in ``1/scale`` steps, sampled
bilinearly with weights in ``1/scale**2`` units. For integer (fixed-point) features the
weighted sum is floored exactly, so the warp is identical on every machine; float features
(training) take the same weights without the floor.

Estimation matches luma blocks of the current frame against the previous frame with a
coarse-to-fine search (half resolution over the whole range, then a small full-resolution
refinement), which costs a few milliseconds per 416x240 frame instead of a full search.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

SEARCH = 16  # search range in pixels, the encoder's and the training cache's
LENGTH_COST = 0.05  # mean-abs-difference (0..255 luma) per pixel of vector length


def _luma(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) float luma (any scale)."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32).view(1, 3, 1, 1)
    return (x.float() * w).sum(1, keepdim=True)


def _block_sad(ref: torch.Tensor, cur: torch.Tensor, block: int, cands: torch.Tensor,
               base: torch.Tensor | None = None) -> torch.Tensor:
    """SAD of every block of ``cur`` against ``ref`` moved by each candidate (plus ``base``,
    a per-block starting vector): (B, K, hb, wb)."""
    b, _, h, w = cur.shape
    hb, wb = -(-h // block), -(-w // block)
    r = int(cands.abs().max()) + (int(base.abs().max()) if base is not None else 0)
    pad = F.pad(ref, (r, r + wb * block - w, r, r + hb * block - h), mode="replicate")
    curp = F.pad(cur, (0, wb * block - w, 0, hb * block - h), mode="replicate")
    out = []
    for dx, dy in cands.tolist():
        if base is None:
            moved = pad[..., r + dy:r + dy + hb * block, r + dx:r + dx + wb * block]
        else:  # per-block start: gather each block's own window
            moved = _gather_blocks(pad, base + torch.tensor([dx, dy]), block, r, hb, wb)
        out.append(F.avg_pool2d((moved - curp).abs(), block))
    return torch.cat(out, 1)


def _gather_blocks(pad: torch.Tensor, mv: torch.Tensor, block: int, r: int, hb: int, wb: int) -> torch.Tensor:
    """The padded reference moved per block by ``mv`` (B, hb, wb, 2)."""
    b = pad.shape[0]
    ys = torch.arange(hb * block).view(1, -1, 1)
    xs = torch.arange(wb * block).view(1, 1, -1)
    dy = mv[..., 1].repeat_interleave(block, 1).repeat_interleave(block, 2)
    dx = mv[..., 0].repeat_interleave(block, 1).repeat_interleave(block, 2)
    idx = (ys + r + dy) * pad.shape[-1] + (xs + r + dx)
    return pad.flatten(1).gather(1, idx.flatten(1).long()).view(b, 1, hb * block, wb * block)


def _square(radius: int) -> torch.Tensor:
    r = torch.arange(-radius, radius + 1)
    return torch.stack(torch.meshgrid(r, r, indexing="xy"), -1).reshape(-1, 2)


def estimate_motion(ref: torch.Tensor, cur: torch.Tensor, block: int = 16, search: int = SEARCH,
                    length_cost: float = LENGTH_COST) -> torch.Tensor:
    """Integer-pixel vectors (B, hb, wb, 2) as (dx, dy): ``cur`` block ~ ``ref`` at block + mv.

    ``ref`` and ``cur`` are (B, 3, H, W) frames on the 0..255 scale. Each pixel of
    vector length adds ``length_cost`` to a block's mean absolute difference, so near-ties
    go to the shorter vector (cheaper to code; flat areas do not pick up noise motion).
    """
    if block % 2:
        raise ValueError("block size must be even")
    h, w = cur.shape[-2:]
    pad = (0, -w % block, 0, -h % block)  # whole blocks at both search levels
    lr, lc = F.pad(_luma(ref), pad, mode="replicate"), F.pad(_luma(cur), pad, mode="replicate")
    half = F.avg_pool2d(lr, 2), F.avg_pool2d(lc, 2)
    coarse = _square(search // 2)
    sad = _block_sad(*half, block // 2, coarse)
    sad = sad + length_cost * 2 * coarse.abs().sum(1).view(1, -1, 1, 1)
    mv = coarse[sad.argmin(1)] * 2  # (B, hb, wb, 2)
    fine = _square(1)
    sad = _block_sad(lr, lc, block, fine, base=mv)
    sad = sad + length_cost * (mv[:, None] + fine.view(1, -1, 1, 1, 2)).abs().sum(-1)
    best = fine[sad.argmin(1)]
    return (mv + best).clamp(-search, search)


def warp(feat: torch.Tensor, mv: torch.Tensor, block: int, scale: int) -> torch.Tensor:
    """``feat`` (B, C, h, w) at ``1/scale`` resolution moved by per-block pixel vectors ``mv``.

    Bilinear with weights in ``1/scale**2`` units and edge replication; integer ``feat``
    gives the exactly floored result (the codec's path), float ``feat`` the same weights.
    """
    b, c, h, w = feat.shape
    per = block // scale  # feature pixels per block
    d = mv.permute(0, 3, 1, 2).repeat_interleave(per, 2).repeat_interleave(per, 3)[..., :h, :w]
    if d.shape[-2] < h or d.shape[-1] < w:
        d = F.pad(d.float(), (0, w - d.shape[-1], 0, h - d.shape[-2]), mode="replicate").long()
    d = d.long()
    ix, fx = torch.div(d[:, 0], scale, rounding_mode="floor"), torch.remainder(d[:, 0], scale)
    iy, fy = torch.div(d[:, 1], scale, rounding_mode="floor"), torch.remainder(d[:, 1], scale)
    x0 = torch.arange(w).view(1, 1, w) + ix
    y0 = torch.arange(h).view(1, h, 1) + iy
    flat = feat.flatten(2)

    def tap(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
        idx = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).flatten(1)[:, None].expand(b, c, -1)
        return flat.gather(2, idx).view(b, c, h, w)

    wx1, wy1 = fx[:, None], fy[:, None]
    wx0, wy0 = scale - wx1, scale - wy1
    acc = (tap(y0, x0) * (wx0 * wy0) + tap(y0, x0 + 1) * (wx1 * wy0)
           + tap(y0 + 1, x0) * (wx0 * wy1) + tap(y0 + 1, x0 + 1) * (wx1 * wy1))
    if feat.dtype.is_floating_point:
        return acc / (scale * scale)
    return torch.div(acc, scale * scale, rounding_mode="floor")
