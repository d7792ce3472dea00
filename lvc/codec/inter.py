"""Conditional P-frames (frame type ``FRAME_PC``): frame <-> payload with a frozen inter model.

The decoder's state between frames is the context (fixed point, 1/8 resolution, see
:mod:`lvc.models.conditional`). A payload holds, in one range-coded stream:

1. block motion, one vector per 16x16 block in whole or (``subpel`` models) quarter pixels
   (searched rate-constrained against the vector it is predicted from): the choice of one of
   the frozen motion tables (stored in the model file), then the first block row as
   differences along the row and every later row as differences from the row above (both
   sides vectorised);
2. the side information ``z`` (per-channel frozen tables);
3. the latent symbols under the context-conditioned prior (scale-indexed Gaussian tables).

Frame type ``FRAME_PM`` (since 1.5) holds the motion alone: every block is copied (a
``FRAME_PS`` frame with every block skipped, without its flags and side information),
bilinearly or, as its first symbol says, through 8-tap filters (:mod:`lvc.codec.sharp`).

Frame type ``FRAME_PS`` adds skip flags after the motion (:mod:`lvc.codec.skip`): skipped
blocks send no symbols, keep the motion-compensated context and show the previous picture's
pixels, moved.

Motion is estimated on the encoder's input frames. The context is warped, the prior and the
context update run in exact integers, so encoder and decoder hold identical contexts on
every machine: no drift. Only the display transform runs in float, on synthesis workers.
"""

from __future__ import annotations

import math
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
import torch

from lvc.bitstream.container import FRAME_PC, FRAME_PM, FRAME_PQ, FRAME_PS
from lvc.codec import skip as block_skip
from lvc.codec.blend import BlendedPicture
from lvc.codec.copies import CopyCoder
from lvc.codec.frame import LATENT_LIMIT, STRIDE, SYMBOL_LIMIT, _pad, quality_lambda, quantise, side_index, to_tensor
from lvc.codec.lookahead import Lookahead, MotionSearch
from lvc.codec.motion import RATE_WEIGHT, warp
from lvc.codec.picture_motion import polish
from lvc.codec.refine import refine_latent
from lvc.codec.sharp import PHASES
from lvc.codec.synthesis import Bands, Deferred, Synthesizer, bf16_synthesis
from lvc.entropy import coder
from lvc.entropy.tables import LOG_FRAC_BITS, scale_index
from lvc.models.conditional import CONTEXT_SCALE, blend
from lvc.models.frozen import QUALITY_MAX, FrozenModel
from lvc.models.inter_frozen import GAIN_FRAC_BITS, MV_LIMIT, MV_SCALES
from lvc.models.latent import interp_fixed, interp_levels

_ONE = 1 << LOG_FRAC_BITS
# Motion-only frames of quarter-pixel models copy through the 8-tap filters where that copy
# is nearer the frame than the bilinear one (squared error, per frame): the encoder's choice.
# At the slow preset the sharp copy moves by a field of its own, refined on the 8-tap phase
# planes (docs/models.md, "Session 40").
SHARP_COPIES = True


# Bumped whenever the conditional frames' analysis may compute other latents (benchmark
# caches key on it, through lvc.codec.sequence.INTER_ENCODER): 2, the pixel analysis in
# channels-last layout (float rounding only).
ANALYSIS_VERSION = 2


@dataclass(frozen=True)
class InterResult:
    """A coded PC frame: payload, its information content, the new context, the picture."""

    payload: bytes
    estimated_bits: float
    context: torch.Tensor  # the next frame's context (fixed point)
    pending: Future | Bands | Deferred | block_skip.SkippedPicture | BlendedPicture = field(repr=False)
    skipped: np.ndarray | None = field(default=None, repr=False)  # (hb, wb) blocks skipped (FRAME_PS)
    motion_only: bool = False  # FRAME_PM: every block copied, the payload is the motion alone
    per_block: bool = False  # FRAME_PQ: a motion-only frame with quartered blocks or filters per block

    @property
    def frame_type(self) -> int:
        if self.motion_only:
            return FRAME_PQ if self.per_block else FRAME_PM
        return FRAME_PC if self.skipped is None else FRAME_PS

    @property
    def recon(self) -> np.ndarray:
        return self.pending.result()


