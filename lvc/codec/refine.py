"""Encoder-side latent refinement: better rate–distortion with the decoder unchanged.

The symbols ``v = round(y - mean)`` are optimised for ``lambda * 255**2 * MSE + bits``;
for I-frames of hyperprior models the side information ``z`` is searched with them (its
bits counted, the means and scales following it through the hyper-synthesis' float
stand-in), elsewhere it stays fixed. Hard rounding
has no useful gradient, so the search runs on a relaxed ``v``: stochastic Gumbel
annealing (Yang, Bamler & Mandt, "Improving Inference for Neural Image Compression",
NeurIPS 2020) rounds each element down or up with a probability that sharpens as the
temperature falls, so late steps see (almost) the rounding the coder will apply. Every
few steps the hard-rounded candidate is scored (clamped synthesis, bits under the fixed
hyperprior), and the best one (the unrefined rounding included) is kept.

Measured on 8 BSDS500 val images (real bytes) against no refinement, step-64,000 model,
q=0.5: 50 steps save 4.1% of the bits at +0.05 dB; 25 steps 2.2% at -0.03 dB; the
straight-through rounding used before (16 steps) saved 0.3% at +0.02 dB. Step-80,000
model, same images: q=0.5 -4.2% at +0.04 dB, q=0 -13.4% at -0.29 dB.

I-frames of context models code their second checkerboard half around means corrected
from the decoded anchors. The search models that (``Checkerboard``): the anchors are
rounded around the hyperprior's means, the corrected means and scales come from the
context network's float stand-in (same rounded weights as the exact path), and the other
half is rounded around them; exact scorings run the codec's integer context path, and the
returned latent re-rounds to exactly the scored symbols. The anchors are thereby also
chosen for how well they predict the other half. Against the search that ignored the
context (the shipped context model, 50 steps, the first 8 BSDS500 val images, real bytes,
PSNR-RGB): q=0 0.2744 -> 0.2719 bpp at 27.08 -> 27.27 dB, q=0.5 0.8267 -> 0.8228 at 31.38
-> 31.53, q=1 1.6296 -> 1.6250 at 33.01 -> 33.05; BD-rate -5.6% (-11.5% against no
refinement, where the old search gave -6.1%). Searching ``z`` as well (its own step size
4x y's) gave a further -1.1% on the same images (q=0 0.2594 bpp / 27.17 dB, q=0.5 0.8104 /
31.49, q=1 1.6132 / 33.04): -6.6% against the context-blind search, -12.4% against none.

Since session 20 the relaxed steps synthesise in bfloat16 where the CPU has it natively
(:func:`lvc.codec.synthesis.bf16_synthesis`; every candidate is still scored in float32),
which halves the search's time for the same result (8 val images, 200 steps: 0.2370 /
26.99, 0.7847 / 31.47, 1.5872 / 33.10 against float32's 0.2373 / 27.00, 0.7838 / 31.46,
1.5861 / 33.11), so ``slow`` takes 200 steps: -1.7% (100) and -3.2% (200) BD-rate against 50.
Since session 21 the step size anneals with the temperature (``LR_START`` -> ``LR_END``):
-2.8% against a constant step on the same images (0.2290 / 27.00, 0.7735 / 31.50, 1.5735 /
33.13).

At medium's 50 steps for still images the constants hold (session 26, the same 8 val
images, 7 qualities, BD-rate against WebP; -12.7% as they are): step sizes x1.5 -12.8%,
x2 -12.4%; ``TAU_START`` 0.3 -12.7%; ``CHECK_EVERY`` 5 -12.7%.

Only the encoder pays. The noise comes from a fixed-seed generator, so a given machine and
thread count always writes the same stream (the float synthesis it differentiates may
round differently elsewhere).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from lvc.entropy.priors import gaussian_likelihood
from lvc.entropy.tables import table_scales

ALGORITHM = "sga-5"  # benchmark caches key on it: change it whenever the search changes
TAU_START, TAU_END = 0.5, 0.05  # annealing temperatures: soft rounding -> nearly hard
# Adam's step size falls on a cosine from LR_START to LR_END over the steps (8 BSDS500 val
# images, 200 steps, against a constant 0.01: 0.02 -> 0.0005 -2.8% BD-rate, 0.02 -> 0.002
# -2.5%, 0.04 -> 0.004 -2.0%, 0.01 -> 0.001 -1.2%): large moves while the rounding is soft,
# fine ones as it hardens.
LR_START, LR_END = 0.02, 0.0005
CHECK_EVERY = 10  # steps between exact scorings of the hard-rounded candidate
_EPS = 1e-4
Z_LR = 4.0  # z's step size relative to y's (8 val images: x1 -0.4%, x4 -1.1%, x10 -0.5% BD-rate)


@dataclass(frozen=True)
class Checkerboard:
    """The spatial context prior of an I-frame as the search sees it (real units, gained
    latent). ``soft(cond, mean, log_scale)`` gives the float ``(d_mean, d_log_scale)`` of every
    element from ``cond`` (decoded anchors, zero elsewhere), differentiably; ``exact(sym, fx)``
    gives the codec's exact ``(d_mean, scale index)`` from the anchors' symbols (zero shift
    there). Without ``mean`` / ``fx`` both use the frame's fixed hyperprior prediction."""

    anchors: torch.Tensor  # bool, the latent's shape
    log_scale: torch.Tensor  # the fixed hyperprior's log-scales
    soft: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    exact: Callable[..., tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class SidePrior:
    """The hyper-latent ``z``, searched with ``y`` (the decoder reads both): ``soft(z)`` is the
    hyper-synthesis's float ``(mean, log_scale)``, ``exact(z_hat)`` the codec's ``(mean, scale
    index, fixed-point prediction)``; ``bits[c, k]`` what symbol ``offsets[c] + k - 1`` of
    channel ``c`` costs (an escape's cost at the first column and past the channel's table),
    ``hard_bits(z_hat)`` what the coder spends. ``y`` is scored under a Gaussian, ``z`` under its exact tables."""

    z: torch.Tensor  # the analysis' z, where the search starts
    soft: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    exact: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, object]]
    bits: torch.Tensor  # (C, K) float
    offsets: torch.Tensor  # (C,) long
    hard_bits: Callable[[torch.Tensor], float]
    limit: int  # |z_hat| the coder takes

    def soft_bits(self, z: torch.Tensor, z_soft: torch.Tensor) -> torch.Tensor:
        """Bits of soft-rounded ``z_soft`` (``floor(z)`` plus a weight): the costs of the two
        neighbouring symbols, interpolated (escape costs outside the tables)."""
        f = torch.floor(z).detach()
        k = f.long() - self.offsets[None, :, None, None] + 1
        last = self.bits.shape[1] - 1
        rows = torch.arange(self.bits.shape[0])[None, :, None, None]
        low, high = self.bits[rows, k.clamp(0, last)], self.bits[rows, (k + 1).clamp(0, last)]
        wgt = z_soft - f
        return ((1 - wgt) * low + wgt * high).sum()


