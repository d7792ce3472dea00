"""Typed library API mirroring the CLI: :func:`encode`, :func:`decode`, :func:`info`."""

from __future__ import annotations

import itertools
import math
import os
import sys
import time
import warnings
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction

import numpy as np
import torch

from lvc.bitstream.container import (
    FRAME_I,
    FRAME_P,
    FRAME_PC,
    FRAME_PS,
    LvcReader,
    LvcWriter,
    SequenceHeader,
    pack_frame,
)
from lvc.bitstream.syntax import COLOUR_RGB, COLOUR_YUV420, VERSION_MAJOR, VERSION_MINOR
from lvc.codec.decoder import SequenceDecoder
from lvc.codec.ratecontrol import search_quality
from lvc.codec.residual_rdo import RESIDUAL_WEIGHT
from lvc.codec.sequence import PRESETS, SequenceEncoder, quality_to_int
from lvc.codec.synthesis import WorkerPool, default_workers, serial_main_thread
from lvc.errors import BitstreamError, InputError, LvcError
from lvc.io.convert import Planes, planes_to_rgb, rgb_to_planes
from lvc.io.reader import VideoInfo, open_video
from lvc.io.writer import FrameWriter, output_kind
from lvc.metrics import MetricAccumulator
from lvc.models.frozen import FrozenModel
from lvc.models.registry import default_model, load_model, model_for_stream

PathLike = str | os.PathLike


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


@dataclass
class DecodeResult:
    frames: int
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    sha256: str | None = None  # of the pictures scored against the reference (as EncodeResult.recon_sha256)

    def to_dict(self) -> dict:
        return {**asdict(self), "decode_fps": self.frames / self.seconds}


def _progress(total: int | None, desc: str, enabled: bool | None):
    from tqdm import tqdm

    if enabled is None:
        enabled = sys.stdout.isatty() and sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit="frame", disable=not enabled, leave=False, dynamic_ncols=True)


def _threads(n: int | None) -> None:
    if n is not None:
        if n < 1:
            raise InputError(f"--threads must be >= 1 (got {n})")
        torch.set_num_threads(n)


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
           residual: float | None = None, colour: str = "auto") -> EncodeResult:
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
    _threads(threads)
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
                              residual=weight, colour_format=fmt)
        size, n, est = len(header.pack()), 0, 0.0
        pending: deque = deque()  # reconstructions still being synthesised, scored in order

        def score() -> None:
            (frame, planes), coded = pending.popleft()
            acc.add(frame, coded.recon, planes)

        with open_video(input, fps) as s, _progress(total, desc, progress) as bar:
            try:
                frames = itertools.islice(_source(s, yuv), max_frames)
                ahead = torch.get_num_threads() > 1  # work on the next frame beside this one's
                upcoming = next(frames, None)
                while upcoming is not None:
                    (frame, planes), upcoming = upcoming, next(frames, None)  # one ahead: lvc.codec.lookahead
                    coded = enc.encode(frame, upcoming[0] if ahead and upcoming is not None else None, planes)
                    unit = (coded.frame_type, coded.quality, coded.payload, coded.grey, coded.residual)
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
            for (frame, planes), recon in zip(_source(s, yuv), iter_decode(output, fm, planes=yuv), strict=False):
                acc.add(frame, recon, planes)
    seconds = time.perf_counter() - t0
    return EncodeResult(frames, info.width, info.height, float(info.fps), size, est, seconds,
                        acc.mean() if acc else {}, q / 65535, len(search.probes) if search else 0,
                        acc.digest if acc else None)


COLOUR_CHOICES = ("auto", "yuv420", "rgb")


def _source(src, planes: bool) -> Iterator[tuple[np.ndarray, tuple | None]]:
    """(RGB frame, its yuv420p planes or None) of an opened input."""
    return src.frames_with_planes() if planes else ((f, None) for f in src.frames())


def _from_newer(e: LvcError, version: tuple[int, int]) -> LvcError:
    """``e`` (a frame the decoder refused), or where the stream's minor version is newer than
    this lvc's, the same error with the likelier cause as its hint: a feature this lvc does
    not know, not corruption."""
    if not isinstance(e, BitstreamError) or version[1] <= VERSION_MINOR:
        return e
    return BitstreamError(e.what, e.where, f"the stream is format {version[0]}.{version[1]}, newer than this "
                          f"lvc's {VERSION_MAJOR}.{VERSION_MINOR}: decode it with a newer lvc")


