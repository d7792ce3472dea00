"""Function-preserving widening: start a wider model from a trained narrower one.

Training from scratch costs days on two cores; a wider synthesis initialised so that it
computes exactly what the trained model computed (Chen et al., "Net2Net", 2016) starts
at the trained model's rate-distortion and only has to learn what the new channels add.
Every tensor is copied into the leading slice of its wider counterpart. New channels
*into* a layer keep their fresh random weights (so they carry signal and get gradients);
weights *out of* new channels start at zero, so the old outputs are unchanged. More
latent channels (M) work the same way: the new channels start with zero weight into the
synthesis and the hyper-analysis, so they only cost their (small, quickly trained away)
rate until they pay. (A fresh GDN's couplings are the identity, so new channels do not
touch the old ones' norms.) A checkerboard context network the narrower model lacks starts
fresh: its last layer is zero, so it too changes nothing until trained.
"""

from __future__ import annotations

import torch
from torch import nn

from lvc.models.latent import LatentModel


def widen_from(model: LatentModel, state: dict[str, torch.Tensor]) -> list[str]:
    """Load ``state`` (a narrower or equal model's ``state_dict``) into ``model`` in place.

    Returns the names of tensors that grew. Raises ``ValueError`` if a tensor is missing or
    smaller in ``model`` (narrowing is not function-preserving).
    """
    grown = []
    zero_out = _outgoing_inputs(model)
    own = model.state_dict()
    if any(k.startswith("context.") and k not in own for k in state):
        raise ValueError("the checkpoint's context network would be dropped (give the same --context)")
    with torch.no_grad():
        for name, new in own.items():
            if name not in state:
                if name.startswith("context."):  # a new context network: its zero last layer changes nothing
                    grown.append(name)
                    continue
                raise ValueError(f"the checkpoint has no {name}")
            old = state[name]
            if old.shape == new.shape:
                new.copy_(old)
                continue
            if old.dim() != new.dim() or any(o > n for o, n in zip(old.shape, new.shape)):
                raise ValueError(f"{name}: cannot widen {tuple(old.shape)} to {tuple(new.shape)}")
            if name.startswith("context."):  # its inputs and outputs are stacked M-wide blocks
                raise ValueError(f"{name}: a context network cannot be widened (start without one)")
            grown.append(name)
            if name in zero_out:  # weights leaving new input channels: zero
                dim = zero_out[name]
                idx = [slice(None)] * new.dim()
                idx[dim] = slice(old.shape[dim], None)
                new[tuple(idx)] = 0
            if name in model.chunked_outputs:  # [mean, log-scale] blocks: each into its own block
                for o, n in zip(old.chunk(2), new.chunk(2)):
                    n[tuple(slice(0, s) for s in o.shape)] = o
            else:
                new[tuple(slice(0, s) for s in old.shape)] = old
    return grown


def _outgoing_inputs(model: LatentModel) -> dict[str, int]:
    """Weight name -> its input-channel dimension (convolutions 1, transposed convolutions 0)."""
    out = {}
    for prefix, mod in model.named_modules():
        if isinstance(mod, nn.ConvTranspose2d):
            out[f"{prefix}.weight"] = 0
        elif isinstance(mod, nn.Conv2d):
            out[f"{prefix}.weight"] = 1
    return out
