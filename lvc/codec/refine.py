"""Encoder-side latent refinement: better rate–distortion with the decoder unchanged.

With the side information (and so every mean and scale index) fixed, the latent ``y``
is optimised by a few Adam steps on ``lambda * 255**2 * MSE + bits``, the rounding passed
straight through (Campos et al. 2019; Yang et al. 2020 use the same idea). Only the
encoder pays; the bitstream and decoder are untouched. Adam's steps move every element
by about ``lr``, so the rate is small: at 0.03-0.1 a few steps flip many symbols the wrong
way and the loss rises (measured); 0.004 over 16-24 steps lowers it by 1-1.5%.
"""

from __future__ import annotations

import math

import torch

from lvc.entropy.priors import gaussian_likelihood, ste_round
from lvc.entropy.tables import table_scales


def refine_latent(g_s: torch.nn.Module, y: torch.Tensor, mean: torch.Tensor, scale_idx: torch.Tensor,
                  inv_gain: torch.Tensor, target: torch.Tensor, lmbda: float, steps: int,
                  lr: float = 0.004, offset: torch.Tensor | None = None) -> torch.Tensor:
    """Refined ``y`` for the frame ``target`` (1, 3, H, W) cropped region, prior held fixed.

    ``offset`` is added before synthesis (a P-frame's reference latent; ``y`` is then the residual).
    """
    scale = torch.from_numpy(table_scales()).float()[scale_idx]
    h, w = target.shape[-2:]
    pixels = h * w
    y = y.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([y], lr=lr)
    best, best_loss = y.detach().clone(), math.inf
    with torch.enable_grad():
        for _ in range(steps + 1):
            y_hat = ste_round(y - mean) + mean
            x_hat = g_s((y_hat if offset is None else y_hat + offset) * inv_gain)[..., :h, :w]
            mse = torch.mean((x_hat - target) ** 2)
            bits = -torch.log2(gaussian_likelihood(y_hat, mean, scale)).sum()
            loss = lmbda * 255**2 * mse + bits / pixels
            if loss.item() < best_loss:  # the loss of the current y, rounding included
                best_loss, best = loss.item(), y.detach().clone()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return best