def iter_decode(input: PathLike, model: str | FrozenModel | None = None,
                planes: bool | None = False) -> Iterator[np.ndarray | Planes]:
    """Decoded frames, streamed in order: RGB (H, W, 3), or with ``planes`` yuv420p planes
    (Y, U, V), or with ``planes=None`` as the stream shows them (its colour format). Either
    is converted by swscale (lvc.io.convert) where the stream shows the other.

    Entropy decoding runs ahead by as many frames as there are synthesis workers (plus one),
    so the syntheses of consecutive frames overlap. Pictures that are composed from the
    previous one (blends and skipped blocks of conditional frames, grey frames) are composed
    in order on a thread of their own: the decoding thread, the slowest stage, then only
    entropy-decodes and runs the exact integer networks.
    """
    with LvcReader(input) as r:
        h = r.header
        fm = model_for_stream(h.model_name, h.weights_hash, model, str(input))
        dec = SequenceDecoder(fm, h.width, h.height, str(input), default_workers(), h.colour_format)
        native = h.colour_format == COLOUR_YUV420
        convert = None if planes is None or planes == native else (rgb_to_planes if planes else planes_to_rgb)
        compose = WorkerPool(1, "lvc-compose")
        pending: deque = deque()
        try:
            with serial_main_thread():
                try:
                    for unit in r.units():
                        try:
                            picture = dec.decode_async(unit)
                        except BitstreamError as e:  # (not the reader's CRC and length checks: damage)
                            raise _from_newer(e, h.version) from None
                        pending.append(compose.submit(_shown, picture, convert))
                        if len(pending) > dec.codec.synthesis.workers + 1:
                            yield pending.popleft().result()
                except LvcError:  # a bad unit: the frames decoded before it still come out first
                    while pending:
                        yield pending.popleft().result()
                    raise
                while pending:
                    yield pending.popleft().result()
        finally:
            compose.close()
            dec.close()


def _shown(picture, convert):
    """A decoded picture in the caller's representation."""
    out = picture.result()
    return out if convert is None else convert(out)


def decode(input: PathLike, output: PathLike | None = None, model: str | None = None, threads: int | None = None,
           reference: PathLike | None = None, progress: bool | None = None) -> DecodeResult:
    """Decode an ``.lvc`` file to y4m/mp4/png/folder; optionally score it against ``reference``."""
    _threads(threads)
    if output is not None:
        output_kind(output)  # fail on a bad output name before any work
    with LvcReader(input) as r:
        h = r.header
    yuv = h.colour_format == COLOUR_YUV420  # pictures come (and are written, scored) as they are shown
    acc = MetricAccumulator() if reference is not None else None
    ref_iter = open_video(reference) if reference is not None else None
    ref_frames = _source(ref_iter, yuv) if ref_iter is not None else None
    try:
        writer = FrameWriter(output, h.width, h.height, h.fps) if output is not None else None
    except BaseException:
        if ref_iter is not None:
            ref_iter.close()
        raise
    n = 0
    t0 = time.perf_counter()
    try:
        with _progress(h.frame_count, "decode", progress) as bar:
            for frame in iter_decode(input, model, planes=yuv):
                if writer is not None:
                    writer.write(frame)
                if ref_frames is not None:
                    ref, ref_planes = next(ref_frames, (None, None))
                    if ref is None or ref.shape[:2] != (h.height, h.width):
                        raise InputError("reference does not match the decoded video", str(reference),
                                         "pass the video that was encoded")
                    acc.add(ref, frame, ref_planes)
                n += 1
                bar.update(1)
        if writer is not None:
            writer.commit()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        if ref_iter is not None:
            ref_iter.close()
    return DecodeResult(n, time.perf_counter() - t0, acc.mean() if acc else {}, acc.digest if acc else None)


def info(input: PathLike) -> dict:
    """Header fields and per-frame unit sizes, without decoding any frame."""
    with LvcReader(input) as r:
        h = r.header
        names = {FRAME_I: "I", FRAME_P: "P", FRAME_PC: "PC", FRAME_PS: "PS"}
        units = [{"index": u.index, "type": names.get(u.frame_type, str(u.frame_type)), "grey": u.grey,
                  "quality": round(u.quality / 65535, 5), "bytes": u.size, "payload_bytes": len(u.payload),
                  "residual_bytes": len(u.residual or b"")}
                 for u in r.units()]
        header_bytes = r.header_size
    total = header_bytes + sum(u["bytes"] for u in units)
    return {
        "version": f"{h.version[0]}.{h.version[1]}", "colour_format": ("rgb", "yuv420")[h.colour_format],
        "model": h.model_name, "weights_hash": h.weights_hash.hex(),
        "width": h.width, "height": h.height, "fps": f"{h.fps.numerator}/{h.fps.denominator}",
        "frame_count": h.frame_count, "intra_period": h.intra_period, "bytes": total,
        "bpp": total * 8 / (h.frame_count * h.width * h.height),
        "kbps": total * 8 * float(h.fps) / h.frame_count / 1000, "frames": units,
    }