def _soft_round(v: torch.Tensor, tau: float, gen: torch.Generator) -> torch.Tensor:
    """``floor(v)`` plus a Gumbel-softmax weight of rounding up (the nearer integer is likelier)."""
    f = torch.floor(v).detach()
    r = (v - f).clamp(_EPS, 1 - _EPS)
    logits = torch.stack([-torch.atanh(r), -torch.atanh(1 - r)], -1) / tau
    gumbel = -torch.log(-torch.log(torch.rand(logits.shape, generator=gen).clamp_min(1e-20)))
    return f + torch.softmax(logits + gumbel, -1)[..., 1]


def refine_latent(g_s: torch.nn.Module, y: torch.Tensor, mean: torch.Tensor, scale_idx: torch.Tensor,
                  inv_gain: torch.Tensor, target: torch.Tensor, lmbda: float, steps: int,
                  lr: float = LR_START, offset: torch.Tensor | None = None,
                  context: Checkerboard | None = None,
                  side: SidePrior | None = None,
                  symbol_limit: int = 1 << 20, bf16: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Refined ``y`` for the frame ``target``, and the refined ``z_hat`` (None without ``side``).

    ``round(y - mean)`` are the symbols to code, where ``mean`` is the prediction of the
    returned ``z_hat`` (with ``side``, the ``mean`` and ``scale_idx`` arguments are unused).

    ``target`` is the (1, 3, H, W) frame in [0, 1]; ``offset`` is added before synthesis (a
    P-frame's reference latent; ``y`` is then the residual). With ``context`` the second
    checkerboard half is searched around its corrected means, and the result re-rounds
    there to the symbols found. ``symbol_limit``: the largest ``|symbol|`` the coder takes.
    ``lr``: Adam's first step size (``y``'s; ``z`` takes ``Z_LR`` times it), falling by
    ``LR_END / LR_START`` on a cosine. ``bf16``: the relaxed steps synthesise in bfloat16
    (their gradients only steer the search; every candidate is still scored in float32).
    """
    table = torch.from_numpy(table_scales()).float()
    lo, hi = float(table[0]), float(table[-1])
    fixed_scale = table[scale_idx]
    h, w = target.shape[-2:]
    pixels = h * w

    def relaxed(u: torch.Tensor, z: torch.Tensor | None, tau: float, gen: torch.Generator):
        """Soft-rounded symbols, their scales, the latent they decode to, and the side bits."""
        m, ls, sc, z_bits = mean, None, fixed_scale, 0.0
        if side is not None:
            z_soft = _soft_round(z, tau, gen)
            m, ls = side.soft(z_soft)
            sc = torch.exp(ls).clamp(lo, hi)
            z_bits = side.soft_bits(z, z_soft)
        s = _soft_round(u - m, tau, gen)
        if context is None:
            return s, sc, s + m, z_bits
        a = context.anchors
        d_mean, d_log_scale = context.soft(torch.where(a, s + m, 0.0), m, ls)
        r = _soft_round(u - m - d_mean, tau, gen)
        sc_rest = torch.exp((context.log_scale if ls is None else ls) + d_log_scale).clamp(lo, hi)
        return torch.where(a, s, r), torch.where(a, sc, sc_rest), m + torch.where(a, s, d_mean + r), z_bits

    def hard(u: torch.Tensor, z: torch.Tensor | None):
        """The codec's own rounding (exact paths): symbols, scales, decoded latent, side bits,
        and ``z_hat``."""
        m, idx, fx, z_bits, z_hat = mean, scale_idx, None, 0.0, None
        if side is not None:
            z_hat = torch.round(z).clamp(-side.limit, side.limit).long()
            m, idx, fx = side.exact(z_hat)
            z_bits = side.hard_bits(z_hat)
        k = torch.round(u - m).clamp(-symbol_limit, symbol_limit)  # as the coder clamps them
        if context is None:
            return k, table[idx], k + m, z_bits, z_hat
        d_mean, idx = context.exact(k.long(), fx)
        k = torch.where(context.anchors, k, torch.round(u - m - d_mean).clamp(-symbol_limit, symbol_limit))
        return k, table[idx], m + k + d_mean, z_bits, z_hat

    def cost(sym: torch.Tensor, sc: torch.Tensor, decoded: torch.Tensor, z_bits, scoring: bool) -> torch.Tensor:
        """``lambda * MSE + bpp``: a candidate's score (clamped float32 picture) when ``scoring``,
        else the relaxed step's loss."""
        latent = ((decoded if offset is None else decoded + offset) * inv_gain).contiguous(
            memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16 and not scoring):
            x_hat = g_s(latent)[..., :h, :w].float()
        mse = torch.mean(((x_hat.clamp(0, 1) if scoring else x_hat) - target) ** 2)
        bits = -torch.log2(gaussian_likelihood(sym, torch.zeros_like(sym), sc)).sum() + z_bits
        return lmbda * 255**2 * mse + bits / pixels

    u = y.detach().clone()
    z = side.z.detach().clone() if side is not None else None
    with torch.no_grad():
        best = hard(u, z)
        best_cost = cost(*best[:4], True).item()
    groups = [{"params": [u]}] if z is None else [{"params": [u]}, {"params": [z], "lr": lr * Z_LR}]
    for g in groups:
        g["params"][0].requires_grad_(True)
    opt = torch.optim.Adam(groups, lr=lr)
    base_lrs = [g["lr"] for g in opt.param_groups]
    end = LR_END / LR_START
    gen = torch.Generator().manual_seed(0)
    with torch.enable_grad():
        for t in range(steps):
            tau = TAU_START * (TAU_END / TAU_START) ** (t / max(1, steps - 1))
            loss = cost(*relaxed(u, z, tau, gen), False)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            scale = end + (1 - end) * 0.5 * (1 + math.cos(math.pi * t / steps))
            for g, base in zip(opt.param_groups, base_lrs, strict=True):
                g["lr"] = base * scale
            opt.step()
            if (t + 1) % CHECK_EVERY == 0 or t + 1 == steps:
                with torch.no_grad():
                    candidate = hard(u.detach(), None if z is None else z.detach())
                    c = cost(*candidate[:4], True).item()
                if c < best_cost and math.isfinite(c):
                    best_cost, best = c, candidate
    return best[2], best[4]
