"""Run codecs over inputs at their RD points, with a resumable per-point result cache.

Each finished point is stored as one JSON file keyed by (input content, codec, version,
point), so an interrupted bench resumes without redoing it, and a cache copied to another
machine or checkout (the inputs' paths and times differ there) is still used. Rates come
from real file sizes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lvc.bench.codecs import Codec
from lvc.io.convert import rgb_to_planes
from lvc.io.reader import IMAGE_SUFFIXES, open_video
from lvc.metrics import frame_metrics, plane_metrics, psnr


@dataclass
class Reference:
    """What every codec is scored against: RGB for images, yuv420p planes (and their RGB view) for video."""

    path: Path  # the file codecs read: the image itself, or a prepared yuv420p y4m
    name: str
    kind: str  # "image" | "video"
    frames: list[np.ndarray]  # RGB
    fps: float
    yuv: list | None = None

    @functools.cached_property
    def digest(self) -> str:
        """SHA-256 of the file codecs read: what the result cache keys on, not its path or time."""
        h = hashlib.sha256()
        with open(self.path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()

    @property
    def pixels(self) -> int:
        return len(self.frames) * self.frames[0].shape[0] * self.frames[0].shape[1]


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files, folders (images/videos inside, sorted) or a JSON/YAML list of paths."""
    out: list[Path] = []
    for item in map(Path, inputs):
        if item.suffix == ".json":
            out += expand_inputs(json.loads(item.read_text()))
        elif item.suffix in (".yaml", ".yml"):
            import yaml

            out += expand_inputs(yaml.safe_load(item.read_text()))
        elif item.is_dir():
            out += sorted(p for p in item.iterdir() if p.is_file())
        else:
            out.append(item)
    return out


def load_reference(path: Path, max_frames: int | None, refs: Path) -> Reference:
    """Images as RGB; videos prepared once as a yuv420p y4m (no RGB round trip) in ``refs``."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        with open_video(path) as v:
            return Reference(path, path.stem, "image", [next(iter(v.frames()))], 1.0)
    import av

    from lvc.io.convert import frame_planes, planes_to_rgb

    refs.mkdir(parents=True, exist_ok=True)
    with open_video(path) as v:  # validates the input with lvc's own error messages
        fps = v.info.fps
    y4m = refs / f"{path.stem}_{max_frames or 'all'}.y4m"
    planes = []
    with av.open(str(path)) as src:
        frames = (f for _, f in zip(range(max_frames or 1 << 30), src.decode(video=0)))
        if not y4m.exists():
            tmp = y4m.with_suffix(".tmp.y4m")
            with av.open(str(tmp), "w", format="yuv4mpegpipe") as dst:
                stream = None
                for f in frames:
                    f = f.reformat(format="yuv420p")
                    if stream is None:
                        stream = dst.add_stream("rawvideo", rate=fps)
                        stream.width, stream.height, stream.pix_fmt = f.width, f.height, "yuv420p"
                    f.pts = None
                    for pkt in stream.encode(f):
                        dst.mux(pkt)
                    planes.append(frame_planes(f))
                for pkt in stream.encode(None):
                    dst.mux(pkt)
            os.replace(tmp, y4m)
    if not planes:
        with av.open(str(y4m)) as src:
            planes = [frame_planes(f) for f in src.decode(video=0)]
    return Reference(y4m, path.stem, "video", [planes_to_rgb(p) for p in planes], float(fps), planes)


def _key(ref: Reference, codec: Codec, point) -> str:
    version = codec.still_version if len(ref.frames) == 1 and codec.still_version else codec.version
    raw = json.dumps([ref.name, ref.digest, len(ref.frames), codec.name, version, point])
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def run_point(ref: Reference, codec: Codec, point, cache: Path, ms_ssim: bool = True) -> dict:
    path = cache / f"{_key(ref, codec, point)}.json"
    if path.exists():
        return json.loads(path.read_text())
    with tempfile.TemporaryDirectory(dir=cache) as work:
        coded = codec.run(ref.frames, ref.path, point, Path(work))
    per_frame = []
    for i, (a, b) in enumerate(zip(ref.frames, coded.rgb)):
        if ref.yuv is None:
            per_frame.append(frame_metrics(a, b, ms_ssim))
        else:
            test_yuv = coded.yuv[i] if coded.yuv is not None else rgb_to_planes(b)
            m = plane_metrics(ref.yuv[i], test_yuv, ms_ssim)
            m["psnr_rgb"] = psnr(float(np.mean((a.astype(np.float64) - b) ** 2)))
            per_frame.append(m)
    n = len(ref.frames)
    if len(coded.rgb) != n:
        raise RuntimeError(f"{codec.name} returned {len(coded.rgb)} of {n} frames for {ref.name}")
    mean = {k: float(np.mean([f[k] for f in per_frame])) for k in per_frame[0]}
    row = {"sequence": ref.name, "codec": codec.name, "param": point, "bytes": coded.bytes,
           "bpp": coded.bytes * 8 / ref.pixels, "kbps": coded.bytes * 8 * ref.fps / n / 1000, "frames": n,
           "encode_fps": n / coded.encode_seconds, "decode_fps": n / max(coded.decode_seconds, 1e-9),
           "peak_rss_mb": coded.peak_rss_mb, "command": coded.command, **mean, "per_frame": per_frame}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(row))
    os.replace(tmp, path)
    return row
