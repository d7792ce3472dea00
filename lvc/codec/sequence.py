"""Frame-sequence coding: frame types, groups of pictures, the decoder's reference state.

The encoder keeps exactly the decoder's reconstructions as references, so decoding can
never drift. Until P-frame models ship, every frame is coded intra; the intra period is
already recorded in the stream so the format does not change when they do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lvc.bitstream.container import FRAME_I, FRAME_P, FrameUnit
from lvc.codec.intra import IntraCodec
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
    def __init__(self, model: FrozenModel, quality: int, intra_period: int, refine_steps: int = 0) -> None:
        self.intra = IntraCodec(model, refine_steps)
        self.quality = quality
        self.intra_period = intra_period
        self.index = 0

    def encode(self, frame: np.ndarray) -> CodedFrame:
        r = self.intra.encode(frame, self.quality)
        self.index += 1
        return CodedFrame(FRAME_I, self.quality, r.payload, r.recon, r.estimated_bits)


class SequenceDecoder:
    def __init__(self, model: FrozenModel, width: int, height: int, where: str) -> None:
        self.intra = IntraCodec(model)
        self.width, self.height = width, height
        self.where = where
        self.reference: np.ndarray | None = None

    def decode(self, unit: FrameUnit) -> np.ndarray:
        fwhere = f"{self.where}: frame {unit.index}"
        if unit.frame_type != FRAME_I:
            kind = "P-frames are" if unit.frame_type == FRAME_P else f"frame type {unit.frame_type} is"
            raise BitstreamError(f"{kind} not supported by this decoder", fwhere, "upgrade lvc")
        try:
            out = self.intra.decode(unit.payload, self.height, self.width, unit.quality)
        except Exception as e:  # noqa: BLE001 - any failure inside a CRC-valid payload means a bad stream
            raise BitstreamError(f"payload does not decode ({e.__class__.__name__}: {e})", fwhere,
                                 "the file is corrupted or was written by another encoder") from None
        self.reference = out
        return out
