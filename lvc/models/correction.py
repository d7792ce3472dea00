"""Learned corrections of the hyperprior's predictions (the P-frame and spatial priors).

Both extra priors of lvc have one form: the intra hyperprior predicts a mean ``mu`` and
log-scale ``s`` for every latent element, and a small network that also sees something
the decoder already holds (the previous frame's latent, or the half of this frame's
latent decoded first) corrects both:

    mean = mu + d_mu(mu, s, cond),    log_scale = s + d_s(mu, s, cond)

The last layer starts at zero, so an untrained correction changes nothing, and training
(rate only, the intra transforms frozen: cheap at latent resolution) can only move away
from the hyperprior where that saves bits. The decoder runs the integer freeze of the
network (:class:`lvc.entropy.intnet.IntSynthesis`), so corrections are exact everywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from lvc.entropy.priors import gaussian_likelihood, lower_bound
from lvc.models.latent import SCALE_MIN
from lvc.models.layers import conv


@dataclass(frozen=True)
class CorrectionConfig:
    M: int = 128  # latent channels (the intra model's)
    C: int = 128  # width of the correction network

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CorrectionConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class Correction(nn.Module):
    """Three 3x3 convolutions ``[mu, s, cond] -> [d_mu, d_s]``; training-time (float) form."""

    def __init__(self, cfg: CorrectionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        m, c = cfg.M, cfg.C
        self.fuse = nn.Sequential(conv(3 * m, c, 3, 1), nn.ReLU(), conv(c, c, 3, 1), nn.ReLU(), conv(c, 2 * m, 3, 1))
        nn.init.zeros_(self.fuse[-1].weight)
        nn.init.zeros_(self.fuse[-1].bias)

    def corrected(self, mu: torch.Tensor, log_scale: torch.Tensor, cond: torch.Tensor):
        d_mu, d_s = self.fuse(torch.cat([mu, log_scale, cond], dim=1)).chunk(2, dim=1)
        return mu + d_mu, log_scale + d_s

    @staticmethod
    def bits(y: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        """Per-element noisy-proxy information content of ``y`` (bits)."""
        scale = lower_bound(torch.exp(log_scale), SCALE_MIN)
        y_noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        return -torch.log2(gaussian_likelihood(y_noisy, mean, scale))

    @classmethod
    def rate(cls, y: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        """Noisy-proxy bits per sample (B,)."""
        return cls.bits(y, mean, log_scale).flatten(1).sum(1)
