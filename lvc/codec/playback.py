"""Decoding side of the typed API: :func:`iter_decode`, :func:`decode`, :func:`info`
(re-exported by :mod:`lvc.codec.api`)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from lvc.bitstream.container import FRAME_NAMES, LvcReader
from lvc.bitstream.syntax import COLOUR_YUV420, VERSION_MAJOR, VERSION_MINOR
from lvc.codec.decoder import SequenceDecoder
from lvc.codec.runtime import PathLike, progress_bar, set_threads, source_frames
from lvc.codec.synthesis import WorkerPool, default_workers, serial_main_thread
from lvc.errors import BitstreamError, InputError, LvcError
from lvc.io.convert import Planes, planes_to_rgb, rgb_to_planes
from lvc.io.reader import open_video
from lvc.io.writer import FrameWriter, output_kind
from lvc.metrics import MetricAccumulator
from lvc.models.frozen import FrozenModel
from lvc.models.registry import model_for_stream


@dataclass
class DecodeResult:
    frames: int
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    sha256: str | None = None  # of the pictures scored against the reference (as EncodeResult.recon_sha256)

    def to_dict(self) -> dict:
        return {**asdict(self), "decode_fps": self.frames / self.seconds}


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
                # A bad unit: the frames decoded before it still come out first, then its error.
                units, failure = r.units(), None
                while True:
                    try:
                        unit = next(units, None)
                    except LvcError as e:  # the reader's CRC and length checks: damage
                        failure = e
                        break
                    if unit is None:
                        break
                    try:
                        picture = dec.decode_async(unit)
                    except BitstreamError as e:
                        failure = _from_newer(e, h.version)
                        break
                    except LvcError as e:
                        failure = e
                        break
                    pending.append(compose.submit(_shown, picture, convert))
                    if len(pending) > dec.codec.synthesis.workers + 1:
                        yield pending.popleft().result()  # (a picture's own error, e.g. its layer's, raises here)
                while pending:
                    yield pending.popleft().result()
                if failure is not None:
                    raise failure
        finally:
            compose.close()
            dec.close()


def _shown(picture, convert: Callable | None) -> np.ndarray | Planes:
    """A decoded picture in the caller's representation."""
    out = picture.result()
    return out if convert is None else convert(out)


def decode(input: PathLike, output: PathLike | None = None, model: str | None = None, threads: int | None = None,
           reference: PathLike | None = None, progress: bool | None = None) -> DecodeResult:
    """Decode an ``.lvc`` file to y4m/mp4/png/folder; optionally score it against ``reference``."""
    set_threads(threads)
    if output is not None:
        output_kind(output)  # fail on a bad output name before any work
    with LvcReader(input) as r:
        h = r.header
    yuv = h.colour_format == COLOUR_YUV420  # pictures come (and are written, scored) as they are shown
    acc = MetricAccumulator() if reference is not None else None
    ref_iter = open_video(reference) if reference is not None else None
    ref_frames = source_frames(ref_iter, yuv) if ref_iter is not None else None
    try:
        writer = FrameWriter(output, h.width, h.height, h.fps) if output is not None else None
    except BaseException:
        if ref_iter is not None:
            ref_iter.close()
        raise
    n = 0
    t0 = time.perf_counter()
    try:
        with progress_bar(h.frame_count, "decode", progress) as bar:
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
        units = [{"index": u.index, "type": FRAME_NAMES.get(u.frame_type, str(u.frame_type)), "grey": u.grey,
                  "quality": round(u.quality / 65535, 5), "bytes": u.size, "payload_bytes": len(u.payload),
                  "residual_bytes": len(u.residual or b""), "intra_blocks": u.intra,
                  "small_transforms": u.small}
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
