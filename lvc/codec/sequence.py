"""Frame-sequence encoding: frame types, groups of pictures, the encoder's copy of the decoder's state
(the decoder: :mod:`lvc.codec.decoder`).

P-frames are coded against the previous frame's decoded latent, which both sides hold
in exact fixed point, so decoding never drifts. Where a frame is not forced to be an
I-frame (multiples of the intra period, for random access), the encoder picks I or P;
a scene cut therefore becomes an I-frame by itself. How hard it looks is the preset:

* ``fast``: P, unless the P estimate jumps well above the recent P-frames' (a likely cut);
  then the cheaper of the two estimates; conditional frames' motion is searched from
  quarter resolution (:func:`lvc.codec.motion.estimate_motion`);
* ``medium``: the cheaper of the two estimated rates (no range coding, no synthesis);
  a still image (one frame) is refined as under ``slow``, with fewer steps
  (:meth:`lvc.codec.presets.Preset.still_steps`);
* ``slow``: both coded and synthesised, the lower ``lambda * MSE + bpp`` wins, after
  encoder-side latent refinement.

``fast`` and ``medium`` code P-frame residuals with a dead zone (``lvc.codec.presets.P_DEADZONE``, see
:func:`lvc.codec.frame.quantise`); ``slow``'s refinement chooses the symbols itself.
Every preset writes the same syntax; the decoder's work does not depend on it.

Models with a conditional P section (``lvc train-inter``) can also code ``FRAME_PC``
frames (:mod:`lvc.codec.inter`): the decoder then carries a context, started by every I-
or P-frame, and every preset picks among I, P and PC by ``lambda * MSE + bpp`` (PC wins at
low rates; a cut, or a context that has drifted, goes back to I or P). PC frames may skip
blocks (``FRAME_PS``, :mod:`lvc.codec.skip`); ``slow`` also refines PC latents and skips in
the first PC frame after an I- or P-frame.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace

import numpy as np
import torch

from lvc.bitstream.container import FRAME_I, FRAME_IL, FRAME_P, FRAME_PC
from lvc.bitstream.syntax import COLOUR_RGB, COLOUR_YUV420
from lvc.codec import layer_intra
from lvc.codec.colour import Planes, PlanesPicture
from lvc.codec.frame import FrameCodec, FrameResult, quality_lambda
from lvc.codec.grey import GreyPicture, is_grey
from lvc.codec.inter import ANALYSIS_VERSION, InterCodec, InterResult
from lvc.codec.lazycontext import LazyContext
from lvc.codec.lookahead import Lookahead
from lvc.codec.motion import RATE_WEIGHT, SEARCH_VERSION
from lvc.codec.partition import SPLIT_COST
from lvc.codec.pending import Pending
from lvc.codec.presets import PRESETS
from lvc.codec.residual_picture import ResidualPicture
from lvc.codec.residual_rdo import DEBLOCKING, RESIDUAL_WEIGHT, ResidualEncoder
from lvc.codec.skip import ShownPicture
from lvc.codec.synthesis import ENCODER_BANDS, serial_main_thread
from lvc.models.frozen import QUALITY_MAX, FrozenModel


def quality_to_int(quality: float) -> int:
    if not 0.0 <= quality <= 1.0:
        raise ValueError(f"quality {quality} is outside [0, 1]")
    return round(quality * QUALITY_MAX)


# PC frames round plainly: the residual P-frames' dead zone cost them about 0.16 dB at equal
# rate on a training clip (sam2 bedroom, step-14,000 model, q=0 and 0.25; docs/models.md,
# "Conditional P-frames").
PC_DEADZONE = 0.0
PC_BACKOFF_MAX = 7  # after PC lost by more than PC_MARGIN, skip it for 1, 3, 7, 7, ... frames
PC_MARGIN = 0.1
# After a PC frame (P is not open), PC is taken without analysing the frame for I when,
# with the previous PC frame's MSE, it beats the I cost measured on one of the last PC_TRUST
# frames by more than PC_TRUST_MARGIN: the intra analysis and estimates are about a third of
# the encoder's time per frame, and waiting for this frame's own picture would stall it. The
# previous MSE stands for this one only while the content continues: not when the mean
# absolute frame difference jumps above PC_TRUST_JUMP times the previous one (plus 2 levels).
PC_TRUST = 4
PC_TRUST_JUMP = 1.5
PC_TRUST_MARGIN = 0.1
# Conditional models code forced I-frames (and the I- and residual P-frames that continue their
# latent chain) higher in quality than PC frames, by this share of the headroom above the
# quality (q + 0.33 (1 - q); x264's ipratio in lvc's terms): every PC frame of the group copies
# and predicts from that picture, so its detail pays back over the group. Chosen on 8 training
# clips (docs/models.md, "Session 31"); a format 1.2 stream feature.
INTRA_OFFSET = 0.33
# The residual layer (lvc.codec.residual) is added to every picture and removes most of what
# its error would cost: the I/P/PC decision, made on the pictures under it, weighs a
# picture's error at this share of lambda when the layer is on. At 1 (sessions 37-38) it
# judged pictures as if shown as they are, and at high rates returned to I-frames where a
# PC frame and its layer cost less. Chosen on 8 training clips (docs/models.md, "Session 39").
RESIDUAL_ERROR_WEIGHT = 0.0625
# With the layer on, PC frames copy every block (FRAME_PS, all skipped), and the encoder
# runs no analysis for them: a copy moved by the block motion plus its layer cost less than
# a learned block plus its layer almost everywhere (per-clip BD-rate against skipping by
# lambda * error at RESIDUAL_ERROR_WEIGHT: -0.35% on 8 training clips, -0.60% on the 5
# benchmark clips; docs/models.md, "Session 39"). Without the layer the skip decision stays.
COPY_FRAMES = True
# Such frames are coded as FRAME_PM (format 1.5): the motion alone, without the skip flags and
# side information a FRAME_PS frame of copies carries (60-120 bits per 416x240 frame).
MOTION_ONLY = True
# The residual layer's lambda of PC frames by their place after the last I- or P-frame,
# cyclically (1st, 2nd, ..., 9th = 1st): every fourth frame is coded finer, every eighth
# finest, the ones between coarser, as HM's low-delay configuration offsets its quantiser by
# frame (QP +3, +2, +3, +1): what a finer frame restores, the coarser ones after it copy.
# x264 with zerolatency has no such cycle. On 8 training clips with deblocking, every clip
# better: -2.6% (HM's ratios 0.63, 0.79, 0.63, 1: -1.5% before deblocking; (0.5, 0.7, 0.5,
# 1.3): -2.3%; docs/models.md, "Session 40").
RESIDUAL_CYCLE = (0.4, 0.6, 0.4, 1.0, 0.4, 0.6, 0.4, 2.0)


# The encoder-side algorithm of conditional models (frame-type decision, motion search): a
# change here changes their streams, so benchmark caches key on it.
INTER_ENCODER = (f"ippc-rd/6 skip=rd2 copies={int(COPY_FRAMES)}{'m' * MOTION_ONLY} ew={RESIDUAL_ERROR_WEIGHT:g} "
                 f"cycle={'/'.join(f'{c:g}' for c in RESIDUAL_CYCLE)} "
                 f"trust={PC_TRUST}@{PC_TRUST_MARGIN:g}x{PC_TRUST_JUMP:g} "
                 f"backoff={PC_BACKOFF_MAX}@{PC_MARGIN:g} mv-rate={RATE_WEIGHT:g} pc-dz={PC_DEADZONE:g} "
                 f"me={SEARCH_VERSION} pc-an={ANALYSIS_VERSION} quarters={SPLIT_COST:g} on-picture/1 "
                 f"il={layer_intra.LAMBDA_SCALE:g}/wavefront ramp-all i-layer")


CUT_JUMP = 1.8  # a P estimate this many times the recent mean triggers the I check (fast)


@dataclass(frozen=True)
class CodedFrame:
    frame_type: int
    quality: int
    payload: bytes
    pending: Pending  # the reconstruction, synthesised on a worker (or on demand)
    estimated_bits: float
    grey: bool = False  # shown grey (lvc.codec.grey); ``pending`` then gives the grey picture
    residual: bytes | None = None  # the frame's residual layer (lvc.codec.residual), if any
    intra: bool = False  # the layer has intra macroblocks (syntax.INTRA_FLAG)
    small: bool = False  # and luma blocks saying their transform size (syntax.SMALL_FLAG)

    @property
    def recon(self) -> np.ndarray | Planes:
        """The shown picture: RGB, or in colour format 1 Y, Cb, Cr planes."""
        return self.pending.result()


class SequenceEncoder:
    """``intra_period``: N > 0 forces an I-frame every N frames; 0 or -1: only the first.

    ``refine_steps`` (if given) overrides the preset's (for video; a caller coding a still
    image passes :meth:`lvc.codec.presets.Preset.still_steps`). ``residual`` weighs the residual layer's rate
    against ``lambda`` (default :data:`lvc.codec.residual_rdo.RESIDUAL_WEIGHT`); 0 codes none
    (a still image's caller passes 0); ``deblock=False``: its colour format 1 layers unfiltered,
    ``intra_blocks=False``: without intra macroblocks (else as the preset finds them),
    ``small_transforms=False``: without 4x4 transforms, ``layer_intra=False``: every I-frame
    learned (else each may be coded by the layer alone, :mod:`lvc.codec.layer_intra`).
    ``intra_offset`` (integer quality units,
    default ``INTRA_OFFSET``) raises a conditional model's forced I-frames, and the I- and
    residual P-frames that continue their latent chain, by that share of the headroom above
    ``quality``, at which its PC frames are coded (not with an intra period of 1; a still
    image's caller passes 0). ``synthesize=False`` synthesises
    reconstructions only when asked for (``recon``), except those the encoder's own choices
    look at (conditional models: PC frames and I-frames); the stream is the same either way.
    """

    def __init__(self, model: FrozenModel, quality: int, intra_period: int, refine_steps: int | None = None,
                 preset: str = "medium", synthesize: bool = True, intra_offset: int | None = None,
                 residual: float | None = None, colour_format: int = COLOUR_RGB, deblock: bool = True,
                 intra_blocks: bool = True, small_transforms: bool = True, layer_intra: bool = True) -> None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
        self.preset = PRESETS[preset]
        steps = self.preset.refine_steps if refine_steps is None else refine_steps
        # Without refinement the coding is many small operations: one intra-op thread (see encode).
        # Refinement's backward passes are large convolutions, which a second thread does speed up.
        self._serial = steps == 0
        # motion searches and intra analyses a frame ahead (lvc.codec.lookahead); not where
        # latents are refined: there the analyses keep the calling thread's intra-op threads
        self.lookahead = Lookahead() if self._serial else None
        self.codec = FrameCodec(model, steps, fast_analysis=self.preset.bf16_analysis, eager_synthesis=synthesize,
                                p_deadzone=0.0 if steps else self.preset.p_deadzone, bands=ENCODER_BANDS,
                                lookahead=self.lookahead)
        self.quality = quality
        # Conditional models: forced I-frames, and the I- and P-frames that continue their latent
        # chain, at this quality; PC frames, and I-frames chosen after them, at ``quality``. The
        # offset is a share of the headroom above ``quality`` (INTRA_OFFSET), so --quality keeps
        # its effect up to 1.
        offset = quality_to_int(INTRA_OFFSET) if intra_offset is None else intra_offset
        self.intra_quality = quality
        if model.inter is not None and intra_period != 1:
            self.intra_quality = quality + round(max(0, offset) * (QUALITY_MAX - quality) / QUALITY_MAX)
        self.intra_period = intra_period
        self.index = 0
        self.reference: torch.Tensor | None = None
        self.reference_quality = quality  # the quality of ``reference`` (conditional models)
        self.lmbda = quality_lambda(model, quality)
        self._model = model
        weight = RESIDUAL_WEIGHT if residual is None else residual
        penalty = self.preset.intra_penalty if intra_blocks else None
        search = self.preset.transform_search if small_transforms else None
        self.residual = ResidualEncoder(weight, deblock and DEBLOCKING, penalty, search) if weight > 0 else None
        # I-frames may be coded by the layer alone (FRAME_IL): conditional models, colour format 1,
        # where the preset looks for intra macroblocks
        self.layer_intra = (layer_intra and self.residual is not None and penalty is not None
                            and colour_format == COLOUR_YUV420 and model.inter is not None)
        error_weight = RESIDUAL_ERROR_WEIGHT if self.residual is not None else 1.0
        self.decision_lmbda = error_weight * self.lmbda  # a picture's error in the I/P/PC decisions
        self.copies = COPY_FRAMES and self.residual is not None  # PC frames: every block copied
        self._pc_run = 0  # PC frames since the last I- or P-frame
        self.colour_format = colour_format
        self._planes: Planes | None = None  # the frame being coded's source planes (colour format 1)
        self._grey = False  # whether it is grey (colour format 1 shows no chroma then)
        self._recent_p: list[float] = []
        # Models with a conditional P section can also code FRAME_PC: motion-compensated,
        # conditioned on the decoder's context (lvc.codec.inter). PC and I pictures are
        # synthesised at once on the workers: the I/P/PC decision needs them.
        self.inter = (InterCodec(model, eager_synthesis=True, deadzone=PC_DEADZONE,
                                 fast_analysis=self.preset.bf16_analysis, refine_steps=steps,
                                 motion_keep=self.preset.motion_keep, bands=ENCODER_BANDS, lookahead=self.lookahead)
                      if model.inter is not None else None)
        self.context = LazyContext(self.inter) if self.inter is not None else None
        if self.inter is not None:
            self.inter.sharp_search = self.copies and MOTION_ONLY and self.preset.sharp_search
            self.inter.quarter_search = self.copies and MOTION_ONLY and self.preset.quarters
        self.previous: np.ndarray | None = None
        # The last I-frame (its MSE, for the I/P/PC decision, is taken when the next decision
        # needs it: its synthesis overlaps the next frame's analysis).
        self._last_latent: tuple[np.ndarray, FrameResult] | None = None
        self._latent_mse_value: float | None = None
        self._pc_backoff = self._pc_wait = 0  # frames to skip trying PC after it lost
        self._i_cost: tuple[float, int] | None = None  # (I cost, frames since it was measured)
        self._i_layer_bits = 0.0  # what the last I-frame cost beyond its learned payload's estimate
        self._last_pc: tuple[np.ndarray, InterResult] | float | None = None  # the previous frame, if PC
        self._last_diff: float | None = None  # mean absolute difference between the last two frames
        self._shown: ShownPicture | None = None  # the decoder's picture of the context (block skip)
        self._picture: Pending | None = None  # the decoder's last picture (pixel_ref models' reference)

    def close(self) -> None:
        """Stop the synthesis workers and the lookahead thread."""
        if self.lookahead is not None:
            self.lookahead.close()
        self.codec.synthesis.close()
        if self.inter is not None:
            self.inter.close()

    def _forced_intra(self) -> bool:
        started = self.reference is not None or bool(self.context)
        return not started or (self.intra_period > 0 and self.index % self.intra_period == 0)

    def _cost(self, frame: np.ndarray, r: FrameResult) -> float:
        return self.lmbda * self._mse(frame, r.recon) + r.estimated_bits / (frame.shape[0] * frame.shape[1])

    def _choose_intra(self, y: torch.Tensor):
        """I/P decision from estimated rates (``fast`` and ``medium``): (intra?, the chosen
        mode's plan, handed on to the coding so its side information is not recomputed)."""
        p_plan = self.codec.plan(y, self.quality, self.reference)
        p_bits = self.codec.estimate_bits(y, self.quality, self.reference, plan=p_plan)
        recent = self._recent_p[-4:]
        intra, plan = False, p_plan
        if not (self.preset.decision == "cut" and recent and p_bits < CUT_JUMP * sum(recent) / len(recent)):
            i_plan = self.codec.plan(y, self.quality)
            if self.codec.estimate_bits(y, self.quality, plan=i_plan) < p_bits:
                intra, plan = True, i_plan
        self._recent_p = [] if intra else [*recent, p_bits]
        return intra, plan

    def encode(self, frame: np.ndarray, upcoming: np.ndarray | None = None,
               planes: Planes | None = None) -> CodedFrame:
        """Code the next frame: RGB ``frame``, and in colour format 1 the source's yuv420p
        ``planes`` (the shown picture's target). ``upcoming``, the frame after it if the caller has it already,
        starts that frame's motion search and intra analysis now, on a thread of its own
        (:mod:`lvc.codec.lookahead`; the same stream either way). Neither frame may be
        modified afterwards.

        Without refinement the coding runs on one intra-op thread (the syntheses, motion
        searches and analyses on threads of their own): its small operations gained little
        from a second core."""
        if upcoming is not None:
            next_intra = self.intra_period > 0 and (self.index + 1) % self.intra_period == 0
            if self._may_analyse(0):
                self.codec.analyse_ahead(frame)  # this frame's first (no-op if it was started ahead)
            if self.inter is not None and not next_intra and self._pc_wait < 2:  # (else PC is not tried)
                self.inter.search_ahead(frame, upcoming, self.quality)
            if next_intra or self._may_analyse(1):
                self.codec.analyse_ahead(upcoming)  # used by I-frames and the I check (speculative)
        if (planes is not None) != (self.colour_format == COLOUR_YUV420):
            raise ValueError("source planes are given exactly in colour format 1")
        self._planes, self._grey = planes, is_grey(frame)
        with serial_main_thread() if self._serial else contextlib.nullcontext():
            coded = self._encode_conditional(frame) if self.inter is not None else self._encode(frame)
        grey = self._grey
        if self.colour_format == COLOUR_YUV420:
            return replace(coded, pending=PlanesPicture(coded.pending, grey), grey=grey)
        if grey:
            return replace(coded, pending=GreyPicture(coded.pending), grey=True)
        return coded

    def _add_residual(self, frame: np.ndarray, pending: Pending, quality: int,
                      scale: float = 1.0) -> tuple[Pending, bytes | None, float, dict[str, bool]]:
        """The frame's picture with its residual layer (waits for the base picture), the
        layer's section, bits and its tools (``CodedFrame.intra``, ``small``); the base
        picture, None, 0 and none where none is coded.
        ``scale``: of the layer's lambda (``RESIDUAL_CYCLE``)."""
        if self.residual is None:
            return pending, None, 0.0, {}
        # (the layer's weight ramp follows the sequence's quality, so that at low qualities
        # raised I-frames are not coded far finer than the frames that copy them)
        lmbda = scale * quality_lambda(self._model, quality)
        coded = self.residual.encode(frame, pending.result(), lmbda, self.quality, self._planes,
                                     chroma=not self._grey)  # (grey: shown without chroma)
        if coded is None:
            return pending, None, 0.0, {}
        section, bits, r = coded
        tools = dict(intra=r.has_intra, small=r.has_small)
        return ResidualPicture(pending, r, *frame.shape[:2]), section, bits, tools

    def _encode(self, frame: np.ndarray) -> CodedFrame:
        y, _ = self.codec.analyse(frame, self.quality)
        if self._forced_intra():
            best, kind = self.codec.encode(frame, self.quality, y=y), FRAME_I
            self._recent_p = []
        elif self.preset.decision == "rd":
            best, kind = self.codec.encode(frame, self.quality, y=y), FRAME_I
            p = self.codec.encode(frame, self.quality, reference=self.reference, y=y)
            if self._cost(frame, p) < self._cost(frame, best):
                best, kind = p, FRAME_P
        else:
            intra, plan = self._choose_intra(y)
            if intra:
                best, kind = self.codec.encode(frame, self.quality, y=y, plan=plan), FRAME_I
            else:
                best, kind = self.codec.encode(frame, self.quality, reference=self.reference, y=y, plan=plan), FRAME_P
        self.reference = best.latent
        self.index += 1
        pending, section, bits, tools = self._add_residual(frame, best.pending, self.quality)
        return CodedFrame(kind, self.quality, best.payload, pending, best.estimated_bits + bits, residual=section,
                          **tools)

    def _encode_conditional(self, frame: np.ndarray) -> CodedFrame:
        """I, P or FRAME_PC, by ``lambda * MSE + bpp``.

        A PC frame is judged by its own picture. I- and latent-residual P-frames share the
        intra synthesis and quantisation, so both take the last I-frame's MSE (P pictures need
        not be synthesised); their rates are estimates. P is open only while the chain has an
        intra-space latent (after an I- or P-frame: a PC frame leaves only a context).
        Conditional frames win at low rates, residual ones at high rates, where the context's
        display saturates. Rate alone is not enough: a context that has drifted makes PC
        frames cheap *and* poor, and only an I- or P-frame restarts it. Where PC keeps winning
        clearly on continuing content, the I analysis is skipped (``PC_TRUST``)."""
        pixels = frame.shape[0] * frame.shape[1]
        kind, plans = FRAME_I, {}
        if self._forced_intra():
            quality = self.intra_quality
            y, _ = self.codec.analyse(frame, quality)
        else:
            # I and P are weighed at one quality: the chain's (a residual P-frame keeps its
            # reference's), else ``quality``.
            quality = self.reference_quality if self.reference is not None else self.quality
            try_pc = self._pc_wait == 0
            if try_pc:  # first, so that its picture is synthesised while the estimates run
                pc = self.inter.encode(frame, self.previous, self.quality, self.context.get(), self._shown,
                                       self._picture, copies=self.copies,
                                       motion_only=MOTION_ONLY)
                if self._trust_pc(pc.estimated_bits / pixels, frame):
                    return self._finish_pc(frame, pc)
            else:
                self._pc_wait -= 1
            y, _ = self.codec.analyse(frame, quality)
            plans = {FRAME_I: self.codec.plan(y, quality)}  # handed on to the coding of the winner
            if self.reference is not None:
                plans[FRAME_P] = self.codec.plan(y, quality, self.reference)
            bits = {k: self.codec.estimate_bits(y, quality, self.reference if k == FRAME_P else None, plan=p)
                    for k, p in plans.items()}
            mse = self._latent_mse()  # that picture has been synthesised meanwhile
            # An I-frame's layer (or an IL frame) recodes most blocks: priced as the last I-frame's
            # was. Without it, a burst of motion on juggle turned PQ frames into I-frames costing 27%
            # more bytes at equal PSNR, and rate control missed 5% (docs/models.md, "Session 45").
            bits[FRAME_I] += self._i_layer_bits
            costs = {k: self.decision_lmbda * mse + b / pixels for k, b in bits.items()}
            if try_pc:
                costs[FRAME_PC] = self._mse(frame, pc.recon) * self.decision_lmbda + pc.estimated_bits / pixels
            kind = min(costs, key=costs.get)
            self._i_cost = (costs[FRAME_I], 0)
            if try_pc:  # where PC frames keep losing clearly (high rates), try them ever more rarely
                clear = costs[FRAME_PC] > (1 + PC_MARGIN) * costs[kind]
                self._pc_backoff = min(2 * self._pc_backoff + 1, PC_BACKOFF_MAX) if clear else 0
                self._pc_wait = self._pc_backoff
        if kind == FRAME_PC:
            return self._finish_pc(frame, pc)
        else:
            reference = self.reference if kind == FRAME_P else None
            # The decision needs the I-frame's picture (not with an intra period of 1: no decisions).
            eager = True if kind == FRAME_I and self.intra_period != 1 else None
            best = self.codec.encode(frame, quality, reference=reference, y=y, plan=plans.get(kind), eager=eager)
            self.reference, self.reference_quality, self._last_pc = best.latent, quality, None
            self.context.from_intra(best.latent, quality)
            pending, section, extra, tools = self._add_residual(frame, best.pending, quality)
            payload, estimated = best.payload, best.estimated_bits
            if kind == FRAME_I and self.layer_intra and not self._grey:  # (a grey frame has no chroma to predict)
                flat = layer_intra.choose(self.residual, frame, self._planes, quality_lambda(self._model, quality),
                                          self.quality, pending, 8 * (len(best.payload) + len(section or b"")))
                if flat is not None:  # (the decisions keep weighing the learned I-frame: _last_latent)
                    kind, payload, estimated, self.reference = FRAME_IL, b"", 0.0, None
                    pending, section, extra, tools = flat.pending, flat.section, flat.bits, flat.tools
                    self.context.from_intra(self.inter.zero_latent(*frame.shape[:2]), quality)
            self._pc_run = 0  # PC frames since this one (RESIDUAL_CYCLE)
            # (pixel_ref models: coding a block from here shows about the I-frame's own picture)
            started = None if self.inter.pixel_ref else self.inter.show(self.context.get(), *frame.shape[:2])
            self._shown = ShownPicture(pending, frame, started) if self.preset.skip_first else None
            self._picture = pending
            # P-frames share the I-frame's synthesis and quantisation, so about its MSE. (Not
            # refreshed from P pictures: the choices must not depend on whether the caller wants
            # pictures, and synthesising them only for this would halve the encoder's speed.)
            # An I-frame at ``quality`` after PC frames is weighed with it too, though the last
            # one may have been a forced I-frame at ``intra_quality`` (a lower MSE): that
            # favours restarting the chain, which pays: judging such an I-frame by its own
            # picture cost +1.3% on 8 training clips (the one-frame decision does not see what
            # a restart saves the PC frames after it; docs/models.md, "Session 32").
            if kind in (FRAME_I, FRAME_IL):  # (an IL frame: the learned I-frame it beat)
                self._last_latent = (frame, best)
                self._i_layer_bits = max(0.0, estimated + extra - best.estimated_bits)
        self.previous = frame
        self.index += 1
        return CodedFrame(kind, quality, payload, pending, estimated + extra, residual=section, **tools)

    def _may_analyse(self, ahead: int) -> bool:
        """Whether the frame ``ahead`` frames after the one being coded may need its intra
        analysis: not while ``PC_TRUST`` would still let PC frames skip it. Only when to
        start it ahead depends on this (a frame that needs it after all gets it on the spot,
        with the same result): the lookahead thread bounds the encoder's speed, and an
        analysis nobody reads took a fifth of its time (docs/models.md, "Session 41")."""
        if self.inter is None or self._forced_intra() or self._pc_wait or self._i_cost is None or not self._last_pc:
            return True
        return self._i_cost[1] + ahead >= PC_TRUST

    def _trust_pc(self, bpp: float, frame: np.ndarray) -> bool:
        """Whether PC clearly wins without looking at I (see ``PC_TRUST``)."""
        diff = float(np.abs(frame[::4, ::4].astype(np.int16) - self.previous[::4, ::4]).mean())
        last, self._last_diff = self._last_diff, diff
        if self._last_pc is None or self._i_cost is None or self._i_cost[1] >= PC_TRUST:
            return False
        if last is None or diff > PC_TRUST_JUMP * last + 2:  # a cut, or a burst of motion
            return False
        if isinstance(self._last_pc, tuple):  # the previous PC frame's MSE, once
            shown, pc = self._last_pc
            self._last_pc = self._mse(shown, pc.recon)
        if (self.decision_lmbda * self._last_pc + bpp) * (1 + PC_TRUST_MARGIN) >= self._i_cost[0]:
            return False
        self._i_cost = (self._i_cost[0], self._i_cost[1] + 1)
        return True

    def _finish_pc(self, frame: np.ndarray, pc: InterResult) -> CodedFrame:
        self._last_pc = (frame, pc)
        self._pc_run += 1
        scale = RESIDUAL_CYCLE[(self._pc_run - 1) % len(RESIDUAL_CYCLE)]
        pending, section, bits, tools = self._add_residual(frame, pc.pending, self.quality, scale)
        self._shown = (self._shown.after(pending, frame, pc.skipped) if self._shown is not None
                       else ShownPicture(pending, frame))
        self.context.set(pc.context)
        self.reference, self.previous, self._picture = None, frame, pending
        self.index += 1
        return CodedFrame(pc.frame_type, self.quality, pc.payload, pending, pc.estimated_bits + bits, residual=section,
                          **tools)

    def _latent_mse(self) -> float | None:
        """MSE of the last I-frame, which stands for I and P."""
        if self._last_latent is not None:
            frame, r = self._last_latent
            self._latent_mse_value, self._last_latent = self._mse(frame, r.recon), None
        return self._latent_mse_value

    @staticmethod
    def _mse(frame: np.ndarray, recon: np.ndarray) -> float:
        return float(np.mean((recon.astype(np.float64) - frame) ** 2))
