"""Training of the conditional P model (``lvc train-inter``) on short frame sequences.

Each sample is a sequence: its first frame is coded by the frozen intra model exactly as the
codec quantises it (symbols around the integer hyperprior's means), its decoded latent
starts the context, and the following frames are P-frames coded in a chain, each
conditioned on the context the previous one left, so training sees the propagation the
decoder will. The loss is ``lambda(q) * MSE + bpp`` averaged over the P-frames, with ``q``
drawn per sample over the whole quality range (the intra model's lambdas; the I-frame at
``q + intra_offset * (1 - q)``, as the codec codes forced I-frames), plus
``intra_display * lambda(q) * MSE`` of the I-frame's context shown by the display transform.
That term matters: the I-frame is displayed by the intra synthesis, so without it nothing asks
the context it starts to hold the I-frame's quality, and every chain starts from a poorer
picture than the decoder already had (step 33,000 without it: 28.8 dB from a 38.2 dB
I-frame at q=1). Checkpoints describe themselves and resume exactly (model, optimizers, RNG
and sampler state).
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

import lvc
from lvc.codec.frame import FrameCodec
from lvc.entropy.priors import ste_round
from lvc.entropy.tables import LOG_FRAC_BITS
from lvc.errors import InputError
from lvc.models.conditional import ConditionalConfig, ConditionalP
from lvc.models.frozen import QUALITY_MAX, FrozenModel
from lvc.models.inter_frozen import gains_fixed, scale_fixed
from lvc.train.correction import intra_identity
from lvc.train.data import collect_sources
from lvc.train.runlog import RunLog
from lvc.train.sequences import SequenceCache, SequenceSampler
from lvc.train.trainer import CKPT_FORMAT, cosine_lr, distortion, resume_checkpoint, save_checkpoint, yuv_mse

KIND = "inter"
# Everything that makes, codes or reads the P latent; the I-frame context, its display and the
# context's reduction for the prior stay. ``--fresh latent`` relearns this path into a trained
# context space: a latent grown into it kept its new channels silent (docs/models.md, "Session 34"
# and "Session 35").
LATENT_PATH = ("g_a_pix", "g_a", "h_a", "z_density", "h_s", "prior", "g_c_up", "g_c", "g_c_skip",
               "log_gain", "log_inv_gain")
DISTORTIONS = ("mse", "yuv-mse")


@dataclass
class InterTrainConfig:
    data: list[str]
    out: str
    steps: int = 20000
    batch: int = 4
    crop: int = 256
    length: int = 3  # frames per sequence: one I-frame, then P-frames
    per_clip: int = 48  # sequences cached per clip
    per_photo: int = 0  # photo pans cached per photo among the data (lvc.train.sequences.pan); 0: clips only
    lr: float = 2e-4
    lr_final: float = 1e-5
    decay_start: float = 0.8
    aux_lr: float = 1e-3
    bf16: bool = True
    seed: int = 0
    ckpt_every: int = 250
    keep: int = 2
    threads: int = 0
    distil_steps: int = 400  # new runs: I-frame context warm start (see distil_intra_context)
    intra_display: float = 1.0  # weight of the I-frame context's display distortion (module docstring)
    init: str = ""  # new runs: start from this inter checkpoint (e.g. trained for another intra model)
    distortion: str = "mse"  # "mse" (RGB) or "yuv-mse" (lvc.train.trainer.yuv_mse: what PSNR-YUV scores)
    intra_offset: float = 0.0  # the I-frame at q + this * (1 - q), as the codec codes forced ones
    fresh: str = ""  # with init: comma-separated parts (or "latent", LATENT_PATH) left at their new weights

    def lr_at(self, step: int) -> float:
        return cosine_lr(step, self.steps, self.lr, self.lr_final, self.decay_start)


@torch.no_grad()
def intra_latents(intra: FrozenModel, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Decoded, un-gained intra latents of frames ``x`` (B, 3, H, W): exactly the latent an
    I-frame decodes to (checkerboard included), scaled by the inverse gain in the fixed
    point the frozen inter model uses."""
    codec = FrameCodec(intra)
    inv_fx = gains_fixed(intra.log_inv_gain)
    out = []
    for i in range(x.shape[0]):
        qi = round(float(q[i]) * QUALITY_MAX)
        gain, _ = codec._gains(qi)
        latent_fx = codec.intra_latent(intra.g_a(x[i:i + 1]) * gain, qi)
        out.append(scale_fixed(latent_fx, inv_fx, qi, QUALITY_MAX).float() / (1 << LOG_FRAC_BITS))
    return torch.cat(out)


