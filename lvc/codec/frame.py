"""Frame coding with a frozen model: frame <-> payload bytes.

An I-frame codes the latent ``y``; a P-frame codes the residual ``y - y_ref`` against the
previous frame's decoded latent, with the same hyperprior machinery. The probability
path (side information, scale indices, means) is integer-exact, and decoded latents
are kept in fixed point (int64, ``LOG_FRAC_BITS`` fraction bits), so the reference a
P-frame predicts from is identical in encoder and decoder on every machine: no drift.
Only the synthesis transform runs in float32, after all symbols are decoded.
"""

from __future__ import annotations

import contextlib
import math
import threading
import warnings
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch.nn import functional as F

from lvc.codec.refine import refine_latent
from lvc.entropy import coder
from lvc.entropy.tables import LOG_FRAC_BITS, scale_index
from lvc.models.frozen import QUALITY_MAX, FrozenModel
from lvc.models.latent import interp_levels

STRIDE = 64  # total downsampling of the hyperprior path
SYMBOL_LIMIT = coder.ESCAPE_LIMIT // 2
LATENT_LIMIT = (1 << 23) - 1  # fixed-point latents stay exactly representable in float32
_ONE = 1 << LOG_FRAC_BITS


@dataclass(frozen=True)
class FrameResult:
    payload: bytes
    recon: np.ndarray  # (H, W, 3) uint8, exactly what the decoder produces
    estimated_bits: float  # information content under the frozen tables
    latent: torch.Tensor  # decoded latent in fixed point (int64), the next P-frame's reference


def to_tensor(frame: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(frame, dtype=np.uint8)).permute(2, 0, 1)[None].float().div_(255.0)


def to_uint8(x: torch.Tensor, h: int, w: int) -> np.ndarray:
    x = x[0, :, :h, :w].clamp(0, 1).mul(255.0).round().to(torch.uint8)
    return x.permute(1, 2, 0).contiguous().numpy()


_FLAGS_LOCK = threading.Lock()


@contextlib.contextmanager
def deterministic_convolutions():
    """Convolutions whose results do not depend on the thread count.

    oneDNN (mkldnn) splits its reductions differently for 1 and 2 threads, so the same
    latent could round to different pixels; PyTorch's native im2col + GEMM path does not
    (checked from 4x4 to 68x120 latents). It costs about 2x in synthesis time.
    """
    with _FLAGS_LOCK, warnings.catch_warnings():  # the flag is process-global
        warnings.simplefilter("ignore")
        with torch.backends.mkldnn.flags(enabled=False):
            yield


