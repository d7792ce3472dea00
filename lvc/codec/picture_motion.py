"""Copies' vectors polished on the decoder's picture (encoder only).

A motion-only frame copies the decoder's previous picture, while its motion is searched
between input frames, ahead of time on the lookahead thread (:mod:`lvc.codec.lookahead`).
The two references differ by what coding lost, and along a chain of copies the picture's
content sits where earlier quarter-pixel vectors put it, not quite where the input frame
has it. Measured on lvc's own copies (``medium``, q = 0.17, session 42): a further shift of
up to a pixel per 16x16 block raised their luma PSNR against the source by 0.3-1.2 dB, and
x264 coding lvc's copied pictures gained 6-31% from its sub-pixel search alone.

So the field keeps its search on input frames (smooth and robust: the whole search on the
picture was +0.44% bits, docs/models.md, "Session 40"), and the blocks' vectors, then the
quarters' (moved with their block), take one more quarter-pixel step on the picture:
-4.9% bits on 8 training clips, -1.3% on 5 held-out ones. The picture exists only once the
previous frame is coded, so this runs on the coding thread.
"""

from __future__ import annotations

import numpy as np
import torch

from lvc.codec.frame import _pad
from lvc.codec.motion import LENGTH_COST, SEARCH, _subpel_refine, frame_luma
from lvc.codec.partition import QUARTER, polish_quarters, quarter_reach
from lvc.codec.phases import PhasePlanes


def polish(picture: np.ndarray, frame: np.ndarray, mv: torch.Tensor, fine: torch.Tensor | None, block: int,
           frac: int, rate_weight: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(the blocks' vectors, the quarters' or None) of ``frame`` copied from ``picture``
    (8-bit RGB) for ``block``-pixel blocks: the searched vectors ``mv`` (hb, wb, 2; ``1/frac``
    pixels, ``frac`` > 1) each moved by at most a step of ``1/frac`` pixel, and the quarters
    ``fine`` (2 hb, 2 wb, 2, or None) moved with their block, then by such a step of their
    own; every step charged ``rate_weight`` per bit as the search charges it. (``slow``'s
    sharp field is not polished: its copy competes unpolished.)"""
    ref, cur = _pad(frame_luma(picture)), _pad(frame_luma(frame))
    # both steps' planes, padded for the quarters too (moved by at most a step with their block, one of their own)
    least = 0 if fine is None else quarter_reach(fine.abs() + 2, frac)
    phases = PhasePlanes(ref, frac, least)
    new = _subpel_refine(phases, cur, block, mv[None], frac, SEARCH, LENGTH_COST, rate_weight, first_step=1)[0]
    if fine is None:
        return new, None
    fine = fine + (new - mv).repeat_interleave(QUARTER, 0).repeat_interleave(QUARTER, 1)  # with their block
    return new, polish_quarters(ref, cur, new, fine, block, frac, rate_weight, phases)