def as_8bit(x: torch.Tensor) -> torch.Tensor:
    """A picture as the codec hands it on (clamped, 8-bit levels), differentiable (straight
    through the rounding)."""
    return ste_round(x.clamp(0, 1) * 255) / 255


@torch.no_grad()
def intra_picture(intra: FrozenModel, y_hat: torch.Tensor) -> torch.Tensor:
    """The I-frame's picture from its decoded latent (the intra synthesis, 8-bit): the
    first reference of ``pixel_ref`` chains."""
    return as_8bit(intra.g_s(y_hat))


def _display_is_intra(model: ConditionalP, intra: FrozenModel) -> bool:
    """Whether the display transform has the shape of the intra synthesis' last three layers."""
    intra_shapes = [w.shape for layer in list(intra.g_s)[2:] for w in layer.parameters()]
    return intra_shapes == [w.shape for w in model.g_d.parameters()]


def _new_model(intra: FrozenModel, cfg: ConditionalConfig) -> ConditionalP:
    model = ConditionalP(cfg)
    if _display_is_intra(model, intra):
        model.init_display_from(intra.g_s)
    # start the gains on the intra model's per-level curve (its mean over channels)
    with torch.no_grad():
        model.log_gain.copy_(intra.log_gain.mean(1, keepdim=True).expand_as(model.log_gain))
        model.log_inv_gain.copy_(intra.log_inv_gain.mean(1, keepdim=True).expand_as(model.log_inv_gain))
    return model


