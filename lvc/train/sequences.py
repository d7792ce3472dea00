"""Short frame sequences for inter training: random co-located crops of consecutive frames,
with the block motion between them estimated once, stored in one memory-mapped file.

Each clip is decoded once; every sequence is taken at a random downscale (0.5-1.0, as the
intra frame cache, to shed compression artefacts and vary the motion's size) and a random
crop. Motion is estimated on the original frames, as the encoder does on its input.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lvc.codec.motion import LENGTH_COST, SEARCH, estimate_motion
from lvc.errors import InputError
from lvc.io.reader import open_video
from lvc.train.data import VIDEO_SUFFIXES, _resize

CACHE_FORMAT = 2  # bump when what a cached sequence holds changes


@dataclass
class SequenceCache:
    frames: np.ndarray  # (n, length, crop, crop, 3) uint8
    motion: np.ndarray  # (n, length - 1, crop / block, crop / block, 2) int8: frame t-1 -> t

    @classmethod
    def build(cls, sources: list[Path], cache_dir: Path, crop: int, length: int, per_clip: int, block: int,
              seed: int = 0) -> SequenceCache:
        videos = [s for s in sources if s.suffix.lower() in VIDEO_SUFFIXES]
        if not videos:
            raise InputError("no video clips found", ", ".join(map(str, sources[:3])), "pass folders holding videos")
        spec = json.dumps([str(s) for s in videos] + [crop, length, per_clip, block, SEARCH, LENGTH_COST, seed,
                                                       CACHE_FORMAT])
        key = hashlib.sha256(spec.encode()).hexdigest()[:16]
        cache_dir.mkdir(parents=True, exist_ok=True)
        fpath, mpath = cache_dir / f"seq-{key}.npy", cache_dir / f"seq-{key}.mv.npy"
        if not (fpath.exists() and mpath.exists()):
            frames, motion = _build(videos, crop, length, per_clip, block, np.random.default_rng(seed))
            for arr, path in ((motion, mpath), (frames, fpath)):
                tmp = path.with_suffix(".tmp.npy")
                np.save(tmp, arr)
                os.replace(tmp, path)
        return cls(np.load(fpath, mmap_mode="r"), np.load(mpath, mmap_mode="r"))

    def __len__(self) -> int:
        return len(self.frames)


def _build(videos: list[Path], crop: int, length: int, per_clip: int, block: int, rng: np.random.Generator):
    from tqdm import tqdm

    frames_out, motion_out = [], []
    for src in tqdm(videos, desc="sequences", unit="clip"):
        with open_video(src) as v:
            clip = list(v.frames())
        if len(clip) < length or min(clip[0].shape[:2]) < crop:
            continue
        for _ in range(per_clip):
            t0 = int(rng.integers(0, len(clip) - length + 1))
            short = min(clip[0].shape[:2])
            scale = float(rng.uniform(max(crop / short, 0.5), 1.0))
            seq = [np.ascontiguousarray(_resize(f, scale)) for f in clip[t0:t0 + length]]
            h, w = seq[0].shape[:2]
            y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
            seq = np.stack([f[y:y + crop, x:x + crop] for f in seq])
            t = torch.from_numpy(seq).permute(0, 3, 1, 2)
            # the encoder's search (lvc.codec.inter), without its rate term (the run predates it)
            mv = estimate_motion(t[:-1].float(), t[1:].float(), block)
            frames_out.append(seq)
            motion_out.append(mv.numpy().astype(np.int8))
    if not frames_out:
        raise InputError(f"no clip has {length} frames of at least {crop}x{crop}", str(videos[0]),
                         "use longer or larger clips, or a smaller --crop")
    return np.stack(frames_out), np.stack(motion_out)


class SequenceSampler:
    """Random sequences with horizontal flips (the motion mirrored with them)."""

    def __init__(self, cache: SequenceCache, seed: int) -> None:
        self.cache = cache
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames (B, L, 3, H, W) in [0, 1] and motion (B, L - 1, hb, wb, 2) int64."""
        idx = self.rng.integers(0, len(self.cache), size)
        frames = np.stack([self.cache.frames[i] for i in idx])
        motion = np.stack([self.cache.motion[i] for i in idx]).astype(np.int64)
        for b in np.nonzero(self.rng.random(size) < 0.5)[0]:
            frames[b] = frames[b, :, :, ::-1]
            motion[b] = motion[b, :, :, ::-1] * np.array([-1, 1])
        x = torch.from_numpy(frames).permute(0, 1, 4, 2, 3).float().div_(255.0)
        return x, torch.from_numpy(np.ascontiguousarray(motion))

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state
