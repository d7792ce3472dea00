"""Frame-sequence coding: frame types, groups of pictures, the decoder's reference state.

P-frames code the latent residual against the previous frame's decoded latent, which
both sides hold in exact fixed point, so decoding never drifts. The encoder codes a
candidate frame both ways and keeps the one with the lower rate-distortion cost
``lambda * MSE + bpp``; a scene cut therefore becomes an I-frame by itself. Frames at
multiples of the intra period are always I-frames (random access).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lvc.bitstream.container import FRAME_I, FRAME_P, FrameUnit
from lvc.codec.frame import FrameCodec, FrameResult
from lvc.errors import BitstreamError
from lvc.models.frozen import QUALITY_MAX, FrozenModel


def quality_to_int(quality: float) -> int:
    if not 0.0 <= quality <= 1.0:
        raise ValueError(f"quality {quality} is outside [0, 1]")
    return round(quality * QUALITY_MAX)


@dataclass(frozen=True)
class CodedFrame:
    frame_type: int
    quality: int
    payload: bytes
    recon: np.ndarray
    estimated_bits: float


class SequenceEncoder:
    """``intra_period``: N > 0 forces an I-frame every N frames; 0 or -1: only the first."""

    def __init__(self, model: FrozenModel, quality: int, intra_period: int, refine_steps: int = 0) -> None:
        self.codec = FrameCodec(model, refine_steps)
        self.quality = quality
        self.intra_period = intra_period
        self.index = 0
        self.reference: torch.Tensor | None = None
        self.lmbda = self.codec._lambda(quality)

    def _forced_intra(self) -> bool:
        return self.reference is None or (self.intra_period > 0 and self.index % self.intra_period == 0)

    def _cost(self, frame: np.ndarray, r: FrameResult) -> float:
        mse = float(np.mean((r.recon.astype(np.float64) - frame) ** 2))
        return self.lmbda * mse + r.estimated_bits / (frame.shape[0] * frame.shape[1])

    def encode(self, frame: np.ndarray) -> CodedFrame:
        y, _ = self.codec.analyse(frame, self.quality)
        best, kind = self.codec.encode(frame, self.quality, y=y), FRAME_I
        if not self._forced_intra():
            p = self.codec.encode(frame, self.quality, reference=self.reference, y=y)
            if self._cost(frame, p) < self._cost(frame, best):
                best, kind = p, FRAME_P
        self.reference = best.latent
        self.index += 1
        return CodedFrame(kind, self.quality, best.payload, best.recon, best.estimated_bits)


class SequenceDecoder:
    def __init__(self, model: FrozenModel, width: int, height: int, where: str) -> None:
        self.codec = FrameCodec(model)
        self.width, self.height = width, height
        self.where = where
        self.reference: torch.Tensor | None = None
        self.reference_quality: int | None = None

    def decode(self, unit: FrameUnit) -> np.ndarray:
        fwhere = f"{self.where}: frame {unit.index}"
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
        self.reference = self.reference_quality = None  # a failed frame leaves nothing to predict from
        try:
            out, latent = self.codec.decode(unit.payload, self.height, self.width, unit.quality, reference)
        except Exception as e:  # noqa: BLE001 - any failure inside a CRC-valid payload means a bad stream
            raise BitstreamError(f"payload does not decode ({e.__class__.__name__}: {e})", fwhere,
                                 "the file is corrupted or was written by another encoder") from None
        self.reference, self.reference_quality = latent, unit.quality
        return out
