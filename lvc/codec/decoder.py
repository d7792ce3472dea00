"""Decoding a frame sequence: the reference state (latent, context, picture) carried from
frame to frame, each frame unit checked against it. The encoder's side, with the frame-type
decisions, is :mod:`lvc.codec.sequence`; both hold the same state, so decoding never drifts.
"""

from __future__ import annotations

import numpy as np
import torch

from lvc.bitstream.container import (
    CONDITIONAL,
    FRAME_I,
    FRAME_IL,
    FRAME_P,
    FRAME_PQ,
    FRAME_PS,
    LATENT_FREE,
    MOTION_ONLY_SINCE,
    FrameUnit,
)
from lvc.bitstream.syntax import COLOUR_RGB, COLOUR_YUV420
from lvc.codec.colour import Planes, PlanesPicture
from lvc.codec.frame import FrameCodec
from lvc.codec.grey import GreyPicture
from lvc.codec.inter import InterCodec
from lvc.codec.lazycontext import LazyContext
from lvc.codec.pending import Pending
from lvc.codec.residual import ResidualCoder
from lvc.codec.residual_picture import ResidualPicture, flat_picture
from lvc.errors import BitstreamError
from lvc.models.frozen import FrozenModel


class SequenceDecoder:
    def __init__(self, model: FrozenModel, width: int, height: int, where: str, workers: int | None = None,
                 colour_format: int = COLOUR_RGB) -> None:
        self.codec = FrameCodec(model, workers=workers)
        self.inter = InterCodec(model, workers) if model.inter is not None else None
        self.width, self.height = width, height
        self.where = where
        self.reference: torch.Tensor | None = None
        self.reference_quality: int | None = None
        self._context = LazyContext(self.inter) if self.inter is not None else None  # the next FRAME_PC's
        self.picture = None  # the last frame's picture (pending): FRAME_PS copies blocks from it
        self._residual = ResidualCoder()
        self.colour_format = colour_format  # COLOUR_YUV420: pictures are shown as planes (lvc.codec.colour)

    @property
    def context(self) -> torch.Tensor | None:
        """The context the next conditional frame would be decoded against (derived now if
        the last frame was an I- or P-frame)."""
        return self._context.get() if self._context is not None else None

    def decode(self, unit: FrameUnit) -> np.ndarray | Planes:
        """The unit's shown picture: RGB, or in colour format 1 Y, Cb, Cr planes."""
        return self.decode_async(unit).result()

    def advance(self, unit: FrameUnit) -> None:
        """Entropy-decode ``unit`` without synthesising it: keeps the prediction chain for
        frames a caller skips (any frame type)."""
        self._decode(unit, synthesize=False)

    def close(self) -> None:
        """Stop the synthesis workers (pictures not yet collected are dropped)."""
        self.codec.synthesis.close()
        if self.inter is not None:
            self.inter.close()

    def decode_latent(self, unit: FrameUnit) -> torch.Tensor:
        """Entropy-decode ``unit`` without synthesising it: its fixed-point latent."""
        if unit.frame_type in LATENT_FREE:
            raise BitstreamError("conditional P-frames and IL frames carry no intra latent to analyse",
                                 f"{self.where}: frame {unit.index}", "decode the file to a video and analyse that")
        self._decode(unit, synthesize=False)
        return self.reference

    def decode_async(self, unit: FrameUnit) -> Pending:
        """Entropy-decode ``unit`` now (errors raise here); its picture arrives in the future
        (a residual layer is decoded with it, and a damaged one raises from ``result()``):
        RGB, or in colour format 1 the Y, Cb, Cr planes."""
        out = self._decode(unit, synthesize=True)
        if self.colour_format == COLOUR_YUV420:
            return PlanesPicture(out, unit.grey)
        return GreyPicture(out) if unit.grey else out

    def _decode(self, unit: FrameUnit, synthesize: bool) -> Pending:
        fwhere = f"{self.where}: frame {unit.index}"
        if unit.frame_type in CONDITIONAL:
            return self._decode_conditional(unit, fwhere, synthesize)
        if unit.frame_type == FRAME_IL:
            return self._decode_layer_intra(unit, fwhere)
        if unit.frame_type not in (FRAME_I, FRAME_P):
            raise BitstreamError(f"frame type {unit.frame_type} is not supported by this decoder", fwhere,
                                 "upgrade lvc")
        reference = None
        if unit.frame_type == FRAME_P:
            if self.reference is None:
                raise BitstreamError("P-frame without a preceding frame to predict from", fwhere,
                                     "the file is corrupted or was cut in the middle of a group")
            if unit.quality != self.reference_quality:
                raise BitstreamError("P-frame quality differs from its reference's", fwhere, "the file is corrupted")
            reference = self.reference
        # a failed frame leaves nothing to predict from
        self.reference = self.reference_quality = self.picture = None
        if self._context is not None:
            self._context.set(None)
        try:
            out, latent = self.codec.decode_async(unit.payload, self.height, self.width, unit.quality, reference,
                                                  synthesize)
        except Exception as e:  # noqa: BLE001 - any failure inside a CRC-valid payload means a bad stream
            raise BitstreamError(f"payload does not decode ({e.__class__.__name__}: {e})", fwhere,
                                 "the file is corrupted or was written by another encoder") from None
        out = self._with_residual(unit, out, fwhere)
        self.reference, self.reference_quality, self.picture = latent, unit.quality, out
        if self._context is not None:
            self._context.from_intra(latent, unit.quality)
        return out

    def _decode_layer_intra(self, unit: FrameUnit, fwhere: str) -> Pending:
        """An IL frame (lvc.codec.layer_intra): its layer over a flat picture; the context a
        zero latent starts, and no latent to predict a P-frame from."""
        if self.colour_format != COLOUR_YUV420 or unit.residual is None:  # (the reader refuses these)
            raise BitstreamError("IL frame without a colour format 1 residual layer", fwhere, "the file is corrupted")
        self.picture = out = self._with_residual(unit, flat_picture(self.height, self.width), fwhere)
        self.reference, self.reference_quality = None, unit.quality
        if self._context is not None:
            self._context.from_intra(self.inter.zero_latent(self.height, self.width), unit.quality)
        return out

    def _with_residual(self, unit: FrameUnit, out: Pending, fwhere: str) -> Pending:
        """``out`` plus the unit's residual layer, if it has one. The layer is decoded when
        the picture is composed (no probability depends on it), so a damaged layer raises
        its BitstreamError from ``result()``."""
        if unit.residual is None:
            return out
        section, h, w, coder, fmt = unit.residual, self.height, self.width, self._residual, self.colour_format
        tools = dict(with_intra=unit.intra, with_small=unit.small)
        return ResidualPicture(out, lambda: coder.decode(section, h, w, fwhere, fmt, **tools), h, w)

    def _decode_conditional(self, unit: FrameUnit, fwhere: str, synthesize: bool) -> Pending:
        if self.inter is None:
            raise BitstreamError("conditional P-frame, but the model has no conditional P section", fwhere,
                                 "the file is corrupted or needs another model")
        context = self._context.get()
        if context is None:
            raise BitstreamError("P-frame without a preceding frame to predict from", fwhere,
                                 "the file is corrupted or was cut in the middle of a group")
        self._context.set(None)
        self.reference = None
        copies = unit.frame_type in MOTION_ONLY_SINCE  # (every block copied)
        skip = copies or unit.frame_type == FRAME_PS
        previous, self.picture = (self.picture if skip or self.inter.pixel_ref else None), None
        if (skip or self.inter.pixel_ref) and previous is None:
            raise BitstreamError("conditional frame without a previous picture", fwhere, "the file is corrupted")
        try:
            out, next_context = self.inter.decode_async(unit.payload, self.height, self.width, unit.quality,
                                                        context, synthesize, previous, skip,
                                                        copies=copies, per_block=unit.frame_type == FRAME_PQ)
        except Exception as e:  # noqa: BLE001 - any failure inside a CRC-valid payload means a bad stream
            raise BitstreamError(f"payload does not decode ({e.__class__.__name__}: {e})", fwhere,
                                 "the file is corrupted or was written by another encoder") from None
        self._context.set(next_context)
        self.picture = out = self._with_residual(unit, out, fwhere)
        return out
