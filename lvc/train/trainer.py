"""Rate–distortion training with self-describing, resumable checkpoints.

Loss: ``lambda(q) * 255**2 * MSE + bpp`` with ``q`` drawn per sample over [0, 1], so a
single model learns every quality. Transforms may run under bf16 autocast; likelihoods
and the entropy model always stay in float32. Runs alone or under ``torchrun`` (DDP on
gloo); only rank 0 writes checkpoints and logs.
"""

from __future__ import annotations

import math
import os
import random
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import distributed as dist
from torch.nn import functional as F

import lvc
from lvc.errors import InputError
from lvc.metrics import RGB2YUV
from lvc.models.latent import LatentModel, ModelConfig
from lvc.train.data import SAMPLE_BY, CropSampler, FrameCache, collect_sources
from lvc.train.runlog import RunLog, has_step, truncate_after

CKPT_FORMAT = "lvc-checkpoint/1"


@dataclass
class TrainConfig:
    data: list[str]
    out: str
    steps: int = 40000
    batch: int = 8
    crop: int = 256
    lr: float = 2e-4
    lr_final: float = 1e-5
    decay_start: float = 0.75  # fraction of steps after which the learning rate decays (cosine)
    aux_lr: float = 1e-3
    bf16: bool = True
    seed: int = 0
    ckpt_every: int = 500
    keep: int = 3  # checkpoints kept (at least 1)
    val_every: int = 2000
    val: list[str] = field(default_factory=list)
    threads: int = 0
    frames_per_video: int = 24
    sample_by: str = SAMPLE_BY[0]  # crops per source file or per pixel area (data.frame_weights)
    distortion: str = "mse"  # or "ms-ssim"
    init: str = ""  # start a new run from this checkpoint's weights, widened if the model is wider
    # Train only what the analysis feeds (synthesis, hyperprior, context): the latent space
    # (lvc.models.frozen.latent_space_id) stays the same, so P-frame priors and conditional P
    # models trained for it stay valid for the result.
    freeze_analysis: bool = False

    def lr_at(self, step: int) -> float:
        return cosine_lr(step, self.steps, self.lr, self.lr_final, self.decay_start)


def cosine_lr(step: int, steps: int, lr: float, lr_final: float, decay_start: float) -> float:
    """Constant ``lr`` up to ``decay_start * steps``, then cosine decay to ``lr_final`` at ``steps``."""
    start = int(decay_start * steps)
    if step < start:
        return lr
    t = min(1.0, (step - start) / max(1, steps - start))
    return lr_final + 0.5 * (lr - lr_final) * (1 + math.cos(math.pi * t))


# 1 - MS-SSIM is weighted so that the lambda range spans a similar range of rates as MSE
# (CompressAI's published lambdas differ by about this factor between the two).
MS_SSIM_WEIGHT = 1300.0


