"""Conditional P-frame coding with a motion-compensated context (training form).

Why: coding ``y_t - y_{t-1}`` in the intra latent space cannot use motion. Latents at 1/16
resolution do not shift like images (warping them saves ~nothing, docs/models.md), and
predicting from pixels would make the decoder's probabilities depend on a float synthesis
that differs between machines. This model follows DCVC-RT's framing instead: the decoder
carries a *context* feature ``c`` at 1/8 resolution from frame to frame. It is produced by
convolutions and ReLUs only, so it freezes to the exact integer path of
:mod:`lvc.entropy.intnet` and both sides hold the same context on every machine. The
encoder sends block motion; the context is warped by it (:func:`lvc.codec.motion.warp`)
and conditions everything:

* analysis ``y = g_a(x, c~)`` (encoder only, float);
* prior: hyperprior ``z`` plus ``c~`` at 1/16 -> mean and log-scale of ``y`` (exact);
* context update ``c_t = c~ + g_c(y_hat, c~)`` (exact), and the picture ``x_hat = g_d(c_t)``
  (float, display only: nothing downstream depends on it). The update is residual and its
  last layer starts at zero, so an untrained model already shows the motion-compensated
  previous frame; training learns what the latent must add.

An I-frame's decoded intra latent starts the chain: ``c_0 = g_i(y_hat_intra)`` (exact).
The display transform has the shape of the intra synthesis' last three layers, so it can
start from them (:meth:`ConditionalP.init_display_from`).

``pixel_ref`` models also show the previous *picture*, moved by the block motion (whole
pixels: a copy; ``subpel`` 4 models: quarter pixels, bilinear, rounded to 8 bits): the
display gives its own picture ``r``, a per-pixel weight ``m`` and a correction ``d``, and
shows ``(1 - m) * r + m * (moved + d)``; the analysis sees the moved picture beside the
frame. ``m`` starts at 1/2 (the mean of two pictures of the same frame; a start near 0 left
it there: Adam moves a bias by about the learning rate per step) and ``d`` at 0.
Why: a 64-channel context at 1/8 cannot hold an I-frame's detail, so without it every chain
fell to a quality ceiling (docs/models.md, "The conditional path's ceiling"): on `tree` at
q=1 the P-frames showed 27 dB at 0.5 bpp while the I-frame block-copied alone showed 29 dB.
Pictures still feed nothing the probabilities depend on, so the decoder cannot drift; only
the display becomes a chain (each picture waits for the previous one).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from lvc.codec.motion import warp
from lvc.entropy.priors import FactorizedDensity, gaussian_likelihood, lower_bound, ste_round
from lvc.models.latent import SCALE_MIN, interp_levels
from lvc.models.layers import SimpleGDN, conv, deconv

CONTEXT_SCALE = 8  # the context lives at 1/8 of the frame resolution
PIXEL_OUT = 7  # a pixel_ref display's outputs: its picture (3), the weight (1), the correction (3)


@dataclass(frozen=True)
class ConditionalConfig:
    M: int = 96  # P latent channels (1/16)
    C: int = 64  # context channels (1/8); 64 lets the display start from the intra synthesis
    N: int = 64  # analysis width
    Nh: int = 64  # side-information channels (1/64)
    intra_M: int = 128  # the intra model's latent channels
    levels: int = 8  # quality levels (gain vectors), as the intra model's
    block: int = 16  # motion block size in pixels
    pixel_ref: bool = False  # the display also shows the previous picture, moved (module docstring)
    subpel: int = 1  # motion vectors in 1/subpel pixels: 1 (whole pixels) or 4 (quarter pixels)
    skip: bool = False  # the update also adds a linear map of the latent to the context (``update``)

    def __post_init__(self) -> None:
        if self.subpel not in (1, 2, 4):
            raise ValueError(f"motion precision 1/{self.subpel} pixel is not one of 1, 1/2, 1/4")
        if self.block not in (8, 16, 32, 64):  # whole context pixels per block, whole blocks per padded frame
            raise ValueError(f"motion block size {self.block} is not one of 8, 16, 32, 64")
        if min(self.M, self.C, self.N, self.Nh, self.intra_M) < 1 or self.levels < 2:
            raise ValueError("channel counts must be positive and there must be at least 2 quality levels")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ConditionalConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def blend(out: torch.Tensor, moved: torch.Tensor | None) -> torch.Tensor:
    """The picture from a display's output (N, 3 or PIXEL_OUT, H, W): a pixel_ref display's
    own picture (channels 0-2) and the moved previous picture plus the correction (4-6),
    weighted by the sigmoid of channel 3; without ``moved``, its own picture alone."""
    if out.shape[1] == 3 or moved is None:
        return out[:, :3]
    r = out[:, :3]
    return r + torch.sigmoid(out[:, 3:4]) * (moved + out[:, 4:7] - r)


class ConditionalP(nn.Module):
    def __init__(self, cfg: ConditionalConfig) -> None:
        super().__init__()
        self.cfg = cfg
        m, c, n, nh = cfg.M, cfg.C, cfg.N, cfg.Nh
        # exact path (convs + ReLU): intra latent -> context; context update; prior
        # (1/16 -> 1/8 goes through a 1x1 convolution to four phases and a pixel shuffle, which
        # is an exact permutation; every Sequential here freezes to an IntSynthesis as it is.)
        self.g_i_up = nn.Sequential(conv(cfg.intra_M, 4 * c, 1, 1), nn.ReLU())
        self.g_i = nn.Sequential(conv(c, c, 3, 1), nn.ReLU(), conv(c, c, 3, 1))
        self.g_c_up = nn.Sequential(conv(m, 4 * c, 1, 1))
        self.g_c = nn.Sequential(conv(2 * c, c, 3, 1), nn.ReLU(), conv(c, c, 3, 1), nn.ReLU(), conv(c, c, 3, 1))
        nn.init.zeros_(self.g_c[-1].weight)
        nn.init.zeros_(self.g_c[-1].bias)
        if cfg.skip:  # starts at zero, so a model grown from one without it is unchanged at first
            self.g_c_skip = nn.Sequential(conv(m, 4 * c, 1, 1))
            nn.init.zeros_(self.g_c_skip[0].weight)
            nn.init.zeros_(self.g_c_skip[0].bias)
        self.ctx_down = nn.Sequential(conv(c, c, 3, 2), nn.ReLU())
        self.h_s = nn.Sequential(deconv(nh, nh), nn.ReLU(), deconv(nh, nh), nn.ReLU())
        self.prior = nn.Sequential(conv(nh + c, 2 * c, 3, 1), nn.ReLU(), conv(2 * c, 2 * m, 3, 1))
        # encoder only (float)
        pix_in = 6 if cfg.pixel_ref else 3  # the frame, and the moved previous picture
        self.g_a_pix = nn.Sequential(conv(pix_in, n), SimpleGDN(n), conv(n, n), SimpleGDN(n), conv(n, n))
        self.g_a = nn.Sequential(conv(n + c, n, 3, 1), SimpleGDN(n), conv(n, m))
        self.h_a = nn.Sequential(conv(m, nh, 3, 1), nn.LeakyReLU(), conv(nh, nh), nn.LeakyReLU(), conv(nh, nh))
        self.z_density = FactorizedDensity(nh)
        # display only (float)
        self.g_d = nn.Sequential(deconv(c, 64), SimpleGDN(64, inverse=True), deconv(64, 64),
                                 SimpleGDN(64, inverse=True), deconv(64, PIXEL_OUT if cfg.pixel_ref else 3))
        if cfg.pixel_ref:  # the moved picture unseen by the analysis at first; weight 1/2, no correction
            with torch.no_grad():
                self.g_a_pix[0].weight[:, 3:].zero_()
                self.g_d[-1].weight[:, 3:].zero_()
                self.g_d[-1].bias[3:].zero_()
        self.log_gain = nn.Parameter(torch.zeros(cfg.levels, m))
        self.log_inv_gain = nn.Parameter(torch.zeros(cfg.levels, m))

    def init_display_from(self, g_s: nn.Sequential) -> None:
        """Start the display transform from the intra synthesis' last three layers (same shapes)."""
        for dst, src in zip(self.g_d, list(g_s)[2:], strict=True):
            dst.load_state_dict(src.state_dict())

    def show(self, ctx: torch.Tensor, moved: torch.Tensor | None = None) -> torch.Tensor:
        """The picture of a context; ``pixel_ref`` models blend in ``moved``, the previous
        picture moved by this frame's motion (without it, e.g. an I-frame's context: the
        display's own picture, what the context alone holds)."""
        return blend(self.g_d(ctx), moved)

    # ---- pieces the codec runs separately ---------------------------------------------
    def intra_context(self, y_hat_intra: torch.Tensor) -> torch.Tensor:
        """Context from an I-frame's decoded (un-gained) intra latent."""
        return self.g_i(F.pixel_shuffle(self.g_i_up(y_hat_intra), 2))

    def prior_params(self, z_hat: torch.Tensor, ctx_w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_scale = self.prior(torch.cat([self.h_s(z_hat), self.ctx_down(ctx_w)], 1)).chunk(2, 1)
        return mean, log_scale

    def update(self, y_hat: torch.Tensor, ctx_w: torch.Tensor) -> torch.Tensor:
        """The next context from this frame's decoded (un-gained) latent and the warped context.
        ``skip`` models add a linear map of the latent too: through the three convolutions
        alone, no latent (free of any rate) showed a PC frame more than 0.6-4.6 dB above what
        the codec reached, where a latent twice as large on a linear path bounded 2-5 dB more
        (docs/models.md, "Session 34")."""
        ctx = ctx_w + self.g_c(torch.cat([F.pixel_shuffle(self.g_c_up(y_hat), 2), ctx_w], 1))
        if self.cfg.skip:
            ctx = ctx + F.pixel_shuffle(self.g_c_skip(y_hat), 2)
        return ctx

    # ---- training ------------------------------------------------------------------
    def forward(self, x: torch.Tensor, ctx: torch.Tensor, mv: torch.Tensor, q: torch.Tensor,
                previous: torch.Tensor | None = None) -> dict:
        """One P-frame, noisy proxy: ``x`` (B, 3, H, W) in [0, 1], the previous context, block
        motion ``mv`` (B, hb, wb, 2) in ``1/subpel`` pixels, qualities ``q`` (B,) in [0, 1]; ``pixel_ref``
        models also take the previous picture."""
        b, _, h, w = x.shape
        ctx_w = warp(ctx, mv, self.cfg.block, CONTEXT_SCALE, self.cfg.subpel)
        moved = None
        if self.cfg.pixel_ref:
            if previous is None:
                raise ValueError("a pixel_ref model needs the previous picture")
            moved = warp(previous, mv, self.cfg.block, 1, self.cfg.subpel)
            if self.cfg.subpel > 1:  # the codec's moved picture is rounded to 8 bits
                moved = ste_round(moved * 255) / 255
            x = torch.cat([x, moved], 1)
        y = self.g_a(torch.cat([self.g_a_pix(x), ctx_w], 1))
        y = y * torch.exp(interp_levels(self.log_gain, q))[:, :, None, None]
        z = self.h_a(y)
        z_noisy = z + torch.empty_like(z).uniform_(-0.5, 0.5) if self.training else torch.round(z)
        z_lik = self.z_density.likelihood(z_noisy)
        mean, log_scale = self.prior_params(ste_round(z), ctx_w)
        scale = lower_bound(torch.exp(log_scale), SCALE_MIN)
        y_noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5) if self.training else torch.round(y - mean) + mean
        y_lik = gaussian_likelihood(y_noisy, mean, scale)
        # the inverse gain interpolates linearly between levels, as the frozen model's
        # fixed-point gains do (lvc.models.inter_frozen), not log-linearly
        y_hat = (ste_round(y - mean) + mean) * interp_levels(torch.exp(self.log_inv_gain), q)[:, :, None, None]
        ctx_new = self.update(y_hat, ctx_w)
        x_hat = self.show(ctx_new, moved)
        pixels = h * w
        bpp = (-torch.log2(y_lik).flatten(1).sum(1) - torch.log2(z_lik).flatten(1).sum(1)) / pixels
        return {"x_hat": x_hat, "ctx": ctx_new, "bpp": bpp}

    def aux_loss(self) -> torch.Tensor:
        return self.z_density.quantile_loss()
