"""The intra latent model: analysis / synthesis transforms, gains and the prior on ``y``.

One class covers both model families of the toolkit, chosen by ``ModelConfig.arch``:

* ``"hyperprior"`` — mean-scale hyperprior VAE (Minnen et al. 2018 without context):
  side information ``z`` predicts a mean and scale for every element of ``y``.
* ``"factorized"`` — plain autoencoder with a learned, non-adaptive prior: one mean and
  scale per channel (and quality), no side information.

Variable rate comes from per-channel gain vectors (Cui et al., "Asymmetric gained deep
image compression"): a quality ``q`` in [0, 1] selects a point between learned levels,
interpolated log-linearly, so one set of weights serves every rate continuously.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from lvc.entropy.priors import FactorizedDensity, gaussian_likelihood, lower_bound, ste_round
from lvc.models.layers import SimpleGDN, conv, deconv

SCALE_MIN = 0.11
WIDTH_FIELDS = ("synthesis_widths", "analysis_widths")  # per-layer channel counts (empty: N each)


def _autocast(enabled: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; stored in checkpoints and weight files."""

    arch: str = "hyperprior"
    N: int = 64  # channels of the main transforms
    M: int = 128  # latent channels
    Nh: int = 64  # hyper-latent channels
    levels: int = 8  # gain levels spanning the quality range
    lambda_min: float = 0.0018  # rate-distortion trade-off at q = 0 (MSE on 0..255 scale / 255**2)
    lambda_max: float = 0.18  # ... and at q = 1
    # Channels after the synthesis' first three layers (1/8, 1/4, 1/2 resolution); empty
    # means N everywhere. The decoder is where capacity limits quality at high rates.
    synthesis_widths: tuple[int, ...] = ()
    # Channels after the analysis' first three layers (1/2, 1/4, 1/8 resolution); empty means
    # N everywhere. Narrow at high resolution, wide at low, as LoC-LIC-style lean transforms.
    analysis_widths: tuple[int, ...] = ()
    # Width of a checkerboard context network trained jointly with the transforms (0: none;
    # `lvc train-ctx` then adds one to the frozen latents after the fact).
    context: int = 0

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in (*WIDTH_FIELDS, "context"):  # files of models without them stay byte-identical
            if not d[k]:
                del d[k]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for k in WIDTH_FIELDS:
            if k in d:
                d[k] = tuple(int(c) for c in d[k])
        return cls(**d)

    @property
    def synthesis(self) -> tuple[int, int, int]:
        return self.synthesis_widths or (self.N,) * 3

    @property
    def analysis(self) -> tuple[int, int, int]:
        return self.analysis_widths or (self.N,) * 3

    def __post_init__(self) -> None:
        if self.arch not in ("hyperprior", "factorized"):
            raise ValueError(f"unknown arch {self.arch!r}; expected 'hyperprior' or 'factorized'")
        if self.levels < 2:
            raise ValueError("levels must be >= 2")
        if self.context < 0 or (self.context and self.arch != "hyperprior"):
            raise ValueError("a context network corrects the hyperprior's predictions: it needs "
                             "arch 'hyperprior' and a positive width")
        for k in WIDTH_FIELDS:
            v = getattr(self, k)
            if v and (len(v) != 3 or min(v) < 1):
                raise ValueError(f"{k} needs three positive channel counts, got {v}")


