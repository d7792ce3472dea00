"""The P-frame model: a learned temporal correction of latent-residual coding.

A P-frame codes ``y_t - r``, the residual against the previous frame's decoded latent
``r``, with the intra hyperprior: side information from the residual predicts a mean
``mu`` and log-scale ``s`` per element. On top of that, a small network sees ``mu``,
``s`` and ``r`` itself and corrects both:

    mean = r + mu + d_mu(mu, s, r),    log_scale = s + d_s(mu, s, r)

so it can learn where the reference is less (or more) reliable than the hyperprior
alone assumes: moving edges, occlusions, noise. The network is the shared correction of
:mod:`lvc.models.correction`: untrained, a P-frame *is* residual coding.

A first version predicted everything from ``[y_t, r]`` with its own side information
(DCVC-style conditional coding); after 3,000 steps it cost 5% more than plain residual
coding on the benchmark clips, so the correction form replaced it.
"""

from __future__ import annotations

import torch

from lvc.models.correction import Correction, CorrectionConfig

TemporalConfig = CorrectionConfig  # checkpoints store it as ``temporal_config``


class TemporalPrior(Correction):
    """Training-time correction network; coding goes through its integer freeze."""

    def params(self, mu: torch.Tensor, log_scale: torch.Tensor, ref: torch.Tensor):
        """Mean (of ``y_t``) and log-scale from the residual prior (``mu``, ``log_scale``) and ``ref``."""
        mean, scale = self.corrected(mu, log_scale, ref)
        return ref + mean, scale

    def forward(self, y: torch.Tensor, ref: torch.Tensor, mu: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        """Noisy-proxy bits of ``y`` per sample (B,), all inputs in the gained latent domain."""
        return self.rate(y, *self.params(mu, log_scale, ref))
