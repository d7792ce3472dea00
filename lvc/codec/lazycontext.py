"""The context a conditional frame is coded against, derived from an I- or P-frame's latent
only when a conditional frame asks for it (:mod:`lvc.codec.inter`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from lvc.codec.inter import InterCodec


class LazyContext:
    """The context the next conditional frame is coded against. After an I- or P-frame it
    is derived from that frame's latent (:meth:`InterCodec.intra_context`) only when a
    conditional frame asks for it: runs of I- and P-frames never need it, and deriving it
    costs about a quarter of a conditional frame's decoding. Exact either way."""

    def __init__(self, inter: InterCodec) -> None:
        self._inter = inter
        self._value: torch.Tensor | None = None
        self._source: tuple[torch.Tensor, int] | None = None

    def set(self, context: torch.Tensor | None) -> None:
        self._value, self._source = context, None

    def from_intra(self, latent_fx: torch.Tensor, q: int) -> None:
        self._value, self._source = None, (latent_fx, q)

    def __bool__(self) -> bool:
        return self._value is not None or self._source is not None

    def get(self) -> torch.Tensor | None:
        if self._value is None and self._source is not None:
            self._value = self._inter.intra_context(*self._source)
            self._source = None
        return self._value