def distil_intra_context(model: ConditionalP, intra: FrozenModel, sampler: SequenceSampler, steps: int,
                         batch: int, through_display: bool = False) -> float:
    """Warm start of the I-frame context (``g_i_up``, ``g_i``), so that P-frames start from a
    motion-compensated copy of a good picture instead of noise. A new run fits it to the
    intra synthesis' own 1/8 features, ``g_s[:2]`` (the display starts as ``g_s[2:]``, so
    I-frame contexts then display as the intra decoder would). A run started from another
    intra model's inter checkpoint (``through_display``) keeps that run's display and fits
    the context so that the display shows the I-frame: the new intra latent then feeds the
    context the trained P-frame machinery expects. Returns the last distillation MSE."""
    params = [*model.g_i_up.parameters(), *model.g_i.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    loss = torch.zeros(())
    for _ in range(steps):
        x, _ = sampler.batch(batch)
        y_hat = intra_latents(intra, x[:, 0], torch.rand(batch))
        ctx = model.intra_context(y_hat)
        if through_display:
            loss = ((model.show(ctx) - x[:, 0]) ** 2).mean()
        else:
            with torch.no_grad():
                target = intra.g_s[:2](y_hat)
            loss = ((ctx - target) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return float(loss.detach())


def _error(cfg: InterTrainConfig, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-sample distortion (``cfg.distortion``) on the scale of RGB MSE."""
    if cfg.distortion == "yuv-mse":
        return yuv_mse(x_hat, x)
    return ((x_hat.float() - x) ** 2).flatten(1).mean(1)


def _lmbda(intra: FrozenModel, q: torch.Tensor) -> torch.Tensor:
    lo, hi = math.log(intra.config.lambda_min), math.log(intra.config.lambda_max)
    return torch.exp(lo + (hi - lo) * q)


def load_init(path: str) -> dict:
    """The inter checkpoint ``--init`` names, checked to be one."""
    if not Path(path).is_file():
        raise InputError("--init: no such file", path, "pass the path of a `lvc train-inter` checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        ok = state.get("kind") == KIND and isinstance(state.get("model"), dict) and "inter_config" in state
    except Exception as e:  # noqa: BLE001 - unpickling fails in many ways; all mean "not a checkpoint"
        raise InputError(f"--init: not a usable checkpoint ({e.__class__.__name__})", path,
                         "pass a `lvc train-inter` checkpoint") from None
    if not ok:
        raise InputError(f"--init: this is a {state.get('kind')} checkpoint, not an inter one", path,
                         "pass a `lvc train-inter` checkpoint")
    return state


def fresh_parts(text: str, model: ConditionalP, old_m: int) -> tuple[str, ...]:
    """``--fresh``'s parts (``latent``: :data:`LATENT_PATH`), checked against the model's own.
    Growing the latent (``old_m`` < M) places the old channels along the whole path, so with
    growth the path is fresh as a whole or not at all."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    known = {k.split(".")[0] for k in model.state_dict()}
    unknown = [n for n in names if n != "latent" and n not in known]
    if not names or unknown:
        raise InputError(f"--fresh: no part named {', '.join(unknown) or repr(text)}", None,
                         f"name parts of the model ({', '.join(sorted(known))}) or `latent`")
    parts = tuple(dict.fromkeys(p for n in names for p in (LATENT_PATH if n == "latent" else (n,))))
    path = {p for p in LATENT_PATH if p in known}
    if old_m < model.cfg.M and path & set(parts) and not path <= set(parts):
        raise InputError(f"--fresh {text} with --M {model.cfg.M} above the checkpoint's {old_m}", None,
                         "name the whole latent path (`--fresh latent`) or none of it when growing the latent")
    return parts


def init_from(model: ConditionalP, weights: dict[str, torch.Tensor], fresh: tuple[str, ...] = ()) -> list[str]:
    """Load every tensor of ``weights`` whose name and shape match ``model`` (the P-frame
    machinery does not depend on the intra model: only ``g_i_up`` reads its latent, and the
    gains follow its levels), except the ``fresh`` parts, which keep their new weights. A
    tensor of another shape but the same rank gives the part that overlaps (a model grown by
    channels, e.g. ``--pixel-ref``'s extra inputs and outputs, which start as the new model
    initialises them). A fresh latent path is not grown (:func:`fresh_parts` allows only the
    whole path fresh with growth). Returns the names not taken whole."""
    old_m = weights["log_gain"].shape[1] if "log_gain" in weights else model.cfg.M
    weights = {k: v for k, v in weights.items() if k.split(".")[0] not in fresh}
    own = model.state_dict()
    whole = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    grown = {}
    for k, v in weights.items():
        if k in own and k not in whole and own[k].dim() == v.dim() > 0:
            part = tuple(slice(0, min(a, b)) for a, b in zip(own[k].shape, v.shape, strict=True))
            grown[k] = own[k].clone()
            grown[k][part] = v[part]
    model.load_state_dict({**whole, **grown}, strict=False)
    if old_m < model.cfg.M and "log_gain" not in fresh:
        _grow_latent(model, weights, old_m)
    return sorted(set(own) - set(whole))


@torch.no_grad()
def _grow_latent(model: ConditionalP, weights: dict[str, torch.Tensor], old_m: int) -> None:
    """A model with more latent channels than ``weights``: the new channels' readers start at
    zero, so the grown model shows exactly what the old one did; the analysis' new outputs
    start small but not zero, so the readers' weights see them and can learn to use them (the
    rate they cost at first is the price of that gradient: a run that started them silent, with
    a near-certain prior, left them silent, docs/models.md "Session 34"). The prior's output
    holds the means and then the log-scales, so its rows are placed by halves (the generic
    overlap would put old log-scales among the new means); the new channels' log-scales start
    at the old ones' mean bias, their gains at the old channels' mean per level."""
    m = model.cfg.M
    model.g_a[-1].weight[old_m:] *= 0.3
    model.g_a[-1].bias[old_m:] = 0
    for reader in (model.g_c_up[0], model.h_a[0]):
        reader.weight[:, old_m:] = 0
    key = f"prior.{len(model.prior) - 1}"
    w, b = weights[f"{key}.weight"], weights[f"{key}.bias"]
    last = model.prior[-1]
    last.weight.zero_()
    last.bias.zero_()
    last.weight[:old_m], last.bias[:old_m] = w[:old_m], b[:old_m]
    last.weight[m:m + old_m], last.bias[m:m + old_m] = w[old_m:], b[old_m:]
    last.bias[m + old_m:] = b[old_m:].mean()
    for name in ("log_gain", "log_inv_gain"):
        table = getattr(model, name)
        table[:, old_m:] = weights[name].mean(1, keepdim=True)


def train_inter(cfg: InterTrainConfig, intra: FrozenModel, model_cfg: ConditionalConfig | None = None,
                resume: bool = False, progress: bool = True, overrides: dict | None = None) -> Path:
    """Train (or resume) a conditional P model; returns the last checkpoint. A run started
    from ``cfg.init`` takes that checkpoint's shape, but for the fields in ``overrides``."""
    if cfg.distortion not in DISTORTIONS:
        raise InputError(f"--distortion {cfg.distortion}", None, f"use one of {', '.join(DISTORTIONS)}")
    if not 0.0 <= cfg.intra_offset <= 1.0:
        raise InputError(f"--intra-offset {cfg.intra_offset}", None, "use an offset between 0 and 1")
    if cfg.crop % 64 or cfg.length < 2:
        raise InputError(f"--crop {cfg.crop} / --length {cfg.length}", None,
                         "use a crop that is a multiple of 64 and at least 2 frames per sequence")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    space = intra_identity(intra)
    ckpt_path = resume_checkpoint(out, resume)
    state = torch.load(ckpt_path, map_location="cpu", weights_only=False) if ckpt_path else None
    if state is not None:
        if state.get("kind") != KIND:
            raise InputError(f"this folder holds a {state.get('kind')} run, not an inter one", str(ckpt_path),
                             "use another --out folder")
        if state.get("latent_space") != space:
            raise InputError("checkpoint was trained for another intra model", str(ckpt_path),
                             "start a new --out folder")
        model_cfg = ConditionalConfig.from_dict(state["inter_config"])
    init = load_init(cfg.init) if state is None and cfg.init else None
    if init is not None:  # its shape, reading this intra model's latent
        model_cfg = replace(ConditionalConfig.from_dict(init["inter_config"]), **(overrides or {}),
                            intra_M=intra.config.M, levels=intra.log_gain.shape[0])
    model_cfg = model_cfg or ConditionalConfig(intra_M=intra.config.M, levels=intra.log_gain.shape[0])
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    model = _new_model(intra, model_cfg)
    if cfg.fresh and init is None and state is None:
        raise InputError(f"--fresh {cfg.fresh} without --init", None, "give --init CKPT, or drop --fresh")
    fresh = ()
    if cfg.fresh and init is not None:
        fresh = fresh_parts(cfg.fresh, model, init["model"].get("log_gain", model.log_gain).shape[1])
    out.mkdir(parents=True, exist_ok=True)
    main = [p for n, p in model.named_parameters() if not n.endswith("quantiles")]
    opt = torch.optim.Adam(main, lr=cfg.lr)
    aux_opt = torch.optim.Adam([p for n, p in model.named_parameters() if n.endswith("quantiles")], lr=cfg.aux_lr)
    cache = SequenceCache.build(collect_sources(cfg.data), out / "cache", cfg.crop, cfg.length, cfg.per_clip,
                                model_cfg.block, cfg.seed, cfg.per_photo, model_cfg.subpel)
    sampler = SequenceSampler(cache, cfg.seed)
    step = 0
    if init is not None:
        new = init_from(model, init["model"], fresh)
        print(f"started from {cfg.init}; new: {', '.join(new) or 'nothing'}")
        if cfg.distil_steps and (init.get("latent_space") != space or any(k.startswith("g_i") for k in new)):
            # a fresh display is the intra synthesis' tail again: distil features, as a new run does
            through = not ("g_d" in fresh and _display_is_intra(model, intra))
            mse = distil_intra_context(model, intra, sampler, cfg.distil_steps, cfg.batch, through_display=through)
            print(f"I-frame context fitted {'through the display' if through else 'to the intra features'}: "
                  f"MSE {mse:.4g}")
    elif state is None and cfg.distil_steps and _display_is_intra(model, intra):
        mse = distil_intra_context(model, intra, sampler, cfg.distil_steps, cfg.batch)
        print(f"I-frame context distilled from the intra synthesis: feature MSE {mse:.4g}")
    if state is not None:
        model.load_state_dict(state["model"])
        if state.get("optimizer"):
            opt.load_state_dict(state["optimizer"])
            aux_opt.load_state_dict(state["aux_optimizer"])
        step = state["step"]
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        sampler.set_state(state["rng"]["sampler"])
    log = RunLog(out / "log.csv", ["step", "time", "lr", "loss", "bpp", "psnr", "aux", "psnr_i"], step,
                 state.get("elapsed") if state else None)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=step, desc="train inter", dynamic_ncols=True, mininterval=5)
    last = ckpt_path
    model.train()
    while step < cfg.steps:
        for g in opt.param_groups:
            g["lr"] = cfg.lr_at(step)
        x, mv = sampler.batch(cfg.batch)
        q = torch.rand(cfg.batch)
        y_i = intra_latents(intra, x[:, 0], q + cfg.intra_offset * (1 - q))
        ctx = model.intra_context(y_i)
        picture = intra_picture(intra, y_i) if model.cfg.pixel_ref else None
        loss, bpp, mse, mse_i = 0.0, 0.0, 0.0, torch.zeros(())
        if cfg.intra_display:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                x_i = model.show(ctx)
            err = _error(cfg, x_i, x[:, 0])
            loss = cfg.intra_display * (_lmbda(intra, q) * distortion("mse", x_i, x[:, 0], err)).mean()
            mse_i = err.mean().detach()
        for t in range(1, cfg.length):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                o = model(x[:, t], ctx, mv[:, t - 1], q, picture)
            ctx = o["ctx"].float()
            if picture is not None:  # the decoder's next reference: 8-bit
                picture = as_8bit(o["x_hat"].float())
            err = _error(cfg, o["x_hat"], x[:, t])
            loss = loss + (_lmbda(intra, q) * distortion("mse", o["x_hat"], x[:, t], err) + o["bpp"].float()).mean()
            bpp, mse = bpp + o["bpp"].float().mean().detach(), mse + err.mean().detach()
        p_frames = cfg.length - 1
        loss = loss / p_frames
        aux = model.aux_loss()
        opt.zero_grad(set_to_none=True)
        aux_opt.zero_grad(set_to_none=True)
        (loss + aux).backward()
        torch.nn.utils.clip_grad_norm_(main, 1.0)
        opt.step()
        aux_opt.step()
        step += 1
        if step % 20 == 0:
            psnr = -10 * math.log10(max(float(mse) / p_frames, 1e-10))
            psnr_i = -10 * math.log10(max(float(mse_i), 1e-10))
            log.write(step, f"{cfg.lr_at(step):.3g}", f"{loss.item():.4f}", f"{float(bpp) / p_frames:.4f}",
                      f"{psnr:.2f}", f"{aux.item():.2f}", f"{psnr_i:.2f}")
            if bar:
                bar.set_postfix(bpp=f"{float(bpp) / p_frames:.3f}", psnr=f"{psnr:.2f}")
        if bar:
            bar.update(1)
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            last = out / f"ckpt-{step:08d}.pt"
            rngs = {"torch": torch.get_rng_state(), "python": random.getstate(), "sampler": sampler.state()}
            save_checkpoint(last, format=CKPT_FORMAT, kind=KIND, code_version=lvc.__version__,
                            inter_config=model.cfg.to_dict(), train_config=asdict(cfg), latent_space=space,
                            intra_name=intra.name, step=step, elapsed=log.elapsed(), model=model.state_dict(),
                            optimizer=opt.state_dict(), aux_optimizer=aux_opt.state_dict(), rng=rngs)
            for old in sorted(out.glob("ckpt-*.pt"))[: -max(1, cfg.keep)]:
                old.unlink()
    if bar:
        bar.close()
    log.close()
    return last
