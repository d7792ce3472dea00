"""Latent descriptors of frames and ~1 s segments, for search and analysis.

A descriptor is the codec's own analysis transform ``g_a`` applied to the frame at a
canonical size (192x128, so every input lands on the same 12x8 latent grid whatever its
resolution: rescaled copies match), after a brightness normalisation (mean level set to
a constant: +-20% brightness barely moves it), pooled over space into per-channel mean and
spread (so crops and small shifts move it little), then power- and L2-normalised. A
segment's descriptor is the normalised mean of its frames' (sampled at ``SAMPLE_FPS``).

From a ``.lvc`` file the latents are entropy-decoded for every frame (the P-frame chain
needs them; it is integer work, no synthesis), and only the sampled frames are
synthesised: P-frames predict from latents, not pixels, so any frame can be rendered
alone, and a descriptor pass synthesises ``SAMPLE_FPS`` frames per second, not all.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from lvc.models.frozen import FrozenModel

CANON_W, CANON_H = 192, 128
SAMPLE_FPS = 4.0
SEGMENT_SECONDS = 1.0
MEAN_LEVEL = 0.45
DESCRIPTOR_VERSION = "lvc-desc/2"  # bump when the descriptor changes: indexes record it
INDEX_CROPS = (1.0, 0.7)  # views indexed per segment: the full frame and its centre 70%


@dataclass
class FrameDescriptors:
    """Per-frame descriptors of one video: ``times`` (n,) seconds, ``vectors`` (n, D), ``luma`` (n,)."""

    times: np.ndarray
    vectors: np.ndarray
    luma: np.ndarray
    fps: float
    frame_indices: np.ndarray  # index of each described frame in the video

    def segments(self, seconds: float = SEGMENT_SECONDS) -> tuple[np.ndarray, np.ndarray]:
        """Segment descriptors (m, D) and their [start, end) times (m, 2)."""
        if len(self.times) == 0:
            return np.zeros((0, self.vectors.shape[1]), np.float32), np.zeros((0, 2))
        slot = np.floor(self.times / seconds + 1e-9).astype(int)
        vecs, spans = [], []
        for s in np.unique(slot):
            v = self.vectors[slot == s].mean(0)
            vecs.append(v / max(np.linalg.norm(v), 1e-12))
            end = min((s + 1) * seconds, self.times[-1] + 1.0 / max(self.fps, 1e-9))
            spans.append((s * seconds, max(end, s * seconds + 1e-3)))
        return np.asarray(vecs, np.float32), np.asarray(spans)


class Describer:
    """Turns RGB frames into descriptors with one frozen model's analysis transform."""

    def __init__(self, model: FrozenModel, batch: int = 16) -> None:
        self.m = model
        self.batch = batch

    @property
    def dim(self) -> int:
        return 2 * self.m.config.M

    @torch.no_grad()
    def describe(self, frames: list[np.ndarray], crop: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Descriptors (n, D) float32 and mean luma (n,) of uint8 RGB frames (any sizes),
        of their centre ``crop`` fraction."""
        out, luma = [], []
        for i in range(0, len(frames), self.batch):
            x = torch.stack([canonical(f, crop) for f in frames[i:i + self.batch]])
            level = x.mean(dim=(1, 2, 3))
            luma.append(level.numpy())
            # brightness normalisation; near-black frames (fades) are left alone, not amplified
            x = torch.where((level > 0.05)[:, None, None, None], x * (MEAN_LEVEL / level.clamp_min(0.05))[:, None, None,
                            None], x).clamp(0, 1)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = self.m.g_a(x.contiguous(memory_format=torch.channels_last)).float()
            d = torch.cat([y.mean(dim=(2, 3)), y.std(dim=(2, 3))], dim=1)
            d = torch.sign(d) * d.abs().sqrt()
            out.append(F.normalize(d, dim=1).numpy().astype(np.float32))
        if not out:
            return np.zeros((0, self.dim), np.float32), np.zeros(0, np.float32)
        return np.concatenate(out), np.concatenate(luma)


def canonical(frame: np.ndarray, crop: float = 1.0) -> torch.Tensor:
    """(3, CANON_H, CANON_W) float in [0, 1]: every input size lands on the same latent grid."""
    if crop < 1.0:
        h, w = frame.shape[:2]
        ch, cw = max(1, round(h * crop)), max(1, round(w * crop))
        frame = frame[(h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw]
    x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float().div_(255.0)
    return F.interpolate(x, size=(CANON_H, CANON_W), mode="bilinear", antialias=True, align_corners=False)[0]


def sampled(times: np.ndarray, rate: float) -> np.ndarray:
    """Indices of frames to describe so that about ``rate`` per second are kept."""
    if rate <= 0 or len(times) == 0:
        return np.arange(len(times))
    slots = np.floor(times * rate + 1e-9)
    keep = np.ones(len(times), bool)
    keep[1:] = slots[1:] != slots[:-1]
    return np.nonzero(keep)[0]


def iter_frames(path: str | os.PathLike, model: FrozenModel | None = None,
                every: float | None = SAMPLE_FPS) -> Iterator[tuple[int, float, np.ndarray]]:
    """(index, time, RGB frame) of a video, image or ``.lvc`` file, ``every`` frames per second
    (None: all). ``.lvc`` frames not kept are entropy-decoded but never synthesised."""
    path = Path(path)
    if path.suffix.lower() == ".lvc":
        yield from _lvc_frames(path, model, every)
        return
    from lvc.io.reader import open_video

    with open_video(path) as v:
        last_slot = None
        for i, (t, frame) in enumerate(v.timed_frames()):
            slot = int(np.floor(t * every + 1e-9)) if every else i
            if slot != last_slot:
                last_slot = slot
                yield i, t, frame


def _lvc_frames(path: Path, override: FrozenModel | None, every: float | None):
    from lvc.bitstream.container import LvcReader
    from lvc.codec.decoder import SequenceDecoder
    from lvc.io.convert import as_rgb
    from lvc.models.registry import model_for_stream

    with LvcReader(path) as r:
        h = r.header
        fm = model_for_stream(h.model_name, h.weights_hash, None, str(path))
        dec = SequenceDecoder(fm, h.width, h.height, str(path), colour_format=h.colour_format)
        fps = float(h.fps)
        last_slot = None
        try:
            for unit in r.units():
                t = unit.index / fps
                slot = int(np.floor(t * every + 1e-9)) if every else unit.index
                if slot == last_slot:
                    dec.advance(unit)  # keep the prediction chain; no pixels
                    continue
                last_slot = slot
                yield unit.index, t, as_rgb(dec.decode(unit))  # (colour format 1: planes)
        finally:
            dec.close()


def video_fps(path: str | os.PathLike) -> float:
    path = Path(path)
    if path.suffix.lower() == ".lvc":
        from lvc.bitstream.container import LvcReader

        with LvcReader(path) as r:
            return float(r.header.fps)
    from lvc.io.reader import open_video

    with open_video(path) as v:
        return float(v.info.fps)


def describe_video(path: str | os.PathLike, describer: Describer, every: float | None = SAMPLE_FPS,
                   progress=None, crops: tuple[float, ...] = (1.0,)) -> list[FrameDescriptors]:
    """Descriptors of a video's frames (``every`` per second; None: every frame), one set per
    centre ``crops`` fraction, from one decoding pass."""
    idx, times, frames = [], [], []
    fps = video_fps(path)
    vecs: list[list[np.ndarray]] = [[] for _ in crops]
    lumas: list[np.ndarray] = []

    def flush() -> None:
        for k, c in enumerate(crops):
            v, lu = describer.describe(frames, c)
            vecs[k].append(v)
            if k == 0:
                lumas.append(lu)
        if progress is not None:
            progress.update(len(frames))
        frames.clear()

    for i, t, frame in iter_frames(path, describer.m, every):
        idx.append(i)
        times.append(t)
        frames.append(frame)
        if len(frames) == describer.batch:
            flush()
    if frames:
        flush()
    luma = np.concatenate(lumas) if lumas else np.zeros(0, np.float32)
    return [FrameDescriptors(np.asarray(times), np.concatenate(v) if v else np.zeros((0, describer.dim), np.float32),
                             luma, fps, np.asarray(idx, dtype=np.int64)) for v in vecs]
