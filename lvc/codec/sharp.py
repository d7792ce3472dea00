"""Sharp motion compensation: quarter-pixel copies through 8-tap filters (format 1.5, PM frames).

Bilinear interpolation low-passes every fractional copy, and a chain of copies blurs what it
carries; the residual layer then pays again for the detail. HEVC's 8-tap luma filters keep
it. Neither filter wins everywhere (on 8 training clips, sharp everywhere: bear -21.5%,
teddy -12.5%, but bedroom, dog, coffee about +4%, where the bilinear filter's smoothing
removes the previous picture's noise), so a motion-only frame names its filter and the
encoder takes, per frame, the one whose copy is nearer the frame (docs/models.md, "Session 40").

Exact integers: the 8-bit picture, edge-replicated, filtered along rows then columns with
taps in 64ths, ``(sum + 2048) >> 12``, clamped to 0..255. Every block's ``block + 7``
square source region is gathered at once, as :func:`lvc.codec.skip.moved_picture` does.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

# Taps in 64ths for the phases 0, 1/4, 1/2 and 3/4 of a pixel (HEVC's luma filters), applied
# to the samples at offsets -3 .. +4: part of the bitstream.
SHARP_TAPS = np.array([[0, 0, 0, 64, 0, 0, 0, 0],
                       [-1, 4, -10, 58, 17, -5, 1, 0],
                       [-1, 4, -11, 40, 40, -11, 4, -1],
                       [0, 1, -5, 17, 58, -10, 4, -1]], dtype=np.int32)
PHASES = len(SHARP_TAPS)  # quarter pixels only


def sharp_moved(previous: np.ndarray, v: np.ndarray, block: int, frac: int,
                only: np.ndarray | None = None) -> np.ndarray:
    """``previous`` (h, w, 3) uint8 with every ``block`` x ``block`` block taken from itself
    plus its vector ``v`` (hb, wb, 2) in ``1/frac`` pixels (``frac`` 4), through the 8-tap
    filters; coordinates past the picture repeat its edge. With ``only`` (hb, wb) bool, just
    those blocks (the others are left 0: a caller fills them).

    Filtered in float32, which is exact here: every product and partial sum is an integer
    of magnitude at most 112 * 112 * 255 < 2**24 (112: the sum of a filter's absolute taps).
    Each region's rows hold its pixels' channels interleaved, so both passes run over
    contiguous memory."""
    if frac != PHASES:
        raise ValueError(f"sharp copies need quarter-pixel vectors (got 1/{frac})")
    h, w, c = previous.shape
    hb, wb = v.shape[:2]
    whole, part = v // frac, v % frac
    r = int(np.abs(whole).max()) + 4
    pad = np.pad(previous, ((r, r + hb * block - h + 4), (r, r + wb * block - w + 4), (0, 0)), mode="edge")
    n = block + 7
    squares = np.lib.stride_tricks.sliding_window_view(pad.reshape(len(pad), -1), (n, n * c))[:, ::c]
    ys, xs = np.nonzero(np.ones((hb, wb), dtype=bool) if only is None else only)  # (k blocks, in raster order)
    top_left = (ys * block + r - 3 + whole[ys, xs, 1], xs * block + r - 3 + whole[ys, xs, 0])
    reg = torch.from_numpy(squares[top_left]).float()  # (k, n rows, n cols * 3)
    taps = torch.from_numpy(SHARP_TAPS).float()
    rows = _filter(reg, taps[torch.from_numpy(part[ys, xs, 0])], c, block * c)  # (k, n, block * 3)
    out = _filter(rows.view(-1, n * block * c), taps[torch.from_numpy(part[ys, xs, 1])], block * c, block * block * c)
    out = ((out.to(torch.int32) + 2048) >> 12).clamp_(0, 255).to(torch.uint8)
    picture = np.zeros((hb, wb, block, block, c), dtype=np.uint8)
    picture[ys, xs] = out.numpy().reshape(-1, block, block, c)
    return np.ascontiguousarray(picture.transpose(0, 2, 1, 3, 4).reshape(hb * block, wb * block, c)[:h, :w])


def _filter(x: torch.Tensor, taps: torch.Tensor, step: int, size: int) -> torch.Tensor:
    """``x`` (k, ..., L) filtered along its last dimension by each block's 8 ``taps`` (k, 8),
    ``step`` apart: ``size`` outputs per row."""
    t = taps.view(len(taps), 8, *[1] * (x.dim() - 1))
    out = t[:, 0] * x[..., :size]
    for k in range(1, 8):
        out.addcmul_(t[:, k], x[..., k * step:k * step + size])
    return out


def sharp_phase_planes(x: torch.Tensor, frac: int) -> torch.Tensor:
    """:func:`lvc.codec.motion.phase_planes` through the 8-tap filters (float, unrounded: the
    search's, not the codec's): plane ``py * 4 + px`` holds the value at (y + py / 4, x + px
    / 4), edges replicated. The encoder searches a sharp copy's vectors on these."""
    if frac != PHASES:
        raise ValueError(f"sharp copies need quarter-pixel vectors (got 1/{frac})")
    taps = torch.from_numpy(SHARP_TAPS).float() / 64  # (phase, 8)
    b, _, h, w = x.shape
    p = F.pad(x, (3, 4, 3, 4), mode="replicate")
    cols = F.conv2d(p, taps.view(PHASES, 1, 1, 8))  # (B, px, H + 7, W)
    rows = F.conv2d(cols.reshape(b * PHASES, 1, h + 7, w), taps.view(PHASES, 1, 8, 1))  # (B * px, py, H, W)
    return rows.view(b, PHASES, PHASES, h, w).transpose(1, 2).reshape(b, PHASES * PHASES, h, w)
