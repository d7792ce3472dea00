"""Training of the spatial context prior (``lvc train-ctx``) on latents of image crops.

Random crops (with flips) of the training images and video frames, the same frame cache
``lvc train`` uses, go through the frozen analysis once into a latent cache. Each step
quantises the anchors exactly as the codec does and minimises the rate of the whole
latent with the second checkerboard half under the corrected prior. The loop is
:mod:`lvc.train.correction`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lvc.errors import InputError
from lvc.models.context import SpatialContext
from lvc.models.correction import Correction, CorrectionConfig
from lvc.models.frozen import FrozenModel
from lvc.train.correction import (
    CorrectionTrainConfig,
    cached_latents,
    check_crop,
    hyper_prior,
    intra_identity,
    train_correction,
)
from lvc.train.data import SAMPLE_BY, CropSampler, FrameCache, collect_sources


@dataclass
class ContextTrainConfig(CorrectionTrainConfig):
    crops: int = 2400  # latent crops in the cache
    lr: float = 5e-4
    sample_by: str = SAMPLE_BY[0]  # crops per source file or per pixel area (lvc.train.data.frame_weights)


def build_latent_crops(model: FrozenModel, sources: list[Path], cache_dir: Path,
                       cfg: ContextTrainConfig) -> np.ndarray:
    """(n, M, crop/16, crop/16) float16 latents of random crops, computed once and cached."""

    def build() -> np.ndarray:
        sampler = CropSampler(FrameCache.build(sources, cache_dir, cfg.crop), cfg.crop, cfg.seed, by=cfg.sample_by)
        out = []
        from tqdm import tqdm

        for start in tqdm(range(0, cfg.crops, 16), desc="latent crops", unit="batch"):
            x = sampler.batch(min(16, cfg.crops - start))
            with torch.no_grad():
                out.append(model.g_a(x).half().numpy())
        return np.concatenate(out)

    spec = [str(s) for s in sources] + [intra_identity(model), cfg.crop, cfg.crops, cfg.seed, f"by-{cfg.sample_by}"]
    return cached_latents(cache_dir, "latent-crops", spec, build)


class _ContextTask:
    kind = "context"

    def __init__(self, intra: FrozenModel) -> None:
        self.intra = intra

    def batch_bits(self, net: Correction, latents: torch.Tensor, gain: torch.Tensor):
        y = latents * gain
        mu, log_scale = hyper_prior(self.intra, y)
        with torch.no_grad():
            base = Correction.rate(y, mu, log_scale)
        return net(y, mu, log_scale), base


def train_context(cfg: ContextTrainConfig, intra: FrozenModel, resume: bool = False,
                  init: str | None = None, progress: bool = True) -> Path:
    """Train (or resume) the spatial context prior for ``intra``; returns the last checkpoint."""
    check_crop(cfg.crop)
    if intra.h_a is None:
        raise InputError("the intra model has no hyperprior to correct", intra.name, "use a hyperprior model")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    net = SpatialContext(CorrectionConfig(M=intra.config.M))
    crops = build_latent_crops(intra, collect_sources(cfg.data), out / "cache", cfg)
    return train_correction(cfg, intra, _ContextTask(intra), net, crops, resume, init, progress)
