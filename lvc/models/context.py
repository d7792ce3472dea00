"""The spatial context prior: checkerboard coding of a frame's latent, still parallel.

The latent is split like a checkerboard (He et al., "Checkerboard context model for
efficient learned image compression", CVPR 2021): the *anchor* half is coded with the
hyperprior alone; then a correction network (:mod:`lvc.models.correction`) sees the
decoded anchors and corrects the hyperprior's mean and scale for the other half. Both
halves decode as whole tensors (two passes instead of a serial autoregressive scan),
which keeps decoding fast on a CPU. The correction is trained either on frozen intra
latents (``lvc train-ctx``), so it can be added to, and retrained for, any hyperprior
model, or with the transforms (``lvc train --context``), so the latent itself learns to be
predictable from its anchors.
"""

from __future__ import annotations

import torch

from lvc.entropy.priors import ste_round
from lvc.models.correction import Correction


def anchor_mask(h: int, w: int) -> torch.Tensor:
    """(1, 1, h, w) bool: the anchors, the elements with ``(row + col)`` even."""
    r = torch.arange(h)[:, None]
    c = torch.arange(w)[None, :]
    return ((r + c) % 2 == 0)[None, None]


class SpatialContext(Correction):
    """Correction conditioned on the decoded anchors (zero at the other half)."""

    def checkerboard(self, y: torch.Tensor, mu: torch.Tensor,
                     log_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Means and log-scales of the whole latent as the codec uses them: the hyperprior's
        at the anchors, corrected from the quantised anchors elsewhere. The anchors are
        quantised exactly as the codec does (``mu + round(y - mu)``), so the condition is what
        the decoder holds; the rounding passes gradients straight through, for training
        jointly with the transforms."""
        anchors = anchor_mask(*y.shape[-2:]).to(y.device)
        y_hat = mu + ste_round(y - mu)
        mean_c, log_scale_c = self.corrected(mu, log_scale, y_hat * anchors.to(y.dtype))
        return torch.where(anchors, mu, mean_c), torch.where(anchors, log_scale, log_scale_c)

    def forward(self, y: torch.Tensor, mu: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        """Noisy-proxy bits per sample (B,) of the whole latent ``y`` (gained domain)."""
        return self.rate(y, *self.checkerboard(y, mu, log_scale))
