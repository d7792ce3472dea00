"""Training loop shared by the prior corrections (``lvc train-p``, ``lvc train-ctx``).

The intra model is frozen, so its analysis runs once: a task turns its training data into
a cache of (un-gained) latents, and every step works at latent resolution only, which is
cheap on two CPU cores. Each step draws a quality per sample, computes the intra side
information and hyperprior predictions exactly as the codec does, and minimises the rate
under the corrected prior; the same batch under the uncorrected prior is logged beside it
(what the correction buys). Checkpoints describe themselves (task kind, network config,
the intra latent space they belong to, optimizer and RNG state) and resume exactly.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

import lvc
from lvc.entropy.coder import ESCAPE_LIMIT
from lvc.entropy.tables import LOG_FRAC_BITS
from lvc.errors import InputError
from lvc.models.correction import Correction
from lvc.models.frozen import FrozenModel, latent_space_id
from lvc.models.latent import interp_levels
from lvc.train.runlog import RunLog
from lvc.train.trainer import CKPT_FORMAT, cosine_lr, resume_checkpoint, save_checkpoint


@dataclass
class CorrectionTrainConfig:
    data: list[str]
    out: str
    steps: int = 4000
    batch: int = 16
    crop: int = 256
    lr: float = 1e-4
    lr_final: float = 5e-6
    seed: int = 0
    ckpt_every: int = 250
    keep: int = 2
    threads: int = 0

    def lr_at(self, step: int) -> float:
        """Constant for the first half, then cosine decay (short runs need an annealed end)."""
        return cosine_lr(step, self.steps, self.lr, self.lr_final, 0.5)


class Task(Protocol):
    kind: str  # "temporal" or "context": checkpoint kind, the model-file section it exports to

    def batch_bits(self, net: Correction, latents: torch.Tensor, gain: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Bits per sample (B,) under the corrected prior, and (no grad) under the uncorrected one."""
        ...


@torch.no_grad()
def hyper_prior(intra: FrozenModel, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The intra hyperprior's mean and log-scale for ``y`` (a latent or a residual), exactly as
    the codec computes them (rounded side information, integer hyper-synthesis)."""
    z = torch.round(intra.h_a(y)).clamp(-ESCAPE_LIMIT, ESCAPE_LIMIT)
    mu, log_scale = (intra.hyper(z).double() / (1 << LOG_FRAC_BITS)).float().chunk(2, dim=1)
    return mu, log_scale


def intra_identity(model: FrozenModel) -> str:
    """The latent space a correction is trained for (see :func:`lvc.models.frozen.latent_space_id`)."""
    return latent_space_id(model.g_a, model.log_gain)


def cached_latents(cache_dir: Path, prefix: str, spec: list, build: Callable[[], np.ndarray]) -> np.ndarray:
    """Latents keyed by ``spec`` (sources, intra identity, sampling settings): ``build``
    runs once, its result is written atomically, and later runs map the file."""
    key = hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]
    path = cache_dir / f"{prefix}-{key}.npy"
    if not path.exists():
        latents = build()
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, latents)
        tmp.replace(path)
    return np.load(path, mmap_mode="r")


def check_crop(crop: int) -> None:
    if crop < 64 or crop % 64:
        raise InputError(f"--crop {crop} is not a multiple of 64", None, "the side information needs it; use 256")


def train_correction(cfg: CorrectionTrainConfig, intra: FrozenModel, task: Task, net: Correction,
                     latents: np.ndarray, resume: bool = False, init: str | None = None,
                     progress: bool = True) -> Path:
    """Train (or resume) ``net`` on cached ``latents`` (n, ..., M, h, w); returns the last checkpoint."""
    space = intra_identity(intra)
    out = Path(cfg.out)
    ckpt_path = resume_checkpoint(out, resume)
    state = torch.load(ckpt_path, map_location="cpu", weights_only=False) if ckpt_path else None
    if init and state is None:  # warm start, e.g. from the correction of a previous intra model
        net.load_state_dict(torch.load(init, map_location="cpu", weights_only=False)["model"])
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    step = 0
    if state is not None:
        if state.get("kind", "temporal") != task.kind:
            found = state.get("kind", "temporal")
            raise InputError(f"this folder holds a {found} prior run, not a {task.kind} one", str(ckpt_path),
                             "use another --out folder")
        if state.get("latent_space") != space:
            raise InputError("checkpoint was trained for another intra model", str(ckpt_path),
                             "start a new --out folder (optionally with --init from this checkpoint)")
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step = state["step"]
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        rng.bit_generator.state = state["rng"]["sampler"]
    log = RunLog(out / "log.csv", ["step", "time", "lr", "bpp", "uncorrected_bpp"], step,
                 state.get("elapsed") if state else None)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc=f"train {task.kind}", dynamic_ncols=True, mininterval=5)
    pixels = cfg.crop * cfg.crop
    last = ckpt_path
    net.train()
    while step < cfg.steps:
        for g in opt.param_groups:
            g["lr"] = cfg.lr_at(step)
        batch = torch.from_numpy(np.stack([latents[i] for i in rng.integers(0, len(latents), cfg.batch)])).float()
        gain = torch.exp(interp_levels(intra.log_gain, torch.rand(cfg.batch)))[:, :, None, None]
        bits, base = task.batch_bits(net, batch, gain)
        bpp = bits / pixels
        opt.zero_grad(set_to_none=True)
        bpp.mean().backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 20 == 0:
            log.write(step, f"{cfg.lr_at(step):.3g}", f"{bpp.mean().item():.4f}",
                      f"{(base / pixels).mean().item():.4f}")
            if bar:
                saved = 1 - bits.sum().item() / base.sum().item()
                bar.set_postfix(bpp=f"{bpp.mean().item():.4f}", saved=f"{saved:.2%}")
        if bar:
            bar.update(1)
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            last = out / f"ckpt-{step:08d}.pt"
            rngs = {"torch": torch.get_rng_state(), "python": random.getstate(), "sampler": rng.bit_generator.state}
            save_checkpoint(last, format=CKPT_FORMAT, kind=task.kind, code_version=lvc.__version__,
                            correction_config=net.cfg.to_dict(), train_config=asdict(cfg), latent_space=space,
                            intra_name=intra.name, step=step, elapsed=log.elapsed(), model=net.state_dict(),
                            optimizer=opt.state_dict(), rng=rngs)
            for old in sorted(out.glob("ckpt-*.pt"))[: -max(1, cfg.keep)]:
                old.unlink()
    if bar:
        bar.close()
    log.close()
    return last
