"""Frame coding with a frozen model: frame <-> payload bytes.

An I-frame codes the latent ``y`` (if the model has a spatial context prior, in two
checkerboard halves: the anchors, then the rest with predictions corrected from the
decoded anchors); a P-frame codes the residual ``y - y_ref`` against the previous frame's
decoded latent, with the same hyperprior machinery (and, if the model has one, the
temporal correction of its predictions). The probability
path (side information, scale indices, means) is integer-exact, and decoded latents
are kept in fixed point (int64, ``LOG_FRAC_BITS`` fraction bits), so the reference a
P-frame predicts from is identical in encoder and decoder on every machine: no drift.
Only the synthesis transform runs in float32, after all symbols are decoded, on the
single-threaded workers of :mod:`lvc.codec.synthesis`.
"""

from __future__ import annotations

import math
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch
from torch.nn import functional as F

from lvc.codec.refine import Checkerboard, SidePrior, refine_latent
from lvc.codec.synthesis import Bands, Deferred, Synthesizer, bf16_synthesis
from lvc.entropy import coder
from lvc.entropy.tables import LOG_FRAC_BITS, scale_index
from lvc.models.context import anchor_mask
from lvc.models.frozen import QUALITY_MAX, FrozenModel
from lvc.models.latent import interp_fixed, interp_levels

STRIDE = 64  # total downsampling of the hyperprior path
SYMBOL_LIMIT = coder.ESCAPE_LIMIT // 2
LATENT_LIMIT = (1 << 23) - 1  # fixed-point latents stay exactly representable in float32
_ONE = 1 << LOG_FRAC_BITS


@dataclass(frozen=True)
class FrameResult:
    payload: bytes
    estimated_bits: float  # information content under the frozen tables
    latent: torch.Tensor  # decoded latent in fixed point (int64), the next P-frame's reference
    pending: Future | Bands | Deferred = field(repr=False)  # the synthesis, running on a worker (or on demand)

    @property
    def recon(self) -> np.ndarray:
        """(H, W, 3) uint8, exactly what the decoder produces (waits for the synthesis)."""
        return self.pending.result()


def to_tensor(frame: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(frame, dtype=np.uint8)).permute(2, 0, 1)[None].float().div_(255.0)


