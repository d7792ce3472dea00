"""Freezing the conditional P model (:mod:`lvc.models.conditional`) for coding.

Everything the decoder's next frame depends on runs in exact integers: the context from an
I-frame's latent, the warped context, the prior, the context update. Gains enter as
fixed-point factors (linear interpolation between levels, in integers), so no float
function such as ``exp`` can differ between machines. The analysis (encoder only) and the
display transform (nothing depends on its pixels) stay float.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from lvc.entropy.intnet import ACT_LIMIT, IntSynthesis
from lvc.entropy.tables import CdfTables, factorized_tables, quantize_pmf
from lvc.models.conditional import ConditionalConfig, ConditionalP
from lvc.models.latent import interp_fixed

GAIN_FRAC_BITS = 16
EXACT_NETS = ("g_i_up", "g_i", "g_c_up", "g_c", "ctx_down", "h_s", "prior")
SKIP_NET = "g_c_skip"  # exact too, in ``skip`` models only
FLOAT_NETS = ("g_a_pix", "g_a", "h_a", "g_d")
MV_RANGE = 64  # motion-vector residuals are coded in [-MV_RANGE, MV_RANGE] pixels (escape beyond)
MV_LIMIT = 64  # |vector component| in pixels a decoder accepts (syntax, not the encoder's search range)
MV_SCALES = (0.15, 0.4, 1.0, 2.5, 6.0)  # Laplacian scales (pixels) of the residual tables; one per frame
# Quarter-pixel residuals are mostly 0 (a block keeps its predictor's vector) with a wide
# tail, which no Laplacian fits: rows of P(0) and a Laplacian's scale (quarter pixels) for
# the rest, fitted to 256 searched fields of 8 training clips (docs/models.md, "Session 30"):
# 1.57 bits per component there, against 1.99 for the Laplacians above scaled by 4.
MV_SPIKES = ((0.64, 3.0), (0.68, 7.4), (0.82, 1.37), (0.88, 3.4), (0.98, 2.7))


def gains_fixed(log_gain: torch.Tensor) -> torch.Tensor:
    return torch.round(torch.exp(log_gain.detach().double()) * (1 << GAIN_FRAC_BITS)).long()


def scale_fixed(latent_fx: torch.Tensor, gains_fx: torch.Tensor, q: int, q_max: int) -> torch.Tensor:
    """``latent_fx`` times the fixed-point gain at quality ``q``, floored: exact everywhere."""
    g = interp_fixed(gains_fx, q, q_max)[None, :, None, None]
    return torch.div(latent_fx * g, 1 << GAIN_FRAC_BITS, rounding_mode="floor")


def mv_table(subpel: int = 1) -> CdfTables:
    """One row per Laplacian scale in ``MV_SCALES`` (the encoder picks the cheapest per frame:
    still scenes cost a fraction of a bit per vector, pans stay cheap too), or with quarter
    pixels per ``MV_SPIKES`` entry, and a last, uniform row for that choice; residuals in
    ``1/subpel`` pixels."""
    n = MV_RANGE * subpel
    r = np.arange(-n, n + 1)
    if subpel == 4:
        pmfs = []
        for p0, b in MV_SPIKES:
            tail = np.where(r == 0, 0.0, np.exp(-np.abs(r) / b))
            pmfs.append(np.where(r == 0, p0, (1 - p0) * tail / tail.sum()))
    else:
        pmfs = [np.exp(-np.abs(r) / b) / np.exp(-np.abs(r) / b).sum() for b in np.array(MV_SCALES) * subpel]
    rows = [quantize_pmf(p, 1e-4) for p in pmfs]
    rows.append(quantize_pmf(np.full(len(MV_SCALES), 1 / len(MV_SCALES)), 1e-4))
    return CdfTables.from_rows(rows, [-n] * len(MV_SCALES) + [0])


@dataclass(frozen=True)
class FrozenInter:
    config: ConditionalConfig
    exact: dict[str, IntSynthesis]
    g_a_pix: nn.Module
    g_a: nn.Module
    h_a: nn.Module
    g_d: nn.Module
    log_gain: torch.Tensor  # (levels, M) float: the encoder's
    inv_gain_fx: torch.Tensor  # (levels, M) int64, GAIN_FRAC_BITS
    intra_inv_gain_fx: torch.Tensor  # (levels, intra M) int64
    z_tables: CdfTables
    mv_tables: CdfTables
    latent_space: str  # the intra latent space its I-frame contexts come from

    # ---- exact (both sides) --------------------------------------------------------
    def intra_context(self, latent_fx: torch.Tensor, q: int, q_max: int) -> torch.Tensor:
        """Context (fixed point) from an I-frame's decoded fixed-point intra latent."""
        x = self.exact["g_i_up"].run_fixed(scale_fixed(latent_fx, self.intra_inv_gain_fx, q, q_max))
        return self.exact["g_i"].run_fixed(F.pixel_shuffle(x, 2))

    def prior(self, z_hat: torch.Tensor, ctx_w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fixed-point mean and log-scale of the P latent."""
        h = self.exact["h_s"](z_hat)
        d = self.exact["ctx_down"].run_fixed(ctx_w)
        mean, log_scale = self.exact["prior"].run_fixed(torch.cat([h, d], 1)).chunk(2, 1)
        return mean, log_scale

    def update(self, y_fx: torch.Tensor, ctx_w: torch.Tensor, q: int, q_max: int,
               keep: torch.Tensor | None = None) -> torch.Tensor:
        """The next context from this frame's decoded fixed-point latent and the warped context;
        where ``keep`` (context positions, bool: skipped blocks) is set, the warped context
        itself, and the update's convolutions run only where they are read
        (:meth:`IntSynthesis.run_fixed_at`: the same integers, less work)."""
        y = scale_fixed(y_fx, self.inv_gain_fx, q, q_max)
        u = self.exact["g_c_up"].run_fixed(y)
        x = torch.cat([F.pixel_shuffle(u, 2), ctx_w], 1)
        g_c = self.exact["g_c"]
        ctx = ctx_w + (g_c.run_fixed(x) if keep is None else g_c.run_fixed_at(x, ~keep))
        if self.config.skip:
            ctx = ctx + F.pixel_shuffle(self.exact[SKIP_NET].run_fixed(y), 2)
        ctx = ctx.clamp(-ACT_LIMIT, ACT_LIMIT)
        return ctx if keep is None else torch.where(keep, ctx_w, ctx)


    def update_float(self, latent: torch.Tensor, ctx_w: torch.Tensor) -> torch.Tensor:
        """Differentiable float stand-in for :meth:`update` (real-valued, the latent already
        times the inverse gain): what encoder-side refinement differentiates."""
        u = self.exact["g_c_up"].run_float(latent)
        ctx = ctx_w + self.exact["g_c"].run_float(torch.cat([F.pixel_shuffle(u, 2), ctx_w], 1))
        if self.config.skip:
            ctx = ctx + F.pixel_shuffle(self.exact[SKIP_NET].run_float(latent), 2)
        return ctx


def exact_nets(cfg: ConditionalConfig) -> tuple[str, ...]:
    """The exact networks a model of shape ``cfg`` has (frozen and rebuilt by name)."""
    return (*EXACT_NETS, SKIP_NET) if cfg.skip else EXACT_NETS


def freeze_inter(model: ConditionalP, latent_space: str, intra_log_inv_gain: torch.Tensor) -> dict:
    """The model-file section of a trained conditional P model (with the intra model's inverse
    gains in fixed point: I-frame contexts need them exactly)."""
    model = model.eval()
    with torch.no_grad():
        exact = {k: IntSynthesis.from_float(getattr(model, k)).to_state() for k in exact_nets(model.cfg)}
        return {"config": model.cfg.to_dict(), "latent_space": latent_space, "exact": exact,
                "float": {k: {n: v.half() for n, v in getattr(model, k).state_dict().items()} for k in FLOAT_NETS},
                "log_gain": model.log_gain.detach().clone(), "inv_gain_fx": gains_fixed(model.log_inv_gain),
                "intra_inv_gain_fx": gains_fixed(intra_log_inv_gain),
                "z_tables": factorized_tables(model.z_density).to_state(),
                "mv_tables": mv_table(model.cfg.subpel).to_state()}


def build_inter(state: dict) -> FrozenInter:
    cfg = ConditionalConfig.from_dict(state["config"])
    shell = ConditionalP(cfg).requires_grad_(False)
    for k in FLOAT_NETS:
        getattr(shell, k).load_state_dict({n: v.float() for n, v in state["float"][k].items()})
    return FrozenInter(cfg, {k: IntSynthesis.from_state(state["exact"][k]) for k in exact_nets(cfg)},
                       shell.g_a_pix.eval(), shell.g_a.eval(), shell.h_a.eval(), shell.g_d.eval(),
                       state["log_gain"].float(), state["inv_gain_fx"].long(), state["intra_inv_gain_fx"].long(),
                       CdfTables.from_state(state["z_tables"]), CdfTables.from_state(state["mv_tables"]),
                       state["latent_space"])