def mv_residuals(mv: torch.Tensor) -> torch.Tensor:
    """(hb, wb, 2) vectors -> residuals: row 0 along the row, later rows from the row above."""
    r = mv.clone()
    r[0, 1:] = mv[0, 1:] - mv[0, :-1]
    r[1:] = mv[1:] - mv[:-1]
    return r


def mv_from_residuals(r: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`mv_residuals` (cumulative sums: exact, vectorised)."""
    mv = r.clone()
    mv[0] = torch.cumsum(r[0], 0)
    return torch.cumsum(mv, 0)


class InterCodec:
    """Encode / decode conditional P-frames with the inter section of a frozen model."""

    def __init__(self, model: FrozenModel, workers: int | None = None, eager_synthesis: bool = True,
                 deadzone: float = 0.0, fast_analysis: bool = True, refine_steps: int = 0,
                 motion_keep: int = 0, bands: int = 1, lookahead: Lookahead | None = None) -> None:
        if model.inter is None:
            raise ValueError("this model has no conditional P-frame section")
        self.m, self.p = model, model.inter
        self.deadzone, self.fast_analysis, self.refine_steps = deadzone, fast_analysis, refine_steps
        self.display = Synthesizer(self.p.g_d, workers, bf16=True, bands=bands)  # see ENCODER_BANDS
        self.eager = eager_synthesis
        self.z_coder = coder.TableCoder(self.p.z_tables)
        self.y_coder = coder.TableCoder(model.y_tables)
        self.mv_coder = coder.TableCoder(self.p.mv_tables)
        self.skip_flags = block_skip.SkipFlags()
        self.copies = CopyCoder(self.mv_coder, self.p.mv_tables, len(MV_SCALES))  # (FRAME_PM and FRAME_PQ)
        self._ones = torch.ones(1, 1, 1, 1)
        # the encoder's motion search, on the lookahead's thread (its own one if not given)
        self._own_lookahead = Lookahead() if lookahead is None else None
        self.motion = MotionSearch(self.p.config.block, motion_keep, self.subpel, lookahead or self._own_lookahead)
        # An encoder that codes motion-only frames may set this (the slow preset): the search
        # then also finds the sharp copy's own field (SHARP_COPIES), on the lookahead thread.
        self.sharp_search = False
        # ... and this (medium and slow): motion-only frames may quarter blocks and choose
        # filters per block (FRAME_PQ), the quarters' vectors searched on the lookahead thread
        # too, and their copies are polished on the decoder's picture (lvc.codec.picture_motion).
        self.quarter_search = False

    def close(self) -> None:
        self.display.close()
        if self._own_lookahead is not None:
            self._own_lookahead.close()

    def search_ahead(self, previous: np.ndarray, frame: np.ndarray, q: int) -> None:
        """Start the motion search of a frame still to come, to be coded at quality ``q``
        against ``previous`` (:mod:`lvc.codec.lookahead`)."""
        self.motion.start(previous, frame, self._rate_weight(q), self._sharp_too, self._quartering)

    @property
    def _quartering(self) -> bool:
        return self.quarter_search and self.p.config.block == 16  # (the skip grid's block_sse)

    @property
    def _sharp_too(self) -> bool:
        return self.sharp_search and SHARP_COPIES and self.subpel == PHASES

    def _rate_weight(self, q: int) -> float:
        cfg = self.m.config
        return RATE_WEIGHT * math.sqrt(cfg.lambda_min / cfg.lambda_max) ** (q / QUALITY_MAX)

    @property
    def subpel(self) -> int:
        """Motion vectors' steps per pixel (1: whole pixels, 4: quarter pixels)."""
        return self.p.config.subpel

    @property
    def pixel_ref(self) -> bool:
        """Whether pictures also show the previous picture (:mod:`lvc.codec.blend`)."""
        return self.p.config.pixel_ref

    def show(self, context: torch.Tensor, h: int, w: int) -> Deferred | BlendedPicture:
        """The decoder's picture of ``context`` alone (synthesised when first asked for)."""
        if self.pixel_ref:
            return BlendedPicture(self.display.defer(context, self._ones, h, w, raw=True), None, None, 0)
        return self.display.defer(context, self._ones, h, w)

    def intra_context(self, latent_fx: torch.Tensor, q: int) -> torch.Tensor:
        """The context an I-frame (or latent-residual P-frame) with this decoded latent starts."""
        return self.p.intra_context(latent_fx, q, QUALITY_MAX)

    def zero_latent(self, h: int, w: int) -> torch.Tensor:
        """The fixed-point latent of a ``w`` x ``h`` frame that stands for an IL frame's
        (lvc.codec.layer_intra), which has none: zero."""
        _, _, hl, wl = self._shapes(h, w)[0]  # (the intra latent's grid; its channels are the intra model's)
        return torch.zeros((1, self.p.intra_inv_gain_fx.shape[1], hl, wl), dtype=torch.int64)

    def _shapes(self, h: int, w: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """Latent, side-information and motion-field shapes of a ``w`` x ``h`` frame (padded)."""
        hp, wp = h + (-h % STRIDE), w + (-w % STRIDE)
        c = self.p.config
        return ((1, c.M, hp // 16, wp // 16), (1, c.Nh, hp // STRIDE, wp // STRIDE),
                (hp // c.block, wp // c.block, 2))

    def _finish(self, y_fx: torch.Tensor | None, ctx_w: torch.Tensor, q: int, h: int, w: int, synthesize: bool,
                skipped: np.ndarray | None, mv: torch.Tensor, previous, moved: np.ndarray | None = None,
                sharp: bool | np.ndarray = False, block: int | None = None,
                ) -> tuple[torch.Tensor, Future | Bands | Deferred | block_skip.SkippedPicture | BlendedPicture]:
        """The next context (exact; skipped blocks keep ``ctx_w``) and the picture: on a
        synthesis worker now, or (``synthesize`` false, or not eager) when first asked for;
        skipped blocks (and, ``pixel_ref``, the blend) take ``previous``, the previous
        picture (``moved``: already moved by ``mv``). ``y_fx`` is needed only where a block is
        coded. ``sharp``: the copies through the 8-tap filters (all, or per block of ``mv``;
        ``FRAME_PM``, ``FRAME_PQ``); ``block``: the copies' size, if not the model's
        (``FRAME_PQ``: ``mv`` may be the quarters' field)."""
        if skipped is not None and skipped.all():
            # Every block copied: the context is the warped one and the picture the moved
            # previous one, exactly what the full path gives (its update is kept nowhere, its
            # display shown nowhere), without the update, the display or its synthesis.
            return ctx_w, block_skip.SkippedPicture(None, previous, skipped, mv, block or self.p.config.block, moved,
                                                    self.subpel, sharp)
        keep = None
        if skipped is not None:
            keep = torch.from_numpy(skipped).repeat_interleave(2, 0).repeat_interleave(2, 1)
        ctx = self.p.update(y_fx, ctx_w, q, QUALITY_MAX, keep)
        submit = self.display.submit if self.eager and synthesize else self.display.defer
        pending = submit(ctx, self._ones, h, w, raw=self.pixel_ref)
        if self.pixel_ref:
            pending = BlendedPicture(pending, previous, mv, self.p.config.block, moved, self.subpel)
        if skipped is not None:
            pending = block_skip.SkippedPicture(pending, previous, skipped, mv, self.p.config.block, moved,
                                                self.subpel)
        return ctx, pending

    @torch.no_grad()
    def encode(self, frame: np.ndarray, previous: np.ndarray, q: int, context: torch.Tensor,
               shown: block_skip.ShownPicture | None = None, picture=None, copies: bool = False,
               motion_only: bool = False) -> InterResult:
        """Code ``frame`` against the decoder's ``context``; ``previous`` (the input frame
        before it) is where motion is searched. With ``shown`` (the decoder's picture of
        ``context``), blocks may be skipped (``FRAME_PS``). ``picture``: the decoder's
        previous picture (pending), which ``pixel_ref`` models need. ``copies`` (with a
        picture to copy): skip every block without looking at the latent (see
        ``lvc.codec.sequence.COPY_FRAMES``)."""
        h, w = frame.shape[:2]
        mv, mv_sharp, fine = self.motion.vectors(previous, frame, self._rate_weight(q), self._sharp_too,
                                                 self._quartering)
        source = shown.pending if shown is not None else picture
        if copies and motion_only and source is not None and self._quartering and self.subpel > 1:
            mv, fine = polish(source.result(), frame, mv, fine, self.p.config.block, self.subpel, self._rate_weight(q))
        ctx_w = warp(context, mv[None], self.p.config.block, CONTEXT_SCALE, self.subpel)
        if copies and source is not None:
            return self._encode_copies(frame, q, mv, ctx_w, source, shown, motion_only, context, mv_sharp, fine)
        x = _pad(to_tensor(frame))
        gain = torch.exp(interp_levels(self.p.log_gain, torch.tensor([q / QUALITY_MAX])))[:, :, None, None]
        moved, moved_t, pixels_in = None, None, x
        if self.pixel_ref:
            if picture is None:
                raise ValueError("this model's P-frames need the previous picture")
            moved = self._moved(picture, mv, shown)
            moved_t = _pad(to_tensor(moved))
            pixels_in = torch.cat([x, moved_t], 1)
        # channels last: the full-resolution convolutions run about 30% faster here (ANALYSIS_VERSION 2)
        pixels_in = pixels_in.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.fast_analysis):
            feat = torch.cat([self.p.g_a_pix(pixels_in), ctx_w.float() / _ONE], 1)
            y = self.p.g_a(feat).float() * gain
        z_hat = torch.round(self.p.h_a(y)).clamp(-coder.ESCAPE_LIMIT, coder.ESCAPE_LIMIT).long()
        mean_fx, log_scale_fx = self.p.prior(z_hat, ctx_w)
        idx = scale_index(log_scale_fx)
        if self.refine_steps:
            y = self._refine(y, mean_fx, idx, ctx_w, x[..., :h, :w], q, moved_t)
        sym = quantise(y - mean_fx.float() / _ONE, self.deadzone).clamp(-SYMBOL_LIMIT, SYMBOL_LIMIT).long()
        skipped = None
        if shown is not None:
            position_bits = self.m.y_tables.element_bits(idx.numpy(), sym.numpy())[0].sum(0)
            skipped = block_skip.decide(frame, shown, mv, self.p.config.block, position_bits,
                                        quality_lambda(self.m, q), self.subpel)
            skipped = skipped if skipped.any() else None
        coded = torch.ones(sym.shape[-2:], dtype=torch.bool) if skipped is None else ~torch.from_numpy(skipped)
        sym[:, :, ~coded] = 0
        payload, bits = self._write(mv, skipped, z_hat.numpy(), sym[:, :, coded].numpy(), idx[:, :, coded].numpy())
        y_fx = (sym * _ONE + mean_fx).clamp(-LATENT_LIMIT, LATENT_LIMIT)
        if skipped is not None:
            picture = shown.pending
            moved = self._moved(picture, mv, shown)
        ctx, pending = self._finish(y_fx, ctx_w, q, h, w, True, skipped, mv, picture, moved)
        return InterResult(payload, bits, ctx, pending, skipped)

    def _encode_copies(self, frame: np.ndarray, q: int, mv: torch.Tensor, ctx_w: torch.Tensor, source,
                       shown: block_skip.ShownPicture | None, motion_only: bool, context: torch.Tensor,
                       mv_sharp: torch.Tensor | None = None, fine: torch.Tensor | None = None) -> InterResult:
        """A frame with every block copied, no analysis, no prior: with ``motion_only``
        ``FRAME_PM`` or ``FRAME_PQ`` (:mod:`lvc.codec.copies`; ``fine``: the quarters'
        searched vectors, ``mv_sharp``: the sharp copy's own), else ``FRAME_PS`` with every
        block skipped, whose side information, which nothing then reads, is each channel's
        cheapest symbol."""
        h, w = frame.shape[:2]
        y_shape, z_shape, _ = self._shapes(h, w)
        skipped = np.ones(y_shape[-2:], dtype=bool)
        moved, block = self._moved(source, mv, shown), self.p.config.block
        if not motion_only:
            z_hat = np.broadcast_to(self.p.z_tables.modes()[side_index(z_shape)], z_shape)
            none = np.zeros(0, dtype=np.int64)
            payload, bits = self._write(mv, skipped, z_hat, none, none)
            ctx, pending = self._finish(None, ctx_w, q, h, w, True, skipped, mv, source, moved)
            return InterResult(payload, bits, ctx, pending, skipped)
        c, moved = self.copies.choose(frame, source.result(), moved, mv, fine, mv_sharp, quality_lambda(self.m, q),
                                      block, self.subpel, SHARP_COPIES)
        if not torch.equal(c.mv, mv):  # (the sharp copy's own field)
            ctx_w = warp(context, c.mv[None], block, CONTEXT_SCALE, self.subpel)
        enc = coder.new_encoder()
        bits = self.copies.write(enc, c, self.write_motion)
        field, per = c.field(block)
        ctx, pending = self._finish(None, ctx_w, q, h, w, True, skipped, field, source, moved, c.sharp(block), per)
        return InterResult(coder.finish(enc), bits, ctx, pending, skipped, motion_only=True, per_block=c.per_block)

    def _write(self, mv: torch.Tensor, skipped: np.ndarray | None, z_hat: np.ndarray, y_sym: np.ndarray,
               y_idx: np.ndarray) -> tuple[bytes, float]:
        """The payload (motion, skip flags, side information, the coded blocks' symbols) and
        its information content in bits."""
        enc = coder.new_encoder()
        bits = self.write_motion(enc, mv)
        if skipped is not None:
            bits += self.skip_flags.encode(enc, skipped)
        z_idx = side_index(z_hat.shape)
        self.z_coder.encode(enc, z_hat, z_idx)
        self.y_coder.encode(enc, y_sym, y_idx)
        bits += self.p.z_tables.bits(z_idx.ravel(), z_hat.ravel()) + self.m.y_tables.bits(y_idx.ravel(), y_sym.ravel())
        return coder.finish(enc), bits

    def write_motion(self, enc, mv: torch.Tensor) -> float:
        """The motion (the table choice, then the vectors' residuals) into ``enc``; its bits."""
        res = mv_residuals(mv).numpy().ravel()
        rows = len(MV_SCALES)
        costs = [self.p.mv_tables.bits(np.full(res.size, r), res) for r in range(rows)]
        row = int(np.argmin(costs))
        self._motion_symbols(enc, row, res)
        return self.p.mv_tables.bits(np.array([rows]), np.array([row])) + costs[row]

    def _motion_symbols(self, enc, row: int, res: np.ndarray) -> float:
        """The motion table's choice ``row``, then the vectors' residuals ``res`` under it
        (their bits: not needed where this is called)."""
        self.mv_coder.encode(enc, np.array([row]), np.array([len(MV_SCALES)]))
        self.mv_coder.encode(enc, res, np.full(res.size, row))
        return 0.0

    def _moved(self, picture, mv: torch.Tensor, shown: block_skip.ShownPicture | None) -> np.ndarray:
        """``picture`` moved by ``mv``: ``shown``'s copy when it is that picture (made once
        for the skip decision, the analysis and the picture)."""
        if shown is not None and shown.pending is picture:
            return shown.moved(mv, self.p.config.block, self.subpel)
        return block_skip.moved_picture(picture.result(), mv, self.p.config.block, self.subpel)

    def _refine(self, y: torch.Tensor, mean_fx: torch.Tensor, idx: torch.Tensor, ctx_w: torch.Tensor,
                target: torch.Tensor, q: int, moved: torch.Tensor | None) -> torch.Tensor:
        """``y`` refined for this frame's own ``lambda * MSE + bits`` (the motion, the side
        information and so every mean and scale fixed), differentiating the context update
        in float (:meth:`FrozenInter.update_float`) and the display. The frames coded from
        this one are not looked at: their context only gets better with this picture."""
        inv = interp_fixed(self.p.inv_gain_fx, q, QUALITY_MAX).float() / (1 << GAIN_FRAC_BITS)
        ctx_f = ctx_w.float() / _ONE

        def picture(latent: torch.Tensor) -> torch.Tensor:
            return blend(self.p.g_d(self.p.update_float(latent, ctx_f)), moved)

        return refine_latent(picture, y, mean_fx.float() / _ONE, idx, inv[None, :, None, None], target,
                             quality_lambda(self.m, q), self.refine_steps, bf16=bf16_synthesis())[0]

    @torch.no_grad()
    def decode_async(self, payload: bytes, h: int, w: int, q: int, context: torch.Tensor,
                     synthesize: bool = True, previous=None, skip: bool = False,
                     copies: bool = False, per_block: bool = False) -> tuple[object, torch.Tensor]:
        """Entropy-decode now (the next context); the pixels arrive in the future (or are
        synthesised when first asked for: ``synthesize`` false). ``previous``: the previous
        picture (pending), which ``FRAME_PS`` payloads (``skip``: skip flags after the motion),
        ``FRAME_PM`` ones (``skip`` and ``copies``: the motion alone; ``per_block`` too:
        ``FRAME_PQ``) and ``pixel_ref`` models need."""
        if (skip or self.pixel_ref) and previous is None:
            raise ValueError("this frame needs the previous picture")
        y_shape, z_shape, mv_shape = self._shapes(h, w)
        ctx_shape = (1, self.p.config.C, y_shape[2] * 2, y_shape[3] * 2)
        if tuple(context.shape) != ctx_shape:
            raise ValueError("context does not match the frame size")
        floor_bits = (self.m.y_tables.min_bits() * math.prod(y_shape) * (not skip) + self.p.z_tables.min_bits()
                      * math.prod(z_shape) * (not copies) + self.p.mv_tables.min_bits() * math.prod(mv_shape))
        if len(payload) * 8 < floor_bits - 64:
            raise ValueError(f"payload of {len(payload)} bytes is too short for a {w}x{h} frame")
        dec = coder.new_decoder(payload)
        f = self.copies.read_filter(dec, per_block, self.subpel) if copies else 0
        row = int(self.mv_coder.decode(dec, np.array([len(MV_SCALES)]))[0])
        if not 0 <= row < len(MV_SCALES):
            raise ValueError("motion table choice out of range")
        res = self.mv_coder.decode(dec, np.full(math.prod(mv_shape), row))
        mv = mv_from_residuals(torch.from_numpy(res.reshape(mv_shape)).long())
        if mv.abs().max() > MV_LIMIT * self.subpel:
            raise ValueError("motion vector out of range")
        ctx_w = warp(context, mv[None], self.p.config.block, CONTEXT_SCALE, self.subpel)
        if copies:
            c = self.copies.read_rest(dec, mv, f, per_block)
            if c.quarters is not None and np.abs(c.quarters).max(initial=0) > MV_LIMIT * self.subpel:
                raise ValueError("quarter motion vector out of range")
            enc = coder.new_encoder()  # exactly that coding (the range coder's end cannot tell a word too many)
            self.copies.write(enc, c, lambda e, _: self._motion_symbols(e, row, res))
            if coder.finish(enc) != payload:
                raise ValueError("payload is not exactly the frame's copies")
            field, block = c.field(self.p.config.block)
            ctx, pending = self._finish(None, ctx_w, q, h, w, synthesize, np.ones(y_shape[-2:], dtype=bool), field,
                                        previous, sharp=c.sharp(self.p.config.block), block=block)
            return pending, ctx
        skipped = self.skip_flags.decode(dec, y_shape[-2:]) if skip else None
        coded = torch.ones(y_shape[-2:], dtype=torch.bool) if skipped is None else ~torch.from_numpy(skipped)
        z_hat = torch.from_numpy(self.z_coder.decode(dec, side_index(z_shape)).reshape(z_shape)).long()
        y_fx = None
        if coded.any():  # (no latent symbols follow when every block is skipped: no prior needed)
            mean_fx, log_scale_fx = self.p.prior(z_hat, ctx_w)
            idx = scale_index(log_scale_fx)
            sym = torch.zeros(y_shape, dtype=torch.long)
            sym[:, :, coded] = torch.from_numpy(self.y_coder.decode(dec, idx[:, :, coded].numpy())).view(
                y_shape[1], -1)[None]
            y_fx = (sym * _ONE + mean_fx).clamp(-LATENT_LIMIT, LATENT_LIMIT)
        if not dec.maybe_exhausted():
            raise ValueError("payload holds more data than the frame needs")
        ctx, pending = self._finish(y_fx, ctx_w, q, h, w, synthesize, skipped, mv, previous)
        return pending, ctx

