"""Sub-pixel phase planes of a reference luma (encoder only), made once and shared.

The sub-pixel steps fetch moved blocks from a reference's phase planes: the search's
refinement (:mod:`lvc.codec.motion`) and then the quarters' search (:mod:`lvc.codec.partition`)
on the previous input frame, the polish of the blocks and then of the quarters on the
decoder's picture (:mod:`lvc.codec.picture_motion`). Each used to make its own at its own
edge padding (four sets of 16 planes per frame). Padding only adds replicated edges, over
which the interpolation is constant, so planes padded further hold the same values bit for
bit wherever the less padded ones exist: one set padded for the largest need serves all.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F


def phase_planes(x: torch.Tensor, frac: int) -> torch.Tensor:
    """(B, 1, H, W) -> (B, frac * frac, H, W): plane ``py * frac + px`` holds the bilinear
    value at (y + py / frac, x + px / frac) for every pixel (edge-replicated past the last row
    and column): the values :func:`lvc.codec.motion.warp` takes, to float rounding (the
    search's, not the codec's). Phase-major, so a moved block's rows stay contiguous
    (:func:`lvc.codec.motion._fetch`). Separable: ``frac`` column phases, then ``frac`` row
    phases of each, one fused pass each."""
    p = F.pad(x, (0, 1, 0, 1), mode="replicate")[:, 0]  # (B, H + 1, W + 1)
    t = torch.arange(frac, dtype=torch.float32).view(1, frac, 1, 1) / frac
    cols = torch.lerp(p[:, None, :, :-1], p[:, None, :, 1:], t)  # (B, px, H + 1, W)
    rows = torch.lerp(cols[:, None, :, :-1], cols[:, None, :, 1:], t[..., None])  # (B, py, px, H, W)
    return rows.reshape(x.shape[0], frac * frac, *x.shape[-2:])


class PhasePlanes:
    """The phase planes of ``luma`` (B, 1, H, W) at ``1/frac`` pixel (``planes_of``: another
    interpolation's, :func:`lvc.codec.sharp.sharp_phase_planes`), edge-padded by at least
    ``least`` pixels: made on the first :meth:`padded`, again only for a caller needing more."""

    def __init__(self, luma: torch.Tensor, frac: int, least: int = 0,
                 planes_of: Callable[[torch.Tensor, int], torch.Tensor] = phase_planes) -> None:
        self.luma, self.frac, self.least, self.planes_of = luma, frac, least, planes_of
        self._made: tuple[torch.Tensor, int] | None = None

    def padded(self, r: int) -> tuple[torch.Tensor, int]:
        """(the planes (B, frac * frac, H + 2 p, W + 2 p), p) for some padding p >= ``r``."""
        if self._made is None or self._made[1] < r:
            p = max(r, self.least)
            self._made = self.planes_of(F.pad(self.luma, (p,) * 4, mode="replicate"), self.frac), p
        return self._made
