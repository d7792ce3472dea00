"""Training of the P-frame prior (``lvc train-p``) on latents of consecutive frames.

The intra model is frozen, so the analysis runs once: random crops of frame pairs
``(t - gap, t)`` from video clips become pairs of (un-gained) latents in a cache, and
every training step works at latent resolution only, which is cheap enough for two CPU
cores. Each step codes the residual as the codec does (intra side information from the
residual, the frozen integer hyper-synthesis) and minimises the rate of ``y_t`` under the
corrected prior, with the reference quantised as a decoder holds it (uniform noise as
its proxy) at a quality drawn per sample. Checkpoints describe themselves and resume exactly.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

import lvc
from lvc.entropy.coder import ESCAPE_LIMIT
from lvc.entropy.tables import LOG_FRAC_BITS
from lvc.errors import InputError
from lvc.io.reader import open_video
from lvc.models.frozen import FrozenModel, latent_space_id
from lvc.models.latent import interp_levels
from lvc.models.temporal import TemporalConfig, TemporalPrior
from lvc.train.data import VIDEO_SUFFIXES, collect_sources
from lvc.train.trainer import CKPT_FORMAT, cosine_lr, latest_checkpoint, save_checkpoint


@dataclass
class TemporalTrainConfig:
    data: list[str]
    out: str
    steps: int = 4000
    batch: int = 16
    crop: int = 256
    lr: float = 1e-4
    lr_final: float = 5e-6
    pairs_per_clip: int = 160
    max_gap: int = 2  # reference distance drawn from 1..max_gap frames
    seed: int = 0
    ckpt_every: int = 250
    keep: int = 2
    threads: int = 0

    def lr_at(self, step: int) -> float:
        """Constant for the first half, then cosine decay (short runs need an annealed end)."""
        return cosine_lr(step, self.steps, self.lr, self.lr_final, 0.5)


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
    key = [intra_identity(model), cfg.crop, cfg.pairs_per_clip, cfg.max_gap, cfg.seed]
    spec = json.dumps([str(s) for s in videos] + key)
    path = cache_dir / f"latent-pairs-{hashlib.sha256(spec.encode()).hexdigest()[:16]}.npy"
    if path.exists():
        return np.load(path, mmap_mode="r")
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
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, np.stack(out))
    tmp.replace(path)
    return np.load(path, mmap_mode="r")


@torch.no_grad()
def residual_prior(intra: FrozenModel, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The intra hyperprior's mean and log-scale for ``residual``, exactly as the codec
    computes them (rounded side information, integer hyper-synthesis)."""
    z = torch.round(intra.h_a(residual)).clamp(-ESCAPE_LIMIT, ESCAPE_LIMIT)
    mu, log_scale = (intra.hyper(z).double() / (1 << LOG_FRAC_BITS)).float().chunk(2, dim=1)
    return mu, log_scale


def intra_identity(model: FrozenModel) -> str:
    """The latent space a P prior is trained for (see :func:`lvc.models.frozen.latent_space_id`)."""
    return latent_space_id(model.g_a, model.log_gain)


def train_temporal(cfg: TemporalTrainConfig, intra: FrozenModel, resume: bool = False,
                   init: str | None = None, progress: bool = True) -> Path:
    """Train (or resume) the P prior for ``intra``; returns the last checkpoint's path."""
    if cfg.crop < 64 or cfg.crop % 64:
        raise InputError(f"--crop {cfg.crop} is not a multiple of 64", None, "the side information needs it; use 256")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    space = intra_identity(intra)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = latest_checkpoint(out) if resume else None
    state = torch.load(ckpt_path, map_location="cpu", weights_only=False) if ckpt_path else None
    if intra.h_a is None:
        raise InputError("the intra model has no hyperprior to correct", intra.name, "use a hyperprior model")
    tcfg = TemporalConfig(M=intra.config.M)
    torch.manual_seed(cfg.seed)
    prior = TemporalPrior(tcfg)
    if init and state is None:  # warm start, e.g. from the prior of a previous intra model
        prior.load_state_dict(torch.load(init, map_location="cpu", weights_only=False)["model"])
    opt = torch.optim.Adam(prior.parameters(), lr=cfg.lr)
    pairs = build_latent_pairs(intra, collect_sources(cfg.data), out / "cache", cfg)
    rng = np.random.default_rng(cfg.seed)
    step = 0
    if state is not None:
        if state.get("latent_space") != space:
            raise InputError("checkpoint was trained for another intra model", str(ckpt_path),
                             "start a new --out folder (optionally with --init from this checkpoint)")
        prior.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step = state["step"]
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        rng.bit_generator.state = state["rng"]["sampler"]
    log_path = out / "log.csv"
    new_log = not log_path.exists()
    log = open(log_path, "a", newline="")
    writer = csv.writer(log)
    if new_log:
        writer.writerow(["step", "time", "lr", "bpp", "residual_bpp"])
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc="train-p", dynamic_ncols=True, mininterval=5)
    pixels = cfg.crop * cfg.crop
    t0 = time.time()
    last = ckpt_path
    prior.train()
    while step < cfg.steps:
        for g in opt.param_groups:
            g["lr"] = cfg.lr_at(step)
        batch = torch.from_numpy(np.stack([pairs[i] for i in rng.integers(0, len(pairs), cfg.batch)])).float()
        gain = torch.exp(interp_levels(intra.log_gain, torch.rand(cfg.batch)))[:, :, None, None]
        ref = batch[:, 0] * gain
        ref = ref + torch.empty_like(ref).uniform_(-0.5, 0.5)  # the decoder holds a quantised reference
        y = batch[:, 1] * gain
        mu, log_scale = residual_prior(intra, y - ref)
        bpp = prior(y, ref, mu, log_scale) / pixels
        opt.zero_grad(set_to_none=True)
        bpp.mean().backward()
        torch.nn.utils.clip_grad_norm_(prior.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 20 == 0:
            with torch.no_grad():  # the same batch under plain residual coding: what the correction buys
                base = TemporalPrior.rate(y, ref + mu, log_scale) / pixels
            writer.writerow([step, f"{time.time() - t0:.1f}", f"{cfg.lr_at(step):.3g}", f"{bpp.mean().item():.4f}",
                             f"{base.mean().item():.4f}"])
            log.flush()
            if bar:
                bar.set_postfix(bpp=f"{bpp.mean().item():.4f}")
        if bar:
            bar.update(1)
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            last = out / f"ckpt-{step:08d}.pt"
            rngs = {"torch": torch.get_rng_state(), "python": random.getstate(), "sampler": rng.bit_generator.state}
            save_checkpoint(last, format=CKPT_FORMAT, kind="temporal", code_version=lvc.__version__,
                            temporal_config=tcfg.to_dict(), train_config=asdict(cfg), latent_space=space,
                            intra_name=intra.name, step=step, model=prior.state_dict(), optimizer=opt.state_dict(),
                            rng=rngs)
            for old in sorted(out.glob("ckpt-*.pt"))[: -max(1, cfg.keep)]:
                old.unlink()
    if bar:
        bar.close()
    log.close()
    return last
