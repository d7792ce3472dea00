"""Typed library API mirroring the CLI: :func:`encode` here; :func:`decode`,
:func:`iter_decode` and :func:`info` from :mod:`lvc.codec.playback`."""

from __future__ import annotations

import itertools
import math
import time
import warnings
from collections import deque
from dataclasses import asdict, dataclass, field
from fractions import Fraction

import torch

from lvc.bitstream.container import (
    LvcWriter,
    SequenceHeader,
    pack_frame,
)
from lvc.bitstream.syntax import COLOUR_RGB, COLOUR_YUV420
from lvc.codec.playback import DecodeResult, decode, info, iter_decode
from lvc.codec.ratecontrol import search_quality
from lvc.codec.residual_rdo import RESIDUAL_WEIGHT
from lvc.codec.runtime import COLOUR_CHOICES, PathLike, keep_freed_memory, progress_bar, set_threads, source_frames
from lvc.codec.sequence import PRESETS, SequenceEncoder, quality_to_int
from lvc.errors import InputError
from lvc.io.reader import VideoInfo, open_video
from lvc.metrics import MetricAccumulator
from lvc.models.registry import default_model, load_model

__all__ = ["COLOUR_CHOICES", "DecodeResult", "EncodeResult", "decode", "encode", "info", "iter_decode"]



@dataclass
class EncodeResult:
    frames: int
    width: int
    height: int
    fps: float
    bytes: int
    estimated_bits: float
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)  # encoder's reconstruction vs input
    quality: float = 0.5  # the quality used (chosen by rate control with a bitrate target)
    rate_passes: int = 0  # rate control's probe passes (a final pass, when there is one, not counted)
    recon_sha256: str | None = None  # of the shown pictures scored (lvc.metrics.MetricAccumulator.digest)

    @property
    def bpp(self) -> float:
        return self.bytes * 8 / (self.frames * self.width * self.height)

    @property
    def kbps(self) -> float:
        return self.bytes * 8 * self.fps / self.frames / 1000

    def to_dict(self) -> dict:
        return {**asdict(self), "bpp": self.bpp, "kbps": self.kbps, "encode_fps": self.frames / self.seconds}


def _is_still(input: PathLike, fps: Fraction | None, info: VideoInfo, max_frames: int | None) -> bool:
    """One frame to code: the image model and a still image's encoder effort. Containers
    that do not state their length (y4m, raw streams) are looked into for a second frame."""
    if info.kind == "image" or max_frames == 1 or info.frame_count == 1:
        return True
    if info.frame_count is None:
        with open_video(input, fps) as src:
            return sum(1 for _ in itertools.islice(src.frames(), 2)) == 1
    return False


# Rate control keeps a probe's frame units up to this size, to write them instead of a last pass.
KEEP_PROBE_BYTES = 64 << 20