def yuv_mse(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-sample squared error on the planes video metrics score (``lvc.metrics``: BT.601
    Y, and U and V averaged over 2x2 pixels, weighted 6:1:1), scaled so that an error equal
    in R, G and B counts as its RGB MSE: the lambdas keep their meaning, and errors that
    4:2:0 chroma hides or PSNR-YUV weighs less cost less than under RGB MSE."""
    m = torch.as_tensor(RGB2YUV, dtype=torch.float32)
    d = torch.einsum("kc,bchw->bkhw", m, x_hat.float() - x.float())
    luma = d[:, 0].square().flatten(1).mean(1)
    chroma = F.avg_pool2d(d[:, 1:], 2).square().flatten(1).mean(1)  # mean over U and V
    return (6 * luma + 2 * chroma) / (6 * float(m[0].sum()) ** 2)


def distortion(kind: str, x_hat: torch.Tensor, x: torch.Tensor, mse: torch.Tensor) -> torch.Tensor:
    """Per-sample distortion on the scale that ``lambda * D`` expects."""
    if kind == "mse":
        return 255**2 * mse
    if kind == "ms-ssim":
        from pytorch_msssim import ms_ssim, ssim

        if min(x.shape[-2:]) > 160:
            sim = ms_ssim(x_hat.clamp(0, 1), x, data_range=1.0, size_average=False)
        else:
            sim = ssim(x_hat.clamp(0, 1), x, data_range=1.0, size_average=False)
        return MS_SSIM_WEIGHT * (1 - sim)
    raise ValueError(f"unknown distortion {kind!r}; expected 'mse' or 'ms-ssim'")


def _world() -> tuple[int, int, bool]:
    """(rank, world size, whether this call started the process group)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        started = not dist.is_initialized()
        if started:
            dist.init_process_group("gloo")
        return dist.get_rank(), dist.get_world_size(), started
    return 0, 1, False


def _optimizers(model: LatentModel, cfg: TrainConfig):
    if cfg.freeze_analysis:
        model.g_a.requires_grad_(False)
        model.log_gain.requires_grad_(False)
    aux = [p for n, p in model.named_parameters() if n.endswith("quantiles")]
    main = [p for n, p in model.named_parameters() if not n.endswith("quantiles") and p.requires_grad]
    opt = torch.optim.Adam(main, lr=cfg.lr)
    aux_opt = torch.optim.Adam(aux, lr=cfg.aux_lr) if aux else None
    return opt, aux_opt


def latest_checkpoint(out: Path) -> Path | None:
    ckpts = sorted(out.glob("ckpt-*.pt"))
    return ckpts[-1] if ckpts else None


def resume_checkpoint(out: Path, resume: bool) -> Path | None:
    """The checkpoint ``--resume`` continues from; says so when there is none, so that a
    checkpoint copied in under another name does not silently become a fresh run."""
    if not resume:
        return None
    found = latest_checkpoint(out)
    if found is None and int(os.environ.get("RANK", "0")) == 0:  # one note per run, not per process
        others = sorted(p.name for p in out.glob("*.pt")) if out.is_dir() else []
        hint = (f" (other .pt files there: {', '.join(others)}; name one ckpt-NNNNNNNN.pt to resume it)"
                if others else "")
        print(f"--resume: no ckpt-*.pt in {out}; starting a new run{hint}", file=sys.stderr)
    return found


def slim_checkpoint(src: Path, dst: Path) -> None:
    """A resumable checkpoint without optimizer state (a third of the size), for carrying a
    run across machines in git; resuming from it restarts Adam's moment estimates."""
    state = torch.load(src, map_location="cpu", weights_only=False)
    state.update(optimizer=None, aux_optimizer=None)
    save_checkpoint(dst, **state)


def save_checkpoint(path: Path, **payload) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def train(cfg: TrainConfig, model_cfg: ModelConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train (or resume) and return the path of the last checkpoint written."""
    rank, world, started = _world()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = resume_checkpoint(out, resume)
    state = torch.load(ckpt_path, map_location="cpu", weights_only=False) if ckpt_path else None
    if state is not None:
        model_cfg = ModelConfig.from_dict(state["model_config"])
    torch.manual_seed(cfg.seed)
    model = LatentModel(model_cfg)  # same initial weights on every rank
    torch.manual_seed(cfg.seed + 7919 * rank)  # but distinct qualities and noise per rank
    opt, aux_opt = _optimizers(model, cfg)
    sources = collect_sources(cfg.data)
    if rank == 0:  # one process decodes the frame cache; the others wait, then map it
        FrameCache.build(sources, out / "cache", cfg.crop, cfg.frames_per_video, cfg.seed)
    if world > 1:
        dist.barrier()
    cache = FrameCache.build(sources, out / "cache", cfg.crop, cfg.frames_per_video, cfg.seed)
    sampler = CropSampler(cache, cfg.crop, seed=cfg.seed * 1000 + rank, by=cfg.sample_by)
    step = 0
    if state is not None:
        model.load_state_dict(state["model"])
        step = state["step"]
        # --freeze-analysis changes what Adam updates: its moments then restart
        was_frozen = bool((state.get("train_config") or {}).get("freeze_analysis"))
        if was_frozen != cfg.freeze_analysis and rank == 0:
            print(f"--resume: the run trained {'the decoder side only' if was_frozen else 'everything'}; from "
                  f"step {step} it trains {'the decoder side only' if cfg.freeze_analysis else 'everything'} "
                  "(restarting Adam's moment estimates)", file=sys.stderr)
        if state.get("optimizer") and was_frozen == cfg.freeze_analysis:  # slim checkpoints restart them too
            opt.load_state_dict(state["optimizer"])
        if aux_opt is not None and state.get("aux_optimizer"):
            aux_opt.load_state_dict(state["aux_optimizer"])
        rng = state["rng"][rank] if rank < len(state["rng"]) else state["rng"][0]
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        sampler.set_state(rng["sampler"])
    elif cfg.init:
        _init_from(model, cfg.init, rank)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model)
    log = None
    if rank == 0:
        log = RunLog(out / "log.csv", ["step", "time", "lr", "loss", "bpp", "mse", "psnr", "aux"], step,
                     state.get("elapsed") if state else None)
        truncate_after(out / "val.csv", step)
        if state and _due_for_validation(cfg, step) and not has_step(out / "val.csv", step):
            _validate(model, cfg, out, step)  # a kill during the checkpoint's own validation
    bar = None
    if progress and rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc="train", dynamic_ncols=True, mininterval=5)
    last = ckpt_path
    model.train()
    while step < cfg.steps:
        for g in opt.param_groups:
            g["lr"] = cfg.lr_at(step)
        x = sampler.batch(cfg.batch)
        q = torch.rand(cfg.batch)
        out_ = net(x, q, bf16=cfg.bf16)
        mse = ((out_["x_hat"].float() - x) ** 2).flatten(1).mean(1)
        loss = (model.lmbda(q) * distortion(cfg.distortion, out_["x_hat"].float(), x, mse) + out_["bpp"]).mean()
        # One backward for both losses, so DDP averages the quantiles' gradients too; the aux
        # loss reaches only the quantiles (the density is detached inside it).
        aux = model.aux_loss()
        opt.zero_grad(set_to_none=True)
        if aux_opt is not None:
            aux_opt.zero_grad(set_to_none=True)
        (loss + aux).backward()
        # Clip only what the main optimizer updates: the quantiles' gradients belong to the aux loss.
        torch.nn.utils.clip_grad_norm_(opt.param_groups[0]["params"], 1.0)
        opt.step()
        if aux_opt is not None:
            aux_opt.step()
        step += 1
        if log and (step % 20 == 0 or step % cfg.ckpt_every == 0):
            psnr = (-10 * torch.log10(mse.clamp_min(1e-10))).mean().item()
            log.write(step, f"{cfg.lr_at(step):.3g}", f"{loss.item():.4f}", f"{out_['bpp'].mean().item():.4f}",
                      f"{mse.mean().item():.6f}", f"{psnr:.2f}", f"{aux.item():.2f}")
        if bar:
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}", bpp=f"{out_['bpp'].mean().item():.3f}")
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            last = _checkpoint(out, model, opt, aux_opt, sampler, cfg, step, rank, world,
                               log.elapsed() if log else None)
            if rank == 0 and _due_for_validation(cfg, step):
                _validate(model, cfg, out, step)
    if bar:
        bar.close()
    if log:
        log.close()
    if world > 1:
        _assert_replicas_in_sync(model, rank)
        if started:  # a gloo group left to the interpreter's exit can abort a rank ("terminate called ...")
            dist.barrier()
            dist.destroy_process_group()
    return last


WIDTHS = ("N", "M", "Nh", "synthesis_widths", "analysis_widths", "context")  # what --init may change


def _init_from(model: LatentModel, path: str, rank: int) -> None:
    from lvc.train.widen import widen_from

    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        old = ModelConfig.from_dict(state["model_config"]).to_dict()
        fixed = [k for k, v in model.cfg.to_dict().items() if k not in WIDTHS and old.get(k) != v]
        if fixed:  # e.g. more gain levels would shift the quality mapping, not widen it
            raise ValueError(f"only widths may change, not {', '.join(fixed)}")
        grown = widen_from(model, state["model"])
    except (OSError, KeyError, ValueError, RuntimeError) as e:
        raise InputError(f"cannot start from this checkpoint ({e})", path,
                         "pass an `lvc train` checkpoint of the same family, at most as wide") from None
    if rank == 0:
        print(f"initialised from {path} (step {state.get('step')}); new or widened: {', '.join(grown) or 'nothing'}",
              flush=True)


def _assert_replicas_in_sync(model: torch.nn.Module, rank: int) -> None:
    """Every rank must hold bit-identical weights; DDP guarantees it, this checks it."""
    flat = torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])
    digest = (flat.sum().item(), (flat * torch.arange(flat.numel(), dtype=torch.float64)).sum().item())
    digests = [None] * dist.get_world_size()
    dist.all_gather_object(digests, digest)
    if any(d != digests[0] for d in digests):
        raise RuntimeError(f"DDP replicas diverged: {digests}")
    if rank == 0:
        print(f"replicas in sync across {len(digests)} processes", flush=True)


def _due_for_validation(cfg: TrainConfig, step: int) -> bool:
    return bool(cfg.val) and (step % cfg.val_every == 0 or step == cfg.steps)


def _validate(model: LatentModel, cfg: TrainConfig, out: Path, step: int) -> None:
    from lvc.train.validate import validate_and_log

    with torch.random.fork_rng():  # validation must not shift the training RNG stream
        validate_and_log(model, cfg.val, out, step)
    model.train()


def _checkpoint(out: Path, model, opt, aux_opt, sampler, cfg: TrainConfig, step: int, rank: int, world: int,
                elapsed: float | None) -> Path:
    rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
           "sampler": sampler.state()}
    rngs = [rng]
    if world > 1:
        rngs = [None] * world
        dist.all_gather_object(rngs, rng)
    path = out / f"ckpt-{step:08d}.pt"
    if rank == 0:
        save_checkpoint(path, format=CKPT_FORMAT, code_version=lvc.__version__, model_config=model.cfg.to_dict(),
                        train_config=asdict(cfg), step=step, elapsed=elapsed, model=model.state_dict(),
                        optimizer=opt.state_dict(),
                        aux_optimizer=aux_opt.state_dict() if aux_opt else None, rng=rngs)
        for old in sorted(out.glob("ckpt-*.pt"))[: -max(1, cfg.keep)]:
            old.unlink()
        from lvc.train.plot import plot_log

        plot_log(out / "log.csv", out / "progress.png")
    return path
