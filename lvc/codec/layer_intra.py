"""I-frames coded by the residual layer alone (frame type IL, format 1.9).

On native-resolution video the layer of a learned I-frame codes nearly every block again
(1,669 of 1,792 luma blocks on one 448x256 clip): the learned picture is a costly
prediction that the layer then mostly replaces. Coding the same frame against a flat grey
picture, every macroblock predicted from its neighbours (:mod:`lvc.codec.intra`), cost
3-30% fewer bits at equal PSNR-YUV on four clips (docs/models.md, "Session 45"). An IL
frame's picture is therefore the layer over ``FLAT`` grey
(:func:`lvc.codec.residual_picture.flat_picture`), without a latent: the context it
leaves is the one a zero latent starts (:meth:`lvc.codec.inter.InterCodec.zero_latent`), and
no latent-residual P-frame may follow it. The encoder codes each I-frame both ways and keeps
the cheaper by the layer's own cost, ``lambda_r / 3 * weighted SSE + bits`` (not grey
frames: their layers have no chroma, so no intra macroblocks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from lvc.codec import colour
from lvc.codec.residual import Residual
from lvc.codec.residual_picture import ResidualPicture, flat_picture
from lvc.codec.residual_rdo import YUV_CHROMA_WEIGHT, YUV_LUMA_WEIGHT, ResidualEncoder

if TYPE_CHECKING:
    from lvc.codec.pending import Pending

# The IL frame's layer lambda against the learned I-frame's (and the lambda both are weighed
# at): a finer I-frame pays for the frames that copy it. On 5 native-resolution clips, BD-rate
# PSNR-YUV against learned I-frames: 1: -3.2%, 1.5: -4.5%, 2: -4.4%; with the layer's weight
# ramp taken from the sequence's quality, 2 against 1.5: -1.06% on 6 such clips (3: -1.85%,
# with larger losses on some), -0.49% on 8 training clips, +0.23% on the 5 held-out clips
# (docs/models.md, "Session 45").
LAMBDA_SCALE = 2.0
_WEIGHTS = (YUV_LUMA_WEIGHT, YUV_CHROMA_WEIGHT, YUV_CHROMA_WEIGHT)


def layer_cost(planes: colour.Planes, shown: colour.Planes, lmbda_r: float, bits: float) -> float:
    """``lambda_r / 3 * SSE + bits`` of a picture shown as ``shown`` for the source ``planes``,
    each plane's squared error weighed as the layer's choices weigh it."""
    sse = sum(w * float(((s.astype(np.float64) - p) ** 2).sum()) for w, s, p in zip(_WEIGHTS, shown, planes,
                                                                                    strict=True))
    return lmbda_r / 3 * sse + bits


@dataclass(frozen=True)
class LayerFrame:
    """An I-frame as the layer alone codes it."""

    pending: ResidualPicture
    layer: Residual  # as coded (its unfiltered sums are the encoder's own)
    section: bytes
    bits: float
    tools: dict[str, bool]
    cost: float  # layer_cost of it


def code(encoder: ResidualEncoder, frame: np.ndarray, planes: colour.Planes, lmbda: float,
         quality: int) -> LayerFrame | None:
    """``frame`` (with chroma: a grey frame's layer has no chroma to predict) coded as an IL
    frame at the layer's ``lmbda`` and ``quality`` (as :meth:`ResidualEncoder.encode` takes
    them), every macroblock intra (:mod:`lvc.codec.intra_wavefront`); None where the layer
    codes nothing."""
    h, w = frame.shape[:2]
    base = flat_picture(h, w)
    coded = encoder.encode(frame, base.result(), lmbda, quality, planes, intra_everywhere=True)
    if coded is None:
        return None
    section, bits, r = coded
    pending = ResidualPicture(base, r, h, w)
    lmbda_r = encoder.weight_at(quality) * lmbda
    cost = layer_cost(planes, pending.planes(), lmbda_r, len(section) * 8)
    return LayerFrame(pending, r, section, bits, dict(intra=r.has_intra, small=r.has_small), cost)


def choose(encoder: ResidualEncoder, frame: np.ndarray, planes: colour.Planes, lmbda: float, quality: int,
           learned: Pending, learned_bits: float) -> LayerFrame | None:
    """``frame`` as an IL frame where that costs less than the learned I-frame shown as the
    pending picture ``learned`` for ``learned_bits`` (its payload and layer), else None;
    both at ``LAMBDA_SCALE`` times the layer's ``lmbda``."""
    lmbda = LAMBDA_SCALE * lmbda
    flat = code(encoder, frame, planes, lmbda, quality)
    if flat is None:
        return None
    shown = learned.planes() if isinstance(learned, ResidualPicture) else colour.shown_planes(learned.result())
    return flat if flat.cost < layer_cost(planes, shown, encoder.weight_at(quality) * lmbda, learned_bits) else None
