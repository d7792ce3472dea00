"""Run codecs over inputs at their RD points, with a resumable per-point result cache.

Each finished point is stored as one JSON file keyed by (input, codec, version, point),
so an interrupted bench resumes without redoing it. Rates come from real file sizes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lvc.bench.codecs import Codec
from lvc.io.reader import IMAGE_SUFFIXES, open_video
from lvc.metrics import MetricAccumulator


@dataclass
class Reference:
    path: Path
    name: str
    kind: str  # "image" | "video"
    frames: list[np.ndarray]
    fps: float

    @property
    def pixels(self) -> int:
        return len(self.frames) * self.frames[0].shape[0] * self.frames[0].shape[1]


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files, folders (images/videos inside, sorted) or a JSON list of paths."""
    out: list[Path] = []
    for item in map(Path, inputs):
        if item.suffix == ".json":
            out += expand_inputs(json.loads(item.read_text()))
        elif item.is_dir():
            out += sorted(p for p in item.iterdir() if p.is_file())
        else:
            out.append(item)
    return out


def load_reference(path: Path, max_frames: int | None) -> Reference:
    with open_video(path) as v:
        frames = [f for _, f in zip(range(max_frames or 1 << 30), v.frames())]
        fps = float(v.info.fps)
    kind = "image" if path.suffix.lower() in IMAGE_SUFFIXES else "video"
    return Reference(path, path.stem, kind, frames, fps)


def _key(ref: Reference, codec: Codec, point) -> str:
    st = ref.path.stat()
    raw = json.dumps([str(ref.path.resolve()), st.st_size, st.st_mtime_ns, len(ref.frames), codec.name,
                      codec.version, point])
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def run_point(ref: Reference, codec: Codec, point, cache: Path, ms_ssim: bool = True) -> dict:
    path = cache / f"{_key(ref, codec, point)}.json"
    if path.exists():
        return json.loads(path.read_text())
    with tempfile.TemporaryDirectory(dir=cache) as work:
        coded = codec.run(ref.frames, ref.path, point, Path(work))
    acc = MetricAccumulator(with_ms_ssim=ms_ssim)
    for a, b in zip(ref.frames, coded.frames):
        acc.add(a, b)
    n = len(ref.frames)
    row = {"sequence": ref.name, "codec": codec.name, "param": point, "bytes": coded.bytes,
           "bpp": coded.bytes * 8 / ref.pixels, "kbps": coded.bytes * 8 * ref.fps / n / 1000, "frames": n,
           "encode_fps": n / coded.encode_seconds, "decode_fps": n / max(coded.decode_seconds, 1e-9),
           "command": coded.command, **acc.mean(), "per_frame": acc.frames}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(row))
    os.replace(tmp, path)
    return row
