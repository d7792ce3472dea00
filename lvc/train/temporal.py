"""Training of the P-frame prior (``lvc train-p``) on latents of consecutive frames.

Random co-located crops of frame pairs ``(t - gap, t)`` from video clips become pairs of
(un-gained) latents in a cache. Each step codes the residual as the codec does (intra
side information from the residual, the frozen integer hyper-synthesis) and minimises the
rate of ``y_t`` under the corrected prior, with the reference quantised as a decoder holds
it (uniform noise as its proxy). The loop is :mod:`lvc.train.correction`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lvc.errors import InputError
from lvc.io.reader import open_video
from lvc.models.correction import Correction
from lvc.models.frozen import FrozenModel
from lvc.models.temporal import TemporalConfig, TemporalPrior
from lvc.train.correction import (
    CorrectionTrainConfig,
    cached_latents,
    check_crop,
    hyper_prior,
    intra_identity,
    train_correction,
)
from lvc.train.data import VIDEO_SUFFIXES, collect_sources


@dataclass
class TemporalTrainConfig(CorrectionTrainConfig):
    pairs_per_clip: int = 160
    max_gap: int = 2  # reference distance drawn from 1..max_gap frames


def _clip_pairs(path: Path, count: int, crop: int, max_gap: int, rng: np.random.Generator):
    """Random co-located crops of frame pairs (reference, current) from one clip."""
    with open_video(path) as v:
        frames = list(v.frames())
    if len(frames) < 2 or min(frames[0].shape[:2]) < crop:
        return
    h, w = frames[0].shape[:2]
    for _ in range(count):
        gap = int(rng.integers(1, max_gap + 1))
        t = int(rng.integers(gap, len(frames)))
        y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
        pair = np.stack([frames[t - gap][y:y + crop, x:x + crop], frames[t][y:y + crop, x:x + crop]])
        yield pair[:, :, ::-1] if rng.random() < 0.5 else pair


def build_latent_pairs(model: FrozenModel, sources: list[Path], cache_dir: Path,
                       cfg: TemporalTrainConfig) -> np.ndarray:
    """(n, 2, M, crop/16, crop/16) float16 latents of frame pairs, computed once and cached."""
    videos = [s for s in sources if s.suffix.lower() in VIDEO_SUFFIXES]
    if not videos:
        raise InputError("no video clips found", ", ".join(map(str, sources[:3])), "pass folders holding videos")

    def build() -> np.ndarray:
        rng = np.random.default_rng(cfg.seed)
        out = []
        from tqdm import tqdm

        for src in tqdm(videos, desc="latent pairs", unit="clip"):
            for pair in _clip_pairs(src, cfg.pairs_per_clip, cfg.crop, cfg.max_gap, rng):
                x = torch.from_numpy(np.ascontiguousarray(pair)).permute(0, 3, 1, 2).float().div_(255.0)
                with torch.no_grad():
                    out.append(model.g_a(x).half().numpy())
        if not out:
            raise InputError(f"no clip has two frames of at least {cfg.crop}x{cfg.crop}", str(videos[0]),
                             "use larger clips or a smaller --crop")
        return np.stack(out)

    spec = [str(s) for s in videos] + [intra_identity(model), cfg.crop, cfg.pairs_per_clip, cfg.max_gap, cfg.seed]
    return cached_latents(cache_dir, "latent-pairs", spec, build)


class _TemporalTask:
    kind = "temporal"

    def __init__(self, intra: FrozenModel) -> None:
        self.intra = intra

    def batch_bits(self, net: Correction, latents: torch.Tensor, gain: torch.Tensor):
        ref = latents[:, 0] * gain
        ref = ref + torch.empty_like(ref).uniform_(-0.5, 0.5)  # the decoder holds a quantised reference
        y = latents[:, 1] * gain
        mu, log_scale = hyper_prior(self.intra, y - ref)
        with torch.no_grad():
            base = TemporalPrior.rate(y, ref + mu, log_scale)
        return net(y, ref, mu, log_scale), base


def train_temporal(cfg: TemporalTrainConfig, intra: FrozenModel, resume: bool = False,
                   init: str | None = None, progress: bool = True) -> Path:
    """Train (or resume) the P prior for ``intra``; returns the last checkpoint's path."""
    check_crop(cfg.crop)
    if intra.h_a is None:
        raise InputError("the intra model has no hyperprior to correct", intra.name, "use a hyperprior model")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    net = TemporalPrior(TemporalConfig(M=intra.config.M))
    pairs = build_latent_pairs(intra, collect_sources(cfg.data), Path(cfg.out) / "cache", cfg)
    return train_correction(cfg, intra, _TemporalTask(intra), net, pairs, resume, init, progress)
