"""Learned priors used while training: a factorized density and a Gaussian conditional.

These are the differentiable halves of the entropy models. Their frozen, integer
counterparts (what the coder actually uses) are built by :mod:`lvc.entropy.tables`.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

LIKELIHOOD_BOUND = 1e-9


class _LowerBound(torch.autograd.Function):
    """Clamp from below, but let gradients through when they push the value up."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, bound: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        passthrough = (x >= ctx.bound) | (grad < 0)
        return grad * passthrough, None


def lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    return _LowerBound.apply(x, bound)


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity in the backward pass."""
    return x + (torch.round(x) - x).detach()


class FactorizedDensity(nn.Module):
    """Per-channel non-parametric density (Ballé et al. 2018, appendix 6.1).

    ``quantiles`` (lower tail, median, upper tail) are fitted by :meth:`quantile_loss`
    so that freezing can choose each channel's coding range from data, not guesses.
    """

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0,
                 tail_mass: float = 1e-9) -> None:
        super().__init__()
        self.channels = channels
        self.tail_mass = tail_mass
        dims = (1, *filters, 1)
        scale = init_scale ** (1.0 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = math.log(math.expm1(1.0 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))
        q = torch.tensor([-init_scale, 0.0, init_scale])
        self.quantiles = nn.Parameter(q.repeat(channels, 1, 1))  # (C, 1, 3)

    def logits_cdf(self, x: torch.Tensor, detach: bool = False) -> torch.Tensor:
        """Logit of the CDF at ``x`` of shape (C, 1, n); ``detach`` freezes the density."""
        for i, (m, b) in enumerate(zip(self.matrices, self.biases)):
            if detach:
                m, b = m.detach(), b.detach()
            x = torch.matmul(F.softplus(m), x) + b
            if i < len(self.factors):
                f = self.factors[i].detach() if detach else self.factors[i]
                x = x + torch.tanh(f) * torch.tanh(x)
        return x

    def likelihood(self, z: torch.Tensor) -> torch.Tensor:
        """P(z) of an integer bin centred at each element of ``z`` (B, C, H, W)."""
        b, c, h, w = z.shape
        v = z.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lower = self.logits_cdf(v - 0.5)
        upper = self.logits_cdf(v + 0.5)
        sign = -torch.sign(lower + upper).detach()
        lik = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        lik = lik.reshape(c, b, h, w).permute(1, 0, 2, 3)
        return lik.clamp_min(LIKELIHOOD_BOUND)

    def quantile_loss(self) -> torch.Tensor:
        """Auxiliary loss that moves ``quantiles`` to the tails and median of the density."""
        logits = self.logits_cdf(self.quantiles, detach=True)
        target = torch.tensor(
            [-math.log(2 / self.tail_mass - 1), 0.0, math.log(2 / self.tail_mass - 1)],
            device=logits.device,
        )
        return torch.abs(logits - target).sum()

    @torch.no_grad()
    def pmf(self, lo: int, hi: int) -> torch.Tensor:
        """Probability of each integer in [lo, hi] per channel: (C, hi - lo + 1), float64."""
        v = torch.arange(lo, hi + 1, dtype=torch.float32).repeat(self.channels, 1, 1)
        lower = self.logits_cdf(v - 0.5)
        upper = self.logits_cdf(v + 0.5)
        sign = -torch.sign(lower + upper)
        p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return p[:, 0, :].double()


def gaussian_likelihood(y: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """P(bin of width 1 around ``y``) under N(mean, scale**2)."""
    # Phi((0.5 - v)/s) - Phi((-0.5 - v)/s) with v = |y - mean|, written with erfc so the
    # upper tail keeps its precision.
    v = torch.abs(y - mean)
    inv = 1.0 / (scale * math.sqrt(2.0))
    lik = 0.5 * (torch.erfc((v - 0.5) * inv) - torch.erfc((v + 0.5) * inv))
    return lik.clamp_min(LIKELIHOOD_BOUND)