def interp_fixed(table: torch.Tensor, q: int, q_max: int) -> torch.Tensor:
    """Integer linear interpolation of fixed-point rows (levels, M) at integer quality ``q``
    of ``q_max``: the decoder's exact counterpart of :func:`interp_levels`."""
    levels = table.shape[0]
    p = q * (levels - 1)
    i = min(p // q_max, levels - 2)
    f = p - i * q_max
    return torch.div(table[i] * (q_max - f) + table[i + 1] * f, q_max, rounding_mode="floor")


def interp_levels(table: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Rows of ``table`` (levels, M) interpolated linearly at qualities ``q`` (B,) -> (B, M)."""
    levels = table.shape[0]
    p = q.clamp(0, 1) * (levels - 1)
    i = p.floor().long().clamp(max=levels - 2)
    f = (p - i).to(table.dtype)[:, None]
    return table[i] * (1 - f) + table[i + 1] * f


class LatentModel(nn.Module):
    """Training-time model. Coding goes through :func:`lvc.codec.frozen.freeze`."""

    stride = 64  # total downsampling of the hyperprior path; inputs are padded to it

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        m, nh = cfg.M, cfg.Nh
        a1, a2, a3 = cfg.analysis
        self.g_a = nn.Sequential(
            conv(3, a1), SimpleGDN(a1), conv(a1, a2), SimpleGDN(a2), conv(a2, a3), SimpleGDN(a3), conv(a3, m)
        )
        s1, s2, s3 = cfg.synthesis
        self.g_s = nn.Sequential(
            deconv(m, s1), SimpleGDN(s1, inverse=True), deconv(s1, s2), SimpleGDN(s2, inverse=True),
            deconv(s2, s3), SimpleGDN(s3, inverse=True), deconv(s3, 3),
        )
        lam = torch.exp(torch.linspace(math.log(cfg.lambda_min), math.log(cfg.lambda_max), cfg.levels))
        init_gain = 0.5 * torch.log(lam / lam.log().mean().exp())
        self.log_gain = nn.Parameter(init_gain[:, None].repeat(1, m))
        self.log_inv_gain = nn.Parameter(-init_gain[:, None].repeat(1, m))
        if cfg.arch == "hyperprior":
            self.h_a = nn.Sequential(
                conv(m, nh, 3, 1), nn.LeakyReLU(), conv(nh, nh), nn.LeakyReLU(), conv(nh, nh)
            )
            self.h_s = nn.Sequential(
                deconv(nh, nh), nn.ReLU(), deconv(nh, nh * 3 // 2), nn.ReLU(), conv(nh * 3 // 2, 2 * m, 3, 1)
            )
            self.z_density = FactorizedDensity(nh)
            if cfg.context:
                # Imported here: the correction networks import SCALE_MIN from this module.
                from lvc.models.context import SpatialContext
                from lvc.models.correction import CorrectionConfig

                self.context = SpatialContext(CorrectionConfig(M=m, C=cfg.context))
        else:
            # Non-adaptive prior: a mean and log-scale per channel and gain level.
            self.y_mean = nn.Parameter(torch.zeros(cfg.levels, m))
            self.y_log_scale = nn.Parameter(torch.zeros(cfg.levels, m))

    @property
    def chunked_outputs(self) -> tuple[str, ...]:
        """Parameters whose output dimension stacks two M-channel blocks ([mean, log-scale])."""
        return ("h_s.4.weight", "h_s.4.bias") if self.cfg.arch == "hyperprior" else ()

    # ---- quality ------------------------------------------------------------------
    def interp(self, table: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return interp_levels(table, q)

    def lmbda(self, q: torch.Tensor) -> torch.Tensor:
        lo, hi = math.log(self.cfg.lambda_min), math.log(self.cfg.lambda_max)
        return torch.exp(lo + (hi - lo) * q.clamp(0, 1))

    # ---- training forward -----------------------------------------------------------
    def entropy_params(self, y: torch.Tensor, q: torch.Tensor, training: bool, bf16: bool = False):
        """Mean, log-scale of ``y`` and the likelihood of the side information (or None)."""
        if self.cfg.arch == "hyperprior":
            with _autocast(bf16):
                z = self.h_a(y).float()
            z_noisy = z + torch.empty_like(z).uniform_(-0.5, 0.5) if training else torch.round(z)
            z_lik = self.z_density.likelihood(z_noisy)
            with _autocast(bf16):
                mean, log_scale = self.h_s(ste_round(z)).float().chunk(2, dim=1)
            return mean, log_scale, z_lik
        mean = self.interp(self.y_mean, q)[:, :, None, None].expand_as(y)
        log_scale = self.interp(self.y_log_scale, q)[:, :, None, None].expand_as(y)
        return mean, log_scale, None

    def forward(self, x: torch.Tensor, q: torch.Tensor, bf16: bool = False) -> dict[str, torch.Tensor]:
        """Noisy-proxy forward pass: reconstruction and bits per pixel for ``x`` in [0, 1].

        ``bf16`` runs the transforms under autocast; likelihoods stay in float32.
        """
        b, _, h, w = x.shape
        with _autocast(bf16):
            y = self.g_a(x).float()
        y = y * torch.exp(self.interp(self.log_gain, q))[:, :, None, None]
        mean, log_scale, z_lik = self.entropy_params(y, q, self.training, bf16)
        if self.cfg.context:
            mean, log_scale = self.context.checkerboard(y, mean, log_scale)
        scale = lower_bound(torch.exp(log_scale), SCALE_MIN)
        y_noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5) if self.training else torch.round(y - mean) + mean
        y_lik = gaussian_likelihood(y_noisy, mean, scale)
        y_hat = ste_round(y - mean) + mean
        with _autocast(bf16):
            x_hat = self.g_s(y_hat * torch.exp(self.interp(self.log_inv_gain, q))[:, :, None, None]).float()
        pixels = h * w
        bits_y = -torch.log2(y_lik).flatten(1).sum(1) / pixels
        bits_z = -torch.log2(z_lik).flatten(1).sum(1) / pixels if z_lik is not None else torch.zeros_like(bits_y)
        return {"x_hat": x_hat, "bpp_y": bits_y, "bpp_z": bits_z, "bpp": bits_y + bits_z}

    def aux_loss(self) -> torch.Tensor:
        if self.cfg.arch == "hyperprior":
            return self.z_density.quantile_loss()
        return torch.zeros(())


def count_macs_per_pixel(model: LatentModel, part: str = "decoder", size: tuple[int, int] = (256, 256)) -> float:
    """Multiply-accumulates per input pixel of the decoder or encoder, counted by hooks."""
    total = 0

    def hook(mod: nn.Module, inp, out) -> None:
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            total += out.numel() * mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1] // mod.groups
        elif isinstance(mod, nn.ConvTranspose2d):
            total += inp[0].numel() * mod.out_channels * mod.kernel_size[0] * mod.kernel_size[1]
        elif isinstance(mod, SimpleGDN):
            total += out.numel() * out.shape[1]

    mods = [model.g_s] + ([model.h_s] if model.cfg.arch == "hyperprior" else [])
    if part == "encoder":
        mods = [model.g_a] + ([model.h_a, model.h_s] if model.cfg.arch == "hyperprior" else [])
    if model.cfg.context:
        mods.append(model.context)
    handles = [m.register_forward_hook(hook) for mod in mods for m in mod.modules()]
    h, w = size
    try:
        with torch.no_grad():
            y = model.g_a(torch.zeros(1, 3, h, w))
            if model.cfg.arch == "hyperprior":
                model.h_s(torch.round(model.h_a(y)))
            if model.cfg.context:
                model.context.corrected(y, y, y)
            model.g_s(y)
    finally:
        for hd in handles:
            hd.remove()
    return total / (h * w)
