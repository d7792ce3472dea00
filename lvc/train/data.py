"""Training data: a pre-extracted frame cache and a random-crop sampler.

Decoding JPEGs and video on every step would steal the two cores from training, so
frames are decoded once into a flat uint8 file (memory-mapped) plus an index, and each
step only slices crops out of it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lvc.errors import InputError
from lvc.io.reader import IMAGE_SUFFIXES, open_video

VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".webm", ".y4m", ".264", ".265", ".h264", ".hevc"}


def collect_sources(paths: list[str | os.PathLike]) -> list[Path]:
    """Image and video files under ``paths`` (files or folders, searched recursively)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
        elif p.exists():
            out.append(p)
        else:
            raise InputError("no such file or folder", str(p), "pass image/video files or folders")
    if not out:
        raise InputError("no images or videos found", ", ".join(map(str, paths)), "pass folders holding them")
    return out


def _resize(img: np.ndarray, scale: float) -> np.ndarray:
    if scale >= 0.999:
        return img
    h, w = img.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.LANCZOS))


@dataclass
class FrameCache:
    """Frames stored back to back in one uint8 file; ``index`` holds (offset, h, w, source)."""

    data: np.ndarray
    index: np.ndarray  # (n, 4) int64: byte offset, height, width, position of the source file

    @classmethod
    def build(cls, sources: list[Path], cache_dir: Path, crop: int, frames_per_video: int = 24,
              seed: int = 0) -> FrameCache:
        """Decode ``sources`` once (random downscale to shed compression artefacts)."""
        spec = json.dumps([str(s) for s in sources] + [crop, frames_per_video, seed])
        key = hashlib.sha256(spec.encode()).hexdigest()[:16]
        cache_dir.mkdir(parents=True, exist_ok=True)
        data_path, index_path = cache_dir / f"frames-{key}.u8", cache_dir / f"frames-{key}.idx.npy"
        if index_path.exists() and np.load(index_path, mmap_mode="r").shape[1] != 4:  # written before sources were kept
            index_path.unlink()
        if not (data_path.exists() and index_path.exists()):
            rng = np.random.default_rng(seed)
            tmp = data_path.with_suffix(".tmp")
            index, offset = [], 0
            with open(tmp, "wb") as f:
                for k, src in enumerate(sources):
                    for img in _frames_of(src, frames_per_video):
                        short = min(img.shape[:2])
                        if short < crop:
                            continue
                        lo = max(crop / short, 0.5 if short >= 2 * crop else crop / short)
                        img = np.ascontiguousarray(_resize(img, float(rng.uniform(lo, 1.0))))
                        f.write(img.tobytes())
                        index.append((offset, img.shape[0], img.shape[1], k))
                        offset += img.size
            if not index:
                tmp.unlink()
                raise InputError(f"no frame is at least {crop}x{crop}", str(sources[0].parent),
                                 "use larger images or a smaller --crop")
            np.save(index_path, np.asarray(index, dtype=np.int64))
            os.replace(tmp, data_path)
        return cls(np.memmap(data_path, dtype=np.uint8, mode="r"), np.load(index_path))

    def __len__(self) -> int:
        return len(self.index)


def _frames_of(src: Path, count: int):
    if src.suffix.lower() in IMAGE_SUFFIXES:
        with Image.open(src) as im:
            yield np.asarray(im.convert("RGB"))
        return
    with open_video(src) as v:
        total = v.info.frame_count or 300
        step = max(1, total // count)
        for i, frame in enumerate(v.frames()):
            if i % step == 0:
                yield frame


SAMPLE_BY = ("source", "area")


def frame_weights(index: np.ndarray, crop: int, by: str = "source") -> np.ndarray:
    """Probability of drawing each frame's crops.

    ``area`` weighs frames by their number of crop positions, so a few 720p clips (24 frames
    each) outweigh hundreds of 481x321 photos: in the shipped data mix, 16 clips took 84% of
    the crops and BSDS500's 200 training photos 2.6%. ``source`` gives every file (a photo
    or a whole clip) the same share, split over its frames by area: scene diversity, not
    pixel count, is what the transforms learn from.
    """
    if by not in SAMPLE_BY:
        raise ValueError(f"sample-by must be one of {SAMPLE_BY}, not {by!r}")
    area = ((index[:, 1] - crop + 1) * (index[:, 2] - crop + 1)).astype(np.float64)
    if by == "source":
        src = index[:, 3]
        per_source = np.bincount(src, weights=area)
        area = area / per_source[src]
    return area / area.sum()


class CropSampler:
    """Random crops with horizontal flips; frames drawn by ``frame_weights``."""

    def __init__(self, cache: FrameCache, crop: int, seed: int, by: str = "source") -> None:
        self.cache, self.crop = cache, crop
        self.p = frame_weights(cache.index, crop, by)
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int) -> torch.Tensor:
        out = np.empty((size, self.crop, self.crop, 3), dtype=np.uint8)
        for b, i in enumerate(self.rng.choice(len(self.p), size=size, p=self.p)):
            off, h, w = self.cache.index[i, :3]
            img = self.cache.data[off: off + h * w * 3].reshape(h, w, 3)
            y, x = self.rng.integers(0, h - self.crop + 1), self.rng.integers(0, w - self.crop + 1)
            patch = img[y: y + self.crop, x: x + self.crop]
            out[b] = patch[:, ::-1] if self.rng.random() < 0.5 else patch
        return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state
