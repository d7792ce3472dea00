"""Encoder presets: how hard the sequence encoder (:mod:`lvc.codec.sequence`) looks, and what
a still image's coding may spend. Every preset writes the same syntax; decoding does not
depend on it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lvc.codec.intra_rdo import INTRA_PENALTY, INTRA_PENALTY_SLOW

P_DEADZONE = 0.15  # chosen on a training clip, not the benchmark clips (docs/models.md)

# A still image is coded once and has no frame rate to keep up with, so the default preset
# spends seconds refining its latent (lvc.codec.refine; docs/models.md, "Still images at the
# default preset"); video frames at medium are not refined (issue 5's 10 fps at 416x240).
# Its time grows with the pixels, so beyond STILL_REFINE_PIXELS medium takes fewer steps
# (the same total work) and none above 5x that (where the backward pass's memory, about
# 1 GB per megapixel, also grows).
STILL_REFINE_MEDIUM = 50
STILL_REFINE_PIXELS = 1 << 20
STILL_REFINE_MIN_SHARE = 5  # fewer than 1/5 of the steps left: none at all


@dataclass(frozen=True)
class Preset:
    """Encoder effort; see the module docstring."""

    decision: str  # "cut", "rate" or "rd"
    refine_steps: int
    still_refine_steps: int  # for a still image (one frame), up to still_refine_pixels
    bf16_analysis: bool
    p_deadzone: float  # P-frame residual dead zone (see lvc.codec.frame.quantise); 0 when refining
    skip_first: bool  # block skip also in the first PC frame after an I- or P-frame (lvc.codec.skip)
    still_refine_pixels: float = math.inf
    motion_keep: int = 0  # > 0: quarter-resolution motion search (lvc.codec.motion.estimate_motion's keep)
    # motion-only frames' sharp copies get a field of their own (lvc.codec.inter.SHARP_COPIES):
    # -2.6% on 8 training clips, -0.2% on the benchmark clips, but encoding at 416x240 drops
    # from 13.5 to 8.4-8.8 fps, below medium's 10 (docs/models.md, "Session 40")
    sharp_search: bool = False
    # motion-only frames may quarter blocks and choose filters per block (lvc.codec.copies; the
    # quarters searched around each block's vector): -5.7% on 8 training clips (docs/models.md,
    # "Session 41")
    quarters: bool = True
    # the residual layers' intra candidates' penalty in steps (lvc.codec.intra_rdo; None: no
    # intra macroblocks): -3.1% bits on 6 native-resolution clips, -0.6% on 8 training clips
    # (docs/models.md, "Session 43")
    intra_penalty: float | None = INTRA_PENALTY
    # how the residual layers choose their luma blocks' transform sizes (lvc.codec.residual_rdo's
    # TRANSFORM_SEARCHES; None: 8x8 only): on 6 native-resolution clips "estimate" -1.8% bits,
    # "search" -2.1% at 2-3x the added time (docs/models.md, "Session 44")
    transform_search: str | None = "estimate"

    def still_steps(self, pixels: int) -> int:
        """Refinement steps for a still image of ``pixels``: the preset's, scaled down beyond
        ``still_refine_pixels`` (the same total work), none where under a fifth would remain."""
        if pixels <= self.still_refine_pixels:
            return self.still_refine_steps
        steps = int(self.still_refine_steps * self.still_refine_pixels // pixels)
        return steps if STILL_REFINE_MIN_SHARE * steps >= self.still_refine_steps else 0

    @property
    def still_policy(self) -> str:
        """:meth:`still_steps` as text: benchmark caches key on it."""
        if math.isinf(self.still_refine_pixels):
            return str(self.still_refine_steps)
        return f"{self.still_refine_steps}@{int(self.still_refine_pixels)}px/fifth"


PRESETS = {"fast": Preset("cut", 0, 0, True, P_DEADZONE, False, motion_keep=3, quarters=False, intra_penalty=None,
                          transform_search=None),
           "medium": Preset("rate", 0, STILL_REFINE_MEDIUM, True, P_DEADZONE, False, STILL_REFINE_PIXELS),
           "slow": Preset("rd", 200, 200, False, 0.0, True, sharp_search=True, intra_penalty=INTRA_PENALTY_SLOW,
                          transform_search="search")}
