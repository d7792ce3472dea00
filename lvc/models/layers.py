"""Building blocks for lean CPU transforms.

The transforms use 5x5 strided convolutions and a simplified GDN
(Johnston et al., 2019: ``x / (beta + gamma |x|)``), which keeps most of GDN's
rate-distortion benefit at a fraction of its cost: no square, no square root.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class _NonNegative(nn.Module):
    """Reparametrise a tensor as ``p**2 - pedestal`` bounded below, as in Ballé's GDN.

    The squared parametrisation keeps the effective gradient well conditioned for
    small values and guarantees non-negativity without clamping the raw parameter.
    """

    def __init__(self, minimum: float = 0.0, reparam_offset: float = 2**-18) -> None:
        super().__init__()
        self.pedestal = reparam_offset**2
        self.bound = (minimum + self.pedestal) ** 0.5

    def init(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(torch.clamp(x + self.pedestal, min=self.pedestal))

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return torch.clamp(p, min=self.bound) ** 2 - self.pedestal


class SimpleGDN(nn.Module):
    """Simplified (inverse) GDN: ``y = x / (beta + gamma @ |x|)`` or ``x * (...)``."""

    def __init__(self, channels: int, inverse: bool = False) -> None:
        super().__init__()
        self.inverse = inverse
        self._beta_param = _NonNegative(minimum=1e-6)
        self._gamma_param = _NonNegative()
        self.beta = nn.Parameter(self._beta_param.init(torch.ones(channels)))
        self.gamma = nn.Parameter(self._gamma_param.init(0.1 * torch.eye(channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = self._beta_param(self.beta)
        gamma = self._gamma_param(self.gamma)
        c = gamma.shape[0]
        norm = F.conv2d(x.abs(), gamma.reshape(c, c, 1, 1).to(x.dtype), beta.to(x.dtype))
        return x * norm if self.inverse else x / norm


def conv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def deconv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(
        cin, cout, k, stride=stride, padding=k // 2, output_padding=stride - 1
    )