def _pad(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = -h % STRIDE, -w % STRIDE
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def _interp_fixed(table: torch.Tensor, q: int) -> torch.Tensor:
    """Integer interpolation of fixed-point rows (levels, M) at integer quality ``q``."""
    levels = table.shape[0]
    p = q * (levels - 1)
    i = min(p // QUALITY_MAX, levels - 2)
    f = p - i * QUALITY_MAX
    return torch.div(table[i] * (QUALITY_MAX - f) + table[i + 1] * f, QUALITY_MAX, rounding_mode="floor")


class FrameCodec:
    """Encode / decode single frames with one frozen model."""

    def __init__(self, model: FrozenModel, refine_steps: int = 0) -> None:
        self.m = model
        self.refine_steps = refine_steps

    @cached_property
    def _z_coder(self) -> coder.TableCoder | None:
        return coder.TableCoder(self.m.z_tables) if self.m.z_tables is not None else None

    @cached_property
    def _min_bits_y(self) -> float:
        """Fewest bits any symbol can cost: a floor on a valid payload's size."""
        return self.m.y_tables.min_bits()

    @cached_property
    def _min_bits_z(self) -> float:
        return self.m.z_tables.min_bits() if self.m.z_tables is not None else 0.0

    @cached_property
    def _y_coder(self) -> coder.TableCoder:
        return coder.TableCoder(self.m.y_tables)

    def _gains(self, q: int) -> tuple[torch.Tensor, torch.Tensor]:
        qt = torch.tensor([q / QUALITY_MAX])
        return (torch.exp(interp_levels(self.m.log_gain, qt))[:, :, None, None],
                torch.exp(interp_levels(self.m.log_inv_gain, qt))[:, :, None, None])

    def _prior(self, z_hat: torch.Tensor | None, q: int, shape: tuple[int, ...]):
        """Fixed-point means and integer scale indices of ``y`` (exact on every machine)."""
        if z_hat is not None:
            params = self.m.hyper(z_hat)
            mean, log_scale = params.chunk(2, dim=1)
        else:
            mean = _interp_fixed(self.m.static_mean, q)[None, :, None, None].expand(shape)
            log_scale = _interp_fixed(self.m.static_log_scale, q)[None, :, None, None].expand(shape)
        return mean, scale_index(log_scale)

    def _z_table_index(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.broadcast_to(np.arange(shape[1])[None, :, None, None], shape)

    def _synthesize(self, latent_fx: torch.Tensor, inv_gain: torch.Tensor, h: int, w: int) -> np.ndarray:
        with deterministic_convolutions():
            return to_uint8(self.m.g_s(latent_fx.float() / _ONE * inv_gain), h, w)

    def analyse(self, frame: np.ndarray, q: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Gained latent ``y`` of a frame and the padded input tensor (for refinement)."""
        gain, _ = self._gains(q)
        x = to_tensor(frame)
        with torch.no_grad():
            return self.m.g_a(_pad(x)) * gain, x

    @torch.no_grad()
    def encode(self, frame: np.ndarray, q: int, reference: torch.Tensor | None = None,
               y: torch.Tensor | None = None) -> FrameResult:
        """Code ``frame`` as an I-frame, or as a P-frame against the fixed-point latent ``reference``."""
        h, w = frame.shape[:2]
        _, inv_gain = self._gains(q)
        if y is None:
            y, x = self.analyse(frame, q)
        else:
            x = to_tensor(frame)
        return self.encode_latent(y, q, inv_gain, h, w, target=x, reference=reference)

    def _lambda(self, q: int) -> float:
        c = self.m.config
        return math.exp(math.log(c.lambda_min) + (math.log(c.lambda_max) - math.log(c.lambda_min)) * q / QUALITY_MAX)

    def encode_latent(self, y: torch.Tensor, q: int, inv_gain: torch.Tensor, h: int, w: int,
                      target: torch.Tensor | None = None, reference: torch.Tensor | None = None) -> FrameResult:
        """Code ``y`` (minus ``reference``); with ``refine_steps`` and a ``target``, refine it first."""
        base = reference.float() / _ONE if reference is not None else None
        if base is not None:
            y = y - base
        enc = coder.new_encoder()
        bits = 0.0
        z_hat = None
        if self.m.h_a is not None:
            z_hat = torch.round(self.m.h_a(y)).clamp(-coder.ESCAPE_LIMIT, coder.ESCAPE_LIMIT).long()
            zt = self._z_table_index(tuple(z_hat.shape))
            self._z_coder.encode(enc, z_hat.numpy(), zt)
            bits += self.m.z_tables.bits(zt.ravel(), z_hat.numpy().ravel())
        mean_fx, idx = self._prior(z_hat, q, tuple(y.shape))
        mean = mean_fx.float() / _ONE
        if self.refine_steps and target is not None:
            y = refine_latent(self.m.g_s, y, mean, idx, inv_gain, target, self._lambda(q), self.refine_steps,
                              offset=base)
        sym = torch.round(y - mean).clamp(-SYMBOL_LIMIT, SYMBOL_LIMIT).long()
        self._y_coder.encode(enc, sym.numpy(), idx.numpy())
        bits += self.m.y_tables.bits(idx.numpy().ravel(), sym.numpy().ravel())
        latent = self._latent(sym, mean_fx, reference)
        return FrameResult(coder.finish(enc), self._synthesize(latent, inv_gain, h, w), bits, latent)

    @staticmethod
    def _latent(sym: torch.Tensor, mean_fx: torch.Tensor, reference: torch.Tensor | None) -> torch.Tensor:
        """Decoded latent in fixed point: exact integer arithmetic, bounded so float32 stays exact."""
        latent = sym * _ONE + mean_fx
        if reference is not None:
            latent = latent + reference
        return latent.clamp(-LATENT_LIMIT, LATENT_LIMIT)

    @torch.no_grad()
    def decode(self, payload: bytes, h: int, w: int, q: int,
               reference: torch.Tensor | None = None) -> tuple[np.ndarray, torch.Tensor]:
        """Reconstruction and fixed-point latent of a frame; ``ValueError`` on a malformed payload."""
        _, inv_gain = self._gains(q)
        hp, wp = h + (-h % STRIDE), w + (-w % STRIDE)
        m = self.m.config.M
        y_shape = (1, m, hp // 16, wp // 16)
        n_z = self.m.config.Nh * (hp // STRIDE) * (wp // STRIDE) if self.m.h_a is not None else 0
        floor_bits = self._min_bits_y * math.prod(y_shape) + (self._min_bits_z * n_z if n_z else 0.0)
        if len(payload) * 8 < floor_bits - 64:  # refuse before allocating anything frame-sized
            raise ValueError(f"payload of {len(payload)} bytes is too short for a {w}x{h} frame")
        dec = coder.new_decoder(payload)
        z_hat = None
        if self.m.h_a is not None:
            z_shape = (1, self.m.config.Nh, hp // STRIDE, wp // STRIDE)
            z_hat = torch.from_numpy(self._z_coder.decode(dec, self._z_table_index(z_shape)).reshape(z_shape))
        mean_fx, idx = self._prior(z_hat, q, y_shape)
        sym = torch.from_numpy(self._y_coder.decode(dec, idx.numpy()).reshape(y_shape))
        if not dec.maybe_exhausted():
            raise ValueError("payload holds more data than the frame needs")
        if reference is not None and tuple(reference.shape) != y_shape:
            raise ValueError("reference latent does not match the frame size")
        latent = self._latent(sym, mean_fx, reference)
        return self._synthesize(latent, inv_gain, h, w), latent
