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


SUBPIXEL_GEOMETRY = ((5, 5), (2, 2), (2, 2), (1, 1))  # kernel, stride, padding, output padding


def subpixel_kernel(w: torch.Tensor) -> torch.Tensor:
    """The (4 C_out, C_in, 3, 3) kernel of a 3x3 convolution (padding 1) whose pixel-shuffled
    output is the 5x5 stride-2 transposed convolution with weight ``w`` (C_in, C_out, 5, 5)
    (padding 2, output padding 1). Any dtype: integer kernels stay exact."""
    cin, cout = w.shape[:2]
    kernel = w.new_zeros(cout, 2, 2, cin, 3, 3)  # output (channel, row phase, column phase)
    # Output 2j + a takes input j + d - 1 through tap a + 4 - 2d (none past the kernel).
    for a in range(2):
        for d in range(3):
            ky = a + 4 - 2 * d
            for b in range(2):
                for e in range(3):
                    kx = b + 4 - 2 * e
                    if ky <= 4 and kx <= 4:
                        kernel[:, a, b, :, d, e] = w[:, :, ky, kx].t()
    return kernel.reshape(4 * cout, cin, 3, 3)


def recastable(m: nn.Module) -> bool:
    """Whether ``m`` is a transposed convolution of :data:`SUBPIXEL_GEOMETRY` (ungrouped)."""
    return (isinstance(m, nn.ConvTranspose2d) and m.groups == 1
            and (m.kernel_size, m.stride, m.padding, m.output_padding) == SUBPIXEL_GEOMETRY)


class SubpixelDeconv(nn.Module):
    """A stride-2, 5x5 transposed convolution recast as a 3x3 convolution to four phases of
    output channels and a pixel shuffle: the same function (float rounding aside, ~1e-6).

    oneDNN runs a transposed convolution with 3 output channels (the pictures' layer) at
    about a sixth of the rate of the others; recast, the layer takes half the time at
    416x240 (6.5 -> 3.3 ms on one thread) although a 3x3 window holds 36 taps for 25. Used for
    inference only: the trained modules, and what is initialised from them, keep their shape.
    """

    def __init__(self, deconv: nn.ConvTranspose2d) -> None:
        super().__init__()
        if not recastable(deconv):
            geometry = (deconv.kernel_size, deconv.stride, deconv.padding, deconv.output_padding)
            raise ValueError(f"SubpixelDeconv takes 5x5 stride-2 layers as built by deconv(), not {geometry}")
        w = deconv.weight.detach()
        self.register_buffer("weight", subpixel_kernel(w))
        bias = deconv.bias.detach() if deconv.bias is not None else w.new_zeros(w.shape[1])
        self.register_buffer("bias", bias.repeat_interleave(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(F.conv2d(x, self.weight.to(x.dtype), self.bias.to(x.dtype), padding=1), 2)


def subpixel_tail(seq: nn.Sequential) -> nn.Sequential:
    """``seq`` with its last layer recast by :class:`SubpixelDeconv` where that layer is a
    transposed convolution to a picture (at most 8 channels: a picture, or a ``pixel_ref``
    display's 7 outputs, 7.7 -> 5.8 ms at 416x240 on one thread); the layers before are
    shared."""
    last = seq[-1]
    if recastable(last) and last.out_channels <= 8:
        return nn.Sequential(*list(seq)[:-1], SubpixelDeconv(last).eval())
    return seq