def _pad(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = -h % STRIDE, -w % STRIDE
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def side_index(shape: tuple[int, ...]) -> np.ndarray:
    """Table rows of side information: one frozen density per channel."""
    return np.broadcast_to(np.arange(shape[1])[None, :, None, None], shape)


class _Side:
    """A side-information path: analysis, frozen tables and their coder."""

    def __init__(self, h_a: torch.nn.Module, tables, channels: int) -> None:
        self.h_a, self.tables, self.channels = h_a, tables, channels
        self.coder = coder.TableCoder(tables)
        self.min_bits = tables.min_bits()

    @staticmethod
    def index(shape: tuple[int, ...]) -> np.ndarray:
        return side_index(shape)

    def bits(self, z_hat: torch.Tensor) -> float:
        return self.tables.bits(self.index(tuple(z_hat.shape)).ravel(), z_hat.numpy().ravel())

    @cached_property
    def bits_table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Bits of every in-table symbol per channel, an escape's on either side, and the
        channels' first symbols: what refinement interpolates."""
        chans = np.arange(self.channels)
        offsets = np.asarray(self.tables.offsets)[chans]
        sym = offsets[:, None] + np.arange(-1, int(self.tables.lengths[chans].max()))[None, :]
        bits = self.tables.element_bits(np.broadcast_to(chans[:, None], sym.shape), sym)
        return torch.from_numpy(bits).float(), torch.from_numpy(offsets).long()


@dataclass(frozen=True)
class _Plan:
    y: torch.Tensor  # what is coded: the latent, or its residual (``offset`` set)
    side: _Side | None
    z_hat: torch.Tensor | None
    z_bits: float
    mean_fx: torch.Tensor
    log_scale_fx: torch.Tensor
    idx: torch.Tensor
    offset: torch.Tensor | None  # the reference (float) when coding a residual


def quantise(r: torch.Tensor, deadzone: float = 0.0) -> torch.Tensor:
    """``round(r)``, or with a dead zone: ``sign(r) * floor(|r| + 0.5 - deadzone)``.

    For P-frames, rounding a residual element toward the prediction saves more bits than the
    distortion it adds costs, because the reference already carries the signal. Only the
    encoder decides this; symbols are symbols to the decoder. The I/P decision still
    estimates with plain rounding: estimating with the dead zone made P look cheaper than it
    is, and moving clips lost up to 29% (docs/models.md). For I-frames a dead zone loses
    (0.1 on BSDS500 val: 16% fewer bits for 0.72 dB less at q=0).
    """
    if not deadzone:
        return torch.round(r)
    return torch.sign(r) * torch.floor((r.abs() + 0.5 - deadzone).clamp_min(0))


def quality_lambda(model: FrozenModel, q: int) -> float:
    """The rate-distortion trade-off the model was trained for at integer quality ``q``
    (log-linear between its lambdas): what encoder-side decisions and searches weigh by."""
    c = model.config
    return math.exp(math.log(c.lambda_min) + (math.log(c.lambda_max) - math.log(c.lambda_min)) * q / QUALITY_MAX)


class FrameCodec:
    """Encode / decode single frames with one frozen model."""

    def __init__(self, model: FrozenModel, refine_steps: int = 0, workers: int | None = None,
                 fast_analysis: bool = False, eager_synthesis: bool = True, p_deadzone: float = 0.0,
                 bands: int = 1, lookahead=None) -> None:
        """``lookahead``: a :class:`lvc.codec.lookahead.Lookahead` the analyses run on (the
        encoder's), else they run on the calling thread."""
        self.m = model
        self.lookahead = lookahead
        self.refine_steps = refine_steps
        self.p_deadzone = p_deadzone
        self.eager_synthesis = eager_synthesis  # False: encoded frames are synthesised only on demand
        self.fast_analysis = fast_analysis
        self.synthesis = Synthesizer(model.g_s, workers, bands=bands)  # bands: lvc.codec.synthesis.ENCODER_BANDS
        self._gain_cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    @cached_property
    def _y_coder(self) -> coder.TableCoder:
        return coder.TableCoder(self.m.y_tables)

    @cached_property
    def _min_bits_y(self) -> float:
        """Fewest bits any symbol can cost: a floor on a valid payload's size."""
        return self.m.y_tables.min_bits()

    @cached_property
    def _side(self) -> _Side | None:
        """The side-information path (hyperprior models): analysis, frozen tables, coder."""
        return _Side(self.m.h_a, self.m.z_tables, self.m.config.Nh) if self.m.h_a is not None else None

    def _gains(self, q: int) -> tuple[torch.Tensor, torch.Tensor]:
        if q not in self._gain_cache:  # a sequence has one or two qualities (a few under rate control)
            qt = torch.tensor([q / QUALITY_MAX])
            self._gain_cache[q] = (torch.exp(interp_levels(self.m.log_gain, qt))[:, :, None, None],
                                   torch.exp(interp_levels(self.m.log_inv_gain, qt))[:, :, None, None])
        return self._gain_cache[q]

    def _prior(self, z_hat: torch.Tensor | None, q: int, shape: tuple[int, ...],
               reference: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Fixed-point means and log-scales of ``y`` (exact on every machine).

        With a temporal prior and a ``reference`` (P-frames), the hyperprior's predictions for
        the residual are corrected from the reference (see :mod:`lvc.models.temporal`).
        """
        if z_hat is None:
            return (interp_fixed(self.m.static_mean, q, QUALITY_MAX)[None, :, None, None].expand(shape),
                    interp_fixed(self.m.static_log_scale, q, QUALITY_MAX)[None, :, None, None].expand(shape))
        mean, log_scale = self.m.hyper(z_hat).chunk(2, dim=1)
        if reference is not None and self.m.temporal is not None:
            return self._correct(self.m.temporal.fuse, mean, log_scale, reference)
        return mean, log_scale

    @staticmethod
    def _correct(fuse, mean: torch.Tensor, log_scale: torch.Tensor, cond: torch.Tensor):
        d_mean, d_log_scale = fuse.run_fixed(torch.cat([mean, log_scale, cond], 1)).chunk(2, 1)
        return mean + d_mean, log_scale + d_log_scale

    def _checkerboard(self, reference: torch.Tensor | None, z_hat: torch.Tensor | None) -> bool:
        """Whether this frame codes its latent in two checkerboard halves (I-frames of models
        with a spatial context prior)."""
        return reference is None and self.m.context is not None and z_hat is not None

    def _context_prior(self, mean_fx: torch.Tensor, log_scale_fx: torch.Tensor, anchors: torch.Tensor,
                       sym: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fixed-point means and scale indices of the second half, corrected from the decoded
        anchors (their fixed-point latent, zero elsewhere); anchors keep the hyperprior's."""
        cond = (sym * _ONE + mean_fx) * anchors
        mean, log_scale = self._correct(self.m.context.fuse, mean_fx, log_scale_fx, cond)
        return torch.where(anchors, mean_fx, mean), torch.where(anchors, scale_index(log_scale_fx),
                                                               scale_index(log_scale))

    def analyse(self, frame: np.ndarray, q: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Gained latent ``y`` of a frame and the input tensor (for refinement); the analysis
        itself from :meth:`analyse_ahead`'s job if one was started for this frame."""
        gain, _ = self._gains(q)
        raw = (self._analysis(frame) if self.lookahead is None
               else self.lookahead.take(("analysis", id(frame)), self._analysis, frame))
        return raw * gain, to_tensor(frame)

    def analyse_ahead(self, frame: np.ndarray) -> None:
        """Start the analysis of a frame still to come on the ``lookahead`` thread (the
        frame may not change)."""
        if self.lookahead is not None:
            self.lookahead.start(("analysis", id(frame)), frame, self._analysis, frame)

    def _analysis(self, frame: np.ndarray) -> torch.Tensor:
        """The latent before its quality's gain (the same for every quality)."""
        xp = _pad(to_tensor(frame)).contiguous(memory_format=torch.channels_last)
        # The analysis is the encoder's alone: bf16 (3x faster here) only moves y by ~1% of a
        # quantisation step, and whatever it computes, the decoder reproduces the coded result.
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.fast_analysis):
            return self.m.g_a(xp).float().contiguous()

    @torch.no_grad()
    def encode(self, frame: np.ndarray, q: int, reference: torch.Tensor | None = None,
               y: torch.Tensor | None = None, plan: _Plan | None = None, eager: bool | None = None) -> FrameResult:
        """Code ``frame`` as an I-frame, or as a P-frame against the fixed-point latent ``reference``.
        ``eager`` overrides the codec's ``eager_synthesis`` for this frame."""
        h, w = frame.shape[:2]
        _, inv_gain = self._gains(q)
        if y is None:
            y, x = self.analyse(frame, q)
        else:
            x = to_tensor(frame)
        return self.encode_latent(y, q, inv_gain, h, w, target=x, reference=reference, plan=plan, eager=eager)

    def plan(self, y: torch.Tensor, q: int, reference: torch.Tensor | None = None) -> _Plan:
        """Side information and prior of ``y`` (before any refinement): what both coding and
        estimation need, so a mode decision can hand it on to ``encode`` instead of recomputing."""
        base = reference.float() / _ONE if reference is not None else None
        if base is not None:
            y = y - base
        side = self._side
        z_hat, z_bits = None, 0.0
        if side is not None:
            z = side.h_a(y)
            z_hat = torch.round(z).clamp(-coder.ESCAPE_LIMIT, coder.ESCAPE_LIMIT).long()
            z_bits = side.bits(z_hat)
        mean_fx, log_scale_fx = self._prior(z_hat, q, tuple(y.shape), reference)
        return _Plan(y, side, z_hat, z_bits, mean_fx, log_scale_fx, scale_index(log_scale_fx), base)

    @torch.no_grad()
    def estimate_bits(self, y: torch.Tensor, q: int, reference: torch.Tensor | None = None,
                      plan: _Plan | None = None) -> float:
        """Bits the frame would cost without refinement and with plain rounding (fast/medium
        P-frames then cost a little less: their dead zone), at a fraction of ``encode``'s work:
        no range coding, no synthesis, no spatial context pass (so a slight overestimate for
        I-frames of context models). Used for fast I/P decisions."""
        plan = plan or self.plan(y, q, reference)
        sym = quantise(plan.y - plan.mean_fx.float() / _ONE).clamp(-SYMBOL_LIMIT, SYMBOL_LIMIT).long()
        return plan.z_bits + self.m.y_tables.bits(plan.idx.numpy().ravel(), sym.numpy().ravel())

    def encode_latent(self, y: torch.Tensor, q: int, inv_gain: torch.Tensor, h: int, w: int,
                      target: torch.Tensor | None = None, reference: torch.Tensor | None = None,
                      plan: _Plan | None = None, eager: bool | None = None) -> FrameResult:
        """Code ``y``, or its residual against the fixed-point latent ``reference``.

        With ``refine_steps`` and a ``target``, the latent is refined first. ``plan``: the
        result of :meth:`plan` for the same arguments, if the caller has it already.
        """
        plan = plan or self.plan(y, q, reference)
        y = plan.y
        if self.refine_steps and target is not None:
            context = self._search_context(plan) if self._checkerboard(reference, plan.z_hat) else None
            side = self._search_side(plan, q) if reference is None and plan.side is not None else None
            y, z_hat = refine_latent(self.m.g_s, y, plan.mean_fx.float() / _ONE, plan.idx, inv_gain, target,
                                     quality_lambda(self.m, q), self.refine_steps, offset=plan.offset,
                                     context=context, side=side, symbol_limit=SYMBOL_LIMIT,
                                     bf16=bf16_synthesis())
            if z_hat is not None and not torch.equal(z_hat, plan.z_hat):
                plan = self._plan_from(plan, z_hat, q)
        enc = coder.new_encoder()
        if plan.side is not None:
            plan.side.coder.encode(enc, plan.z_hat.numpy(), plan.side.index(tuple(plan.z_hat.shape)))
        mean = plan.mean_fx.float() / _ONE
        sym = self._symbols(y - mean, reference)
        mean_fx, idx = plan.mean_fx, plan.idx
        if self._checkerboard(reference, plan.z_hat):
            anchors = anchor_mask(*sym.shape[-2:]).expand_as(sym)
            self._y_coder.encode(enc, sym[anchors].numpy(), idx[anchors].numpy())
            mean_fx, idx = self._context_prior(mean_fx, plan.log_scale_fx, anchors, sym)
            rest = ~anchors
            # Round this half around its corrected means (a refined y re-rounds to the symbols
            # the search scored there).
            sym[rest] = torch.round(y - mean_fx.float() / _ONE)[rest].clamp(-SYMBOL_LIMIT, SYMBOL_LIMIT).long()
            self._y_coder.encode(enc, sym[rest].numpy(), idx[rest].numpy())
        else:
            self._y_coder.encode(enc, sym.numpy(), idx.numpy())
        bits = plan.z_bits + self.m.y_tables.bits(idx.numpy().ravel(), sym.numpy().ravel())
        latent = self._latent(sym, mean_fx, reference)
        eager = self.eager_synthesis if eager is None else eager
        synth = self.synthesis.submit if eager else self.synthesis.defer
        return FrameResult(coder.finish(enc), bits, latent, synth(latent, inv_gain, h, w))

    def _search_context(self, plan: _Plan) -> Checkerboard:
        """The checkerboard prior for refinement: the context network's float stand-in, and
        the exact path :meth:`encode_latent` codes with (both around the plan's prediction
        unless given another)."""
        anchors = anchor_mask(*plan.y.shape[-2:]).expand_as(plan.y)
        fuse = self.m.context.fuse

        def soft(cond: torch.Tensor, mean: torch.Tensor | None = None,
                 log_scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
            mean = plan.mean_fx.float() / _ONE if mean is None else mean
            log_scale = plan.log_scale_fx.float() / _ONE if log_scale is None else log_scale
            return fuse.run_float(torch.cat([mean, log_scale, cond], 1)).chunk(2, 1)

        def exact(sym: torch.Tensor, fx: tuple[torch.Tensor, torch.Tensor] | None = None):
            mean_fx, log_scale_fx = fx or (plan.mean_fx, plan.log_scale_fx)
            corrected, idx = self._context_prior(mean_fx, log_scale_fx, anchors, sym.clamp(-SYMBOL_LIMIT, SYMBOL_LIMIT))
            return (corrected - mean_fx).float() / _ONE, idx

        return Checkerboard(anchors, plan.log_scale_fx.float() / _ONE, soft, exact)

    def _search_side(self, plan: _Plan, q: int) -> SidePrior:
        """The hyper-latent for refinement (I-frames): float hyper-synthesis, exact prior, and
        the side tables' bits per symbol."""
        shape = tuple(plan.y.shape)

        def exact(z_hat: torch.Tensor):
            mean_fx, log_scale_fx = self._prior(z_hat, q, shape)
            return mean_fx.float() / _ONE, scale_index(log_scale_fx), (mean_fx, log_scale_fx)

        return SidePrior(plan.side.h_a(plan.y), lambda z: self.m.hyper.run_float(z).chunk(2, 1), exact,
                         *plan.side.bits_table, plan.side.bits, coder.ESCAPE_LIMIT)

    def _plan_from(self, plan: _Plan, z_hat: torch.Tensor, q: int) -> _Plan:
        """An I-frame's ``plan`` with another side information (its refined ``z_hat``)."""
        assert plan.offset is None, "only I-frames search their side information"
        mean_fx, log_scale_fx = self._prior(z_hat, q, tuple(plan.y.shape))
        return _Plan(plan.y, plan.side, z_hat, plan.side.bits(z_hat), mean_fx, log_scale_fx,
                     scale_index(log_scale_fx), None)

    @torch.no_grad()
    def intra_latent(self, y: torch.Tensor, q: int) -> torch.Tensor:
        """The fixed-point latent an I-frame of ``y`` decodes to, without range coding (and
        without refinement): the quantisation of :meth:`encode_latent`, checkerboard
        included. Training of the conditional P model starts its contexts from it."""
        plan = self.plan(y, q)
        sym = self._symbols(plan.y - plan.mean_fx.float() / _ONE, None)
        mean_fx = plan.mean_fx
        if self._checkerboard(None, plan.z_hat):
            anchors = anchor_mask(*sym.shape[-2:]).expand_as(sym)
            mean_fx, _ = self._context_prior(mean_fx, plan.log_scale_fx, anchors, sym)
            rest = ~anchors
            sym[rest] = torch.round(plan.y - mean_fx.float() / _ONE)[rest].clamp(-SYMBOL_LIMIT, SYMBOL_LIMIT).long()
        return self._latent(sym, mean_fx, None)

    def _symbols(self, r: torch.Tensor, reference: torch.Tensor | None) -> torch.Tensor:
        """Symbols of ``y - mean``: rounded, or for P-frames with a dead zone (encoder's choice)."""
        deadzone = self.p_deadzone if reference is not None else 0.0
        return quantise(r, deadzone).clamp(-SYMBOL_LIMIT, SYMBOL_LIMIT).long()

    @staticmethod
    def _latent(sym: torch.Tensor, mean_fx: torch.Tensor, reference: torch.Tensor | None) -> torch.Tensor:
        """Decoded latent in fixed point: exact integer arithmetic, bounded so float32 stays exact."""
        latent = sym * _ONE + mean_fx
        if reference is not None:
            latent = latent + reference
        return latent.clamp(-LATENT_LIMIT, LATENT_LIMIT)

    def decode(self, payload: bytes, h: int, w: int, q: int,
               reference: torch.Tensor | None = None) -> tuple[np.ndarray, torch.Tensor]:
        """Reconstruction and fixed-point latent of a frame; ``ValueError`` on a malformed payload."""
        pending, latent = self.decode_async(payload, h, w, q, reference)
        return pending.result(), latent

    @torch.no_grad()
    def decode_async(self, payload: bytes, h: int, w: int, q: int, reference: torch.Tensor | None = None,
                     synthesize: bool = True) -> tuple[Future | Deferred, torch.Tensor]:
        """Entropy-decode now (the reference for the next frame); synthesise on a worker, or
        (``synthesize`` false) only if the picture is asked for: P-frames need only the
        latent, a skip frame after it the picture."""
        _, inv_gain = self._gains(q)
        hp, wp = h + (-h % STRIDE), w + (-w % STRIDE)
        m = self.m.config.M
        y_shape = (1, m, hp // 16, wp // 16)
        side = self._side
        z_shape = (1, side.channels, hp // STRIDE, wp // STRIDE) if side is not None else None
        floor_bits = self._min_bits_y * math.prod(y_shape) + (side.min_bits * math.prod(z_shape) if side else 0.0)
        if len(payload) * 8 < floor_bits - 64:  # refuse before allocating anything frame-sized
            raise ValueError(f"payload of {len(payload)} bytes is too short for a {w}x{h} frame")
        if reference is not None and tuple(reference.shape) != y_shape:
            raise ValueError("reference latent does not match the frame size")
        dec = coder.new_decoder(payload)
        z_hat = None
        if side is not None:
            z_hat = torch.from_numpy(side.coder.decode(dec, side.index(z_shape)).reshape(z_shape))
        mean_fx, log_scale_fx = self._prior(z_hat, q, y_shape, reference)
        idx = scale_index(log_scale_fx)
        if self._checkerboard(reference, z_hat):
            anchors = anchor_mask(*y_shape[-2:]).expand(y_shape)
            sym = torch.zeros(y_shape, dtype=torch.long)
            sym[anchors] = torch.from_numpy(self._y_coder.decode(dec, idx[anchors].numpy()))
            mean_fx, idx = self._context_prior(mean_fx, log_scale_fx, anchors, sym)
            rest = ~anchors
            sym[rest] = torch.from_numpy(self._y_coder.decode(dec, idx[rest].numpy()))
        else:
            sym = torch.from_numpy(self._y_coder.decode(dec, idx.numpy()).reshape(y_shape))
        if not dec.maybe_exhausted():
            raise ValueError("payload holds more data than the frame needs")
        latent = self._latent(sym, mean_fx, reference)
        return (self.synthesis.submit if synthesize else self.synthesis.defer)(latent, inv_gain, h, w), latent