def encode(input: PathLike, output: PathLike, quality: float = 0.5, model: str | None = None,
           intra_period: int = 32, threads: int | None = None, max_frames: int | None = None,
           fps: Fraction | None = None, progress: bool | None = None, metrics: bool = True,
           refine: int | None = None, preset: str = "medium", bitrate: float | None = None,
           ms_ssim: bool = True, reuse_probe: bool = True, intra_offset: float | None = None,
           residual: float | None = None, colour: str = "auto", deblock: bool = True,
           intra_blocks: bool = True, small_transforms: bool = True, layer_intra: bool = True) -> EncodeResult:
    """Encode a video/image/PNG folder to an ``.lvc`` file (written atomically).

    Without ``model``, a still image (or a single frame) takes the shipped image model and
    video the shipped video model (:func:`lvc.models.registry.default_model`).
    ``preset`` (fast | medium | slow) sets the encoder's effort (a still image's own budget:
    :data:`lvc.codec.presets.PRESETS`); ``refine`` overrides its encoder-side latent
    refinement steps per frame. ``bitrate`` (kbps) replaces ``quality``:
    the quality is searched with whole encoding passes so the file lands on that rate; the
    chosen pass is written as it was coded (``reuse_probe``; its metrics then come from
    decoding the file), else coded once more with the encoder's reconstruction scored.
    ``metrics`` scores the encoder's reconstruction against the input (PSNR), ``ms_ssim``
    adds SSIM and MS-SSIM (about a third of a 416x240 encode's time at the default preset).
    ``intra_offset`` (default :data:`lvc.codec.sequence.INTRA_OFFSET`; none for a still image)
    raises a video model's forced I-frames (and their residual P-frames) by that share of the
    headroom above ``quality``, at which its conditional P-frames are coded.
    ``residual`` (default :data:`lvc.codec.residual_rdo.RESIDUAL_WEIGHT` for video, 0 for a
    still image) weighs the residual layer's rate against the quality's lambda; 0 codes none.
    ``deblock=False`` keeps colour format 1's layers unfiltered (no in-loop deblocking,
    :mod:`lvc.codec.deblock`); ``intra_blocks=False`` codes no intra macroblocks in them
    (:mod:`lvc.codec.intra`, format 1.7), ``small_transforms=False`` no luma block as 4x4
    transforms (:mod:`lvc.codec.transform`, format 1.8), ``layer_intra=False`` every I-frame
    learned, none coded by the layer alone (:mod:`lvc.codec.layer_intra`, format 1.9).
    Encoding tells glibc's malloc, for the whole process, to keep freed memory
    (:func:`lvc.codec.runtime.keep_freed_memory`).
    ``colour`` picks the colour format: ``yuv420`` shows yuv420p planes coded against the
    source's own (format 1.4, :mod:`lvc.codec.colour`), ``rgb`` RGB pictures; ``auto`` takes
    ``yuv420`` for a video file and ``rgb`` for images and still pictures.
    """
    if not 0.0 <= quality <= 1.0:
        raise InputError(f"quality {quality} is outside [0, 1]", None, "pass --quality between 0 and 1")
    for name, value in (("intra_period", intra_period), ("refine", refine or 0), ("max_frames", max_frames or 1)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise InputError(f"{name} must be an integer (got {value!r})")
    if max_frames is not None and max_frames < 1:
        raise InputError(f"max_frames must be >= 1 (got {max_frames})")
    if intra_period < -1 or intra_period > 65535:
        raise InputError(f"intra period {intra_period} is invalid", None, "use -1 (first frame only) or 0..65535")
    if intra_offset is not None and not 0.0 <= intra_offset <= 1.0:
        raise InputError(f"intra offset {intra_offset} is outside [0, 1]", None, "pass --intra-offset between 0 and 1")
    if residual is not None and not (math.isfinite(residual) and residual >= 0):
        raise InputError(f"residual weight {residual} is invalid", None, "pass a residual weight >= 0 (0: none)")
    if colour not in COLOUR_CHOICES:
        raise InputError(f"unknown colour format {colour!r}", None, f"use one of {', '.join(COLOUR_CHOICES)}")
    if refine is not None and refine < 0:
        raise InputError(f"refine steps must be >= 0 (got {refine})")
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}", None, f"use one of {', '.join(PRESETS)}")
    if bitrate is not None and not (isinstance(bitrate, (int, float)) and math.isfinite(bitrate) and bitrate > 0):
        raise InputError(f"bitrate {bitrate!r} is invalid", None, "pass --bitrate in kbps, > 0")
    set_threads(threads)
    keep_freed_memory()
    t0 = time.perf_counter()
    with open_video(input, fps) as src:
        info = src.info
    still = _is_still(input, fps, info, max_frames)
    fm = load_model(model or default_model(still=still))
    steps = PRESETS[preset].still_steps(info.width * info.height) if still and refine is None else refine
    rate = info.fps if max(info.fps.numerator, info.fps.denominator) <= 1_000_000 else \
        info.fps.limit_denominator(10_000)
    yuv = colour == "yuv420" or (colour == "auto" and info.kind == "video" and not still)
    fmt = COLOUR_YUV420 if yuv else COLOUR_RGB
    header = SequenceHeader(fm.name, fm.weights_hash, info.width, info.height, rate, 1, max(intra_period, 0),
                            colour_format=fmt)
    try:
        header.pack()  # range-check every field before any encoding pass
    except ValueError as e:
        raise InputError(f"cannot be coded: {e}", str(input)) from None
    total = min(x for x in (info.frame_count, max_frames) if x) if (info.frame_count or max_frames) else None

    def run(q: int, writer: LvcWriter | None, acc: MetricAccumulator | None, desc: str,
            keep: list | None = None) -> tuple[int, int, float]:
        """One encoding pass: (frames, file bytes, estimated bits). ``keep`` collects the
        frame units while they total at most ``KEEP_PROBE_BYTES`` (then it is cleared and
        stops), so that rate control can write its chosen probe instead of coding it again."""
        enc = SequenceEncoder(fm, q, intra_period, steps, preset, synthesize=acc is not None, intra_offset=offset,
                              residual=weight, colour_format=fmt, deblock=deblock,
                              intra_blocks=intra_blocks, small_transforms=small_transforms,
                              layer_intra=layer_intra)
        size, n, est = len(header.pack()), 0, 0.0
        pending: deque = deque()  # reconstructions still being synthesised, scored in order

        def score() -> None:
            (frame, planes), coded = pending.popleft()
            acc.add(frame, coded.recon, planes)

        with open_video(input, fps) as s, progress_bar(total, desc, progress) as bar:
            try:
                frames = itertools.islice(source_frames(s, yuv), max_frames)
                ahead = torch.get_num_threads() > 1  # work on the next frame beside this one's
                upcoming = next(frames, None)
                while upcoming is not None:
                    (frame, planes), upcoming = upcoming, next(frames, None)  # one ahead: lvc.codec.lookahead
                    coded = enc.encode(frame, upcoming[0] if ahead and upcoming is not None else None, planes)
                    unit = (coded.frame_type, coded.quality, coded.payload, coded.grey, coded.residual, coded.intra,
                            coded.small)
                    size += len(pack_frame(*unit))
                    if writer is not None:
                        writer.write_frame(*unit)
                    if keep is not None and size <= KEEP_PROBE_BYTES:
                        keep.append(unit)
                    elif keep:
                        keep.clear()
                    est += coded.estimated_bits
                    n += 1
                    if acc is not None:
                        pending.append(((frame, planes), coded))
                        while len(pending) > enc.codec.synthesis.workers:
                            score()
                    bar.update(1)
                while pending:
                    score()
            finally:
                enc.close()
        return n, size, est

    q = quality_to_int(quality)
    offset = 0 if still else None if intra_offset is None else quality_to_int(intra_offset)
    weight = 0.0 if still else RESIDUAL_WEIGHT if residual is None else float(residual)
    search = None
    # The probe nearest the target so far (the one the search returns): quality -> (frame
    # units, frames, estimated bits, |log rate error|). At most two probes' units are held
    # (the kept one and the one being coded), each up to KEEP_PROBE_BYTES.
    probed: dict[int, tuple[list, int, float, float]] = {}
    if bitrate is not None:
        def measure(qq: int) -> float:
            units: list | None = [] if reuse_probe else None
            n, size, est = run(qq, None, None, f"rate q={qq / 65535:.3f}", units)
            bits = size * 8 * float(rate) / max(n, 1)
            err = abs(math.log(bits / (bitrate * 1000)))
            if units and all(err < kept[3] for kept in probed.values()):
                probed.clear()
                probed[qq] = (units, n, est, err)
            return bits

        search = search_quality(measure, bitrate * 1000)
        q = search.quality
        if not search.reachable:
            low = " (lower rates: --intra-offset 0)" if fm.inter is not None and offset != 0 else ""
            warnings.warn(f"{bitrate} kbps is outside this model's range for this input{low}; "
                          f"encoding at quality {q / 65535:.3f} ({search.bits / 1000:.1f} kbps)", stacklevel=2)
    acc = MetricAccumulator(with_ms_ssim=ms_ssim) if metrics else None
    with LvcWriter(output, header) as w:
        if q in probed:  # the chosen probe's units: the same encoder, quality and seed would code them again
            units, frames, est, _ = probed[q]
            for unit in units:
                w.write_frame(*unit)
        else:
            probed.clear()
            frames, _, est = run(q, w, acc, "encode")
        w.commit()
        size = w.bytes_written
    if q in probed and acc is not None:  # score what the decoder shows: the encoder's reconstruction
        with open_video(input, fps) as s:
            shown = iter_decode(output, fm, planes=yuv)
            for (frame, planes), recon in zip(source_frames(s, yuv), shown, strict=False):
                acc.add(frame, recon, planes)
    seconds = time.perf_counter() - t0
    return EncodeResult(frames, info.width, info.height, float(info.fps), size, est, seconds,
                        acc.mean() if acc else {}, q / 65535, len(search.probes) if search else 0,
                        acc.digest if acc else None)
