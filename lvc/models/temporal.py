"""The P-frame model: a temporal entropy prior in the intra model's latent space.

A P-frame's latent ``y_t`` is coded conditionally on the previous frame's decoded latent
``r`` (DCVC's "conditional, not residual" idea, applied after the intra analysis):

* side information ``z = h_a([y_t, r])`` tells the decoder what changed;
* ``h_s(z)`` gives features at latent resolution, and ``fuse([h_s(z), r])`` predicts a
  mean offset and a log-scale for every element of ``y_t``: ``mean = r + delta``.

With ``delta = 0`` this is plain latent-residual coding, which is where training starts
(the last layer is zero-initialised). The 3x3 receptive field over ``r`` lets the prior
follow motion up to about two latent cells (32 pixels) per frame. The transforms ``g_a``
and ``g_s`` stay the intra model's, so the P model trains on latents alone (rate only)
and costs the decoder about 3 k MAC per pixel on top of the synthesis.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from lvc.entropy.priors import FactorizedDensity, gaussian_likelihood, lower_bound
from lvc.models.latent import SCALE_MIN
from lvc.models.layers import conv, deconv


@dataclass(frozen=True)
class TemporalConfig:
    M: int = 128  # latent channels (the intra model's)
    Nh: int = 64  # side-information channels
    F: int = 96  # hyper features at latent resolution
    C: int = 128  # width of the fusion network

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TemporalConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class TemporalPrior(nn.Module):
    """Training-time temporal prior; coding goes through its integer freeze."""

    def __init__(self, cfg: TemporalConfig) -> None:
        super().__init__()
        self.cfg = cfg
        m, nh, f, c = cfg.M, cfg.Nh, cfg.F, cfg.C
        self.h_a = nn.Sequential(conv(2 * m, nh, 3, 1), nn.LeakyReLU(), conv(nh, nh), nn.LeakyReLU(), conv(nh, nh))
        self.h_s = nn.Sequential(deconv(nh, nh), nn.ReLU(), deconv(nh, f), nn.ReLU())
        self.fuse = nn.Sequential(conv(f + m, c, 3, 1), nn.ReLU(), conv(c, c, 3, 1), nn.ReLU(), conv(c, 2 * m, 3, 1))
        nn.init.zeros_(self.fuse[-1].weight)
        nn.init.zeros_(self.fuse[-1].bias)
        self.z_density = FactorizedDensity(nh)

    def params(self, z_hat: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-scale of ``y_t`` from the (rounded) side information and reference."""
        delta, log_scale = self.fuse(torch.cat([self.h_s(z_hat), ref], dim=1)).chunk(2, dim=1)
        return ref + delta, log_scale

    def forward(self, y: torch.Tensor, ref: torch.Tensor) -> dict[str, torch.Tensor]:
        """Noisy-proxy bits of ``y`` (B, M, h, w) given ``ref``; both in the gained latent domain."""
        z = self.h_a(torch.cat([y, ref], dim=1))
        z_noisy = z + torch.empty_like(z).uniform_(-0.5, 0.5)
        z_hat = z + (torch.round(z) - z).detach()
        mean, log_scale = self.params(z_hat, ref)
        scale = lower_bound(torch.exp(log_scale), SCALE_MIN)
        y_noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        bits_y = -torch.log2(gaussian_likelihood(y_noisy, mean, scale)).flatten(1).sum(1)
        bits_z = -torch.log2(self.z_density.likelihood(z_noisy)).flatten(1).sum(1)
        return {"bits_y": bits_y, "bits_z": bits_z}

    def aux_loss(self) -> torch.Tensor:
        return self.z_density.quantile_loss()
