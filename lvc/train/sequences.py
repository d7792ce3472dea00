"""Short frame sequences for inter training: random co-located crops of consecutive frames,
with the block motion between them estimated once, stored in one memory-mapped file.

Each clip is decoded once; every sequence is taken at a random downscale (0.5-1.0, as the
intra frame cache, to shed compression artefacts and vary the motion's size) and a random
crop. Motion is estimated on the original frames, as the encoder does on its input.

Photos can join (``per_photo`` > 0): a crop window panning over the still at a random,
fractional, constant velocity, resampled bicubically. The clips available are few and mostly
smooth, and a model trained on them alone holds textured pictures at a low quality whatever
the rate (docs/models.md, "The conditional path's ceiling"); photos bring texture, with
motion that is known to be a pure pan.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lvc.codec.motion import LENGTH_COST, SEARCH, estimate_motion
from lvc.errors import InputError
from lvc.io.reader import IMAGE_SUFFIXES, _load_image, open_video
from lvc.train.data import VIDEO_SUFFIXES, _resize

CACHE_FORMAT = 2  # bump when what a cached sequence holds changes
PAN_SPEED = 12.0  # photo pans: at most this many pixels per frame along either axis


@dataclass
class SequenceCache:
    frames: np.ndarray  # (n, length, crop, crop, 3) uint8
    motion: np.ndarray  # (n, length - 1, crop / block, crop / block, 2) int8, 1/subpel pixels: frame t-1 -> t

    @classmethod
    def build(cls, sources: list[Path], cache_dir: Path, crop: int, length: int, per_clip: int, block: int,
              seed: int = 0, per_photo: int = 0, subpel: int = 1) -> SequenceCache:
        videos = [s for s in sources if s.suffix.lower() in VIDEO_SUFFIXES]
        photos = [s for s in sources if s.suffix.lower() in IMAGE_SUFFIXES] if per_photo > 0 else []
        if not videos:
            raise InputError("no video clips found", ", ".join(map(str, sources[:3])), "pass folders holding videos")
        spec_list = [str(s) for s in videos] + [crop, length, per_clip, block, SEARCH, LENGTH_COST, seed, CACHE_FORMAT]
        if photos:  # runs without photos keep their caches
            spec_list += [str(s) for s in photos] + [per_photo, PAN_SPEED]
        if subpel > 1:  # whole-pixel runs keep their caches
            spec_list.append(f"subpel={subpel}")
        spec = json.dumps(spec_list)
        key = hashlib.sha256(spec.encode()).hexdigest()[:16]
        cache_dir.mkdir(parents=True, exist_ok=True)
        fpath, mpath = cache_dir / f"seq-{key}.npy", cache_dir / f"seq-{key}.mv.npy"
        if not (fpath.exists() and mpath.exists()):
            rng = np.random.default_rng(seed)
            clips = _clip_sequences(videos, crop, length, per_clip, rng)
            frames, motion = _with_motion(clips, block, subpel, InputError(
                f"no clip has {length} frames of at least {crop}x{crop}", str(videos[0]),
                "use longer or larger clips, or a smaller --crop"))
            if photos:
                pf, pm = _with_motion(_photo_pans(photos, crop, length, per_photo, rng), block, subpel, InputError(
                    f"no photo is large enough for {length}-frame pans of {crop}x{crop}", str(photos[0]),
                    "use larger photos or a smaller --crop"))
                frames, motion = np.concatenate([frames, pf]), np.concatenate([motion, pm])
            for arr, path in ((motion, mpath), (frames, fpath)):
                tmp = path.with_suffix(".tmp.npy")
                np.save(tmp, arr)
                os.replace(tmp, path)
        return cls(np.load(fpath, mmap_mode="r"), np.load(mpath, mmap_mode="r"))

    def __len__(self) -> int:
        return len(self.frames)


def _clip_sequences(videos: list[Path], crop: int, length: int, per_clip: int,
                    rng: np.random.Generator) -> Iterator[np.ndarray]:
    from tqdm import tqdm

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
            yield np.stack([f[y:y + crop, x:x + crop] for f in seq])


def _photo_pans(photos: list[Path], crop: int, length: int, per_photo: int,
                rng: np.random.Generator) -> Iterator[np.ndarray]:
    from tqdm import tqdm

    for src in tqdm(photos, desc="photo pans", unit="photo"):
        photo = _load_image(src)
        for _ in range(per_photo):
            seq = pan(photo, crop, length, rng)
            if seq is not None:
                yield seq


def _with_motion(seqs: Iterator[np.ndarray], block: int, subpel: int,
                 empty: InputError) -> tuple[np.ndarray, np.ndarray]:
    """Sequences stacked, and the encoder's search (lvc.codec.inter) between consecutive
    frames in ``1/subpel`` pixels, without its rate term (the first runs predate it)."""
    frames = list(seqs)
    if not frames:
        raise empty
    motion = []
    for seq in frames:
        t = torch.from_numpy(seq).permute(0, 3, 1, 2).float()
        motion.append(estimate_motion(t[:-1], t[1:], block, frac=subpel).numpy().astype(np.int8))
    return np.stack(frames), np.stack(motion)


def pan(photo: np.ndarray, crop: int, length: int, rng: np.random.Generator) -> np.ndarray | None:
    """``length`` crops of ``photo`` along a straight line at a random fractional velocity
    (bicubic resampling), after a random downscale (0.6-1.0); None if the photo is too small."""
    v = rng.uniform(-PAN_SPEED, PAN_SPEED, 2)
    span = np.abs(v) * (length - 1) + 2  # (x, y); a pixel of margin for the resampling
    h, w = photo.shape[:2]
    low = max((crop + span[0] + 1) / w, (crop + span[1] + 1) / h, 0.6)  # + 1: the downscale rounds
    if low > 1.0:
        return None
    img = Image.fromarray(np.ascontiguousarray(_resize(photo, float(rng.uniform(low, 1.0)))))
    x0 = rng.uniform(1, img.width - crop - span[0] + 1) + max(-v[0], 0) * (length - 1)
    y0 = rng.uniform(1, img.height - crop - span[1] + 1) + max(-v[1], 0) * (length - 1)
    return np.stack([np.asarray(img.transform((crop, crop), Image.Transform.AFFINE,
                                              (1, 0, x0 + v[0] * t, 0, 1, y0 + v[1] * t),
                                              resample=Image.Resampling.BICUBIC))
                     for t in range(length)])


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
