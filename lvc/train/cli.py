"""Argument parsing for ``lvc train`` (kept beside the trainer it configures)."""

from __future__ import annotations

import argparse
import json
import warnings
from dataclasses import fields
from pathlib import Path

import torch

from lvc.errors import InputError, ModelError
from lvc.models.conditional import ConditionalConfig, ConditionalP
from lvc.models.context import SpatialContext
from lvc.models.correction import Correction, CorrectionConfig
from lvc.models.frozen import extend, freeze, latent_space_id, save_frozen, valid_model_name
from lvc.models.latent import LatentModel, ModelConfig
from lvc.models.registry import DEFAULT_IMAGE_MODEL, load_model
from lvc.models.temporal import TemporalPrior
from lvc.train.context import ContextTrainConfig, train_context
from lvc.train.data import SAMPLE_BY
from lvc.train.inter import DISTORTIONS, InterTrainConfig, train_inter
from lvc.train.temporal import TemporalTrainConfig, train_temporal
from lvc.train.trainer import TrainConfig, train

_WIDTH_HELP = {"synthesis_widths": "synthesis channels at 1/8, 1/4, 1/2 resolution (default: N each)",
               "analysis_widths": "analysis channels at 1/2, 1/4, 1/8 resolution (default: N each)"}
_MODEL_HELP = {"context": "width of a checkerboard context network trained jointly with the transforms "
                           "(e.g. 128; default 0: none, `lvc train-ctx` adds one afterwards)"}


_TRAIN_HELP = {"freeze_analysis": "train only the decoder side (synthesis, hyperprior, context): the latent space "
                                  "stays, and so do the P-frame priors and inter models trained for it"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a latent model on folders of images and/or videos",
                       description="Rate-distortion training; one model covers every --quality.")
    p.add_argument("data", nargs="+", help="image/video files or folders (searched recursively)")
    p.add_argument("--out", required=True, help="run folder: checkpoints, log.csv, progress.png, cache")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--arch", choices=["hyperprior", "factorized"], default="hyperprior")
    for f in fields(ModelConfig):
        if f.name in _WIDTH_HELP:
            p.add_argument(f"--{f.name.replace('_', '-')}", type=_widths, default=(), metavar="C1,C2,C3",
                           help=_WIDTH_HELP[f.name])
        elif f.name != "arch":
            p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default,
                           help=_MODEL_HELP.get(f.name))
    for f in fields(TrainConfig):
        if f.name in ("data", "out"):
            continue
        if f.name == "distortion":
            p.add_argument("--distortion", choices=["mse", "ms-ssim"], default="mse")
        elif f.name == "sample_by":
            _add_sample_by(p, f.default)
        elif f.name == "val":
            p.add_argument("--val", nargs="*", default=[], help="validation images/folders (real encoder)")
        elif f.type == "bool" or isinstance(f.default, bool):
            p.add_argument(f"--{f.name.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=f.default,
                           help=_TRAIN_HELP.get(f.name))
        else:
            p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    p.set_defaults(func=run)

    _add_prior_parser(sub, "train-p", "train the P-frame (temporal) prior of a latent model on video clips",
                      "Rate training of the temporal prior on latents of consecutive frames",
                      "video files or folders (searched recursively)", "temporal", TemporalTrainConfig, run_temporal)
    _add_prior_parser(sub, "train-ctx", "train the spatial (checkerboard) context prior of a latent model",
                      "Rate training of the context prior on latents of image crops",
                      "image/video files or folders (searched recursively)", "context", ContextTrainConfig,
                      run_context)

    t = sub.add_parser("train-inter", help="train the conditional P-frame model of a latent model on video clips",
                       description="End-to-end rate-distortion training of motion-compensated conditional P-frames "
                                   "on short sequences (the first frame coded by the frozen intra model).")
    t.add_argument("data", nargs="+", help="video files or folders (searched recursively); photos too, with "
                                          "--per-photo")
    t.add_argument("--out", required=True, help="run folder: checkpoints, log.csv, sequence cache")
    t.add_argument("--model", help=f"intra model (name or .lvcm); default: {DEFAULT_IMAGE_MODEL}, the shipped "
                                      "image model (the video model's base may be another: docs/models.md)")
    t.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    for f in fields(ConditionalConfig):
        if f.name in ("intra_M", "levels"):  # those follow the intra model
            continue
        if isinstance(f.default, bool):
            t.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, action=argparse.BooleanOptionalAction,
                           default=None, help=f"model shape (default {f.default}; with --init, the checkpoint's "
                                              f"unless given): {SHAPE_HELP[f.name]}")
        else:
            t.add_argument(f"--{f.name}", type=int, default=None,
                           help=f"model shape (default {f.default}; with --init, the checkpoint's unless given)")
    for f in fields(InterTrainConfig):
        if f.name in ("data", "out"):
            continue
        if f.name == "distortion":
            t.add_argument("--distortion", choices=DISTORTIONS, default=f.default, help=INTER_HELP.get(f.name))
        elif isinstance(f.default, bool):
            t.add_argument(f"--{f.name.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=f.default)
        else:
            t.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default,
                           help=INTER_HELP.get(f.name))
    t.set_defaults(func=run_inter)

    e = sub.add_parser("export", help="freeze a training checkpoint into a .lvcm model file",
                       description="Builds the integer coding tables once and writes NAME.lvcm; with "
                                   "--manifest, records its SHA-256 in that MANIFEST.json.")
    e.add_argument("checkpoint")
    e.add_argument("--name", required=True, help="stable model name recorded in bitstreams")
    e.add_argument("-o", "--output", required=True, help="output .lvcm file")
    e.add_argument("--manifest", help="MANIFEST.json to update (e.g. lvc/weights/MANIFEST.json)")
    e.add_argument("--temporal", help="a `lvc train-p` checkpoint to include as the P-frame prior")
    e.add_argument("--context", help="a `lvc train-ctx` checkpoint to include as the spatial context prior")
    e.add_argument("--inter", help="a `lvc train-inter` checkpoint to include for conditional P-frames")
    e.set_defaults(func=export)

    x = sub.add_parser("extend", help="add conditional P-frames to a model in a small file of their own",
                       description="Writes OUTPUT.lvcm holding only the inter section of a `lvc train-inter` "
                                   "checkpoint (and, with --temporal, a P-frame prior for a base without one) "
                                   "and the base model's name and SHA-256. It loads with the base (a shipped "
                                   "model, or BASE_NAME.lvcm beside it); streams of the base keep decoding "
                                   "with the base alone.")
    x.add_argument("base", help="the base model: a shipped model's name or a .lvcm file")
    x.add_argument("--inter", required=True, help="a `lvc train-inter` checkpoint trained against the base")
    x.add_argument("--temporal", help="a `lvc train-p` checkpoint trained against the base, for its residual "
                                      "P-frames (only for a base without a P-frame prior)")
    x.add_argument("--name", required=True, help="stable name of the extended model (recorded in bitstreams)")
    x.add_argument("-o", "--output", required=True, help="output .lvcm file")
    x.add_argument("--manifest", help="MANIFEST.json to update (e.g. lvc/weights/MANIFEST.json)")
    x.set_defaults(func=extend_model)


def _add_prior_parser(sub: argparse._SubParsersAction, name: str, help: str, description: str, data_help: str,
                      kind: str, config: type, func) -> None:
    """``train-p`` / ``train-ctx``: the same options over their own training config."""
    t = sub.add_parser(name, help=help, description=description + "; the intra model stays frozen.")
    t.add_argument("data", nargs="+", help=data_help)
    t.add_argument("--out", required=True, help="run folder: checkpoints, log.csv, latent cache")
    t.add_argument("--model", help=f"intra model (name or .lvcm); default: {DEFAULT_IMAGE_MODEL}, the shipped "
                                      "image model (the video model's base may be another: docs/models.md)")
    t.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    t.add_argument("--init", help=f"start from this {kind} checkpoint's weights (e.g. after the intra model changed)")
    for f in fields(config):
        if f.name == "sample_by":
            _add_sample_by(t, f.default)
        elif f.name not in ("data", "out"):
            t.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    t.set_defaults(func=func)


def _add_sample_by(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--sample-by", choices=SAMPLE_BY, default=default,
                   help="draw crops per source file, each photo or clip alike (default), or per pixel area "
                        "(runs before session 22; lvc.train.data.frame_weights)")


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(c) for c in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three integers like 128,80,64, got {text!r}") from None
    if len(widths) != 3 or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"expected three positive integers like 128,80,64, got {text!r}")
    return widths


def run(args: argparse.Namespace) -> int:
    mcfg = ModelConfig(**{f.name: getattr(args, f.name) for f in fields(ModelConfig)})
    tcfg = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    last = train(tcfg, mcfg, resume=args.resume)
    print(f"last checkpoint: {last}")
    return 0


SHAPE_HELP = {"pixel_ref": "show the previous picture, moved, in P-frames",
              "skip": "add a linear map of the latent to the context in the update (with --init and a "
                      "larger --M: the map and the new channels' readers start at zero)"}
INTER_HELP = {"init": "new runs: start from this `lvc train-inter` checkpoint, e.g. one trained for another intra "
                      "model (its shape; tensors that fit are taken, the I-frame context is fitted anew)",
              "per_photo": "also train on this many pans over each photo among the data (a crop window moving "
                           "at a random fractional velocity); 0: clips only",
              "intra_offset": "code each sequence's I-frame above the P-frames' quality by this share of the "
                              "headroom, as `lvc encode --intra-offset` does; 0: the same quality",
              "fresh": "with --init: comma-separated parts of the model that keep their new weights; `latent`: "
                       "the whole path that makes, codes and reads the P latent (the I-frame context, its reduction "
                       "for the prior and the display stay)",
              "distortion": "mse: RGB MSE; yuv-mse: squared error on BT.601 Y and 2x2-averaged U, V weighted "
                            "6:1:1 (what PSNR-YUV scores), on the scale of RGB MSE"}


def run_temporal(args: argparse.Namespace) -> int:
    cfg = TemporalTrainConfig(**{f.name: getattr(args, f.name) for f in fields(TemporalTrainConfig)})
    last = train_temporal(cfg, load_model(args.model or DEFAULT_IMAGE_MODEL), resume=args.resume, init=args.init)
    print(f"last checkpoint: {last}")
    return 0


def run_inter(args: argparse.Namespace) -> int:
    intra = load_model(args.model or DEFAULT_IMAGE_MODEL)
    cfg = InterTrainConfig(**{f.name: getattr(args, f.name) for f in fields(InterTrainConfig)})
    shape = {f.name: getattr(args, f.name) for f in fields(ConditionalConfig)
             if f.name not in ("intra_M", "levels") and getattr(args, f.name) is not None}
    try:
        mcfg = ConditionalConfig(**shape, intra_M=intra.config.M, levels=intra.log_gain.shape[0])
    except ValueError as e:
        raise InputError(str(e), None, "see `lvc train-inter --help`") from None
    last = train_inter(cfg, intra, mcfg, resume=args.resume, overrides=shape)
    print(f"last checkpoint: {last}")
    return 0


def run_context(args: argparse.Namespace) -> int:
    cfg = ContextTrainConfig(**{f.name: getattr(args, f.name) for f in fields(ContextTrainConfig)})
    last = train_context(cfg, load_model(args.model or DEFAULT_IMAGE_MODEL), resume=args.resume, init=args.init)
    print(f"last checkpoint: {last}")
    return 0


def _load_correction(path: str, kind: str, cls: type[Correction], command: str) -> tuple[Correction, str]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        found = state.get("kind", "temporal")  # older P checkpoints
    except Exception as e:  # noqa: BLE001 - see export
        raise ModelError(f"not a usable `{command}` checkpoint ({e.__class__.__name__})", path) from None
    if found != kind:  # the two priors share one network shape: only the recorded kind tells them apart
        raise ModelError(f"this is a {found} prior checkpoint, not a {kind} one", path,
                         f"pass a `{command}` checkpoint here")
    try:
        config = state.get("correction_config") or state["temporal_config"]  # the latter: older P checkpoints
        net = cls(CorrectionConfig.from_dict(config))
        net.load_state_dict(state["model"])
        return net, state["latent_space"]
    except Exception as e:  # noqa: BLE001 - see export
        raise ModelError(f"not a usable `{command}` checkpoint ({e.__class__.__name__})", path) from None


def _load_inter(path: str, space: str) -> ConditionalP:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        kind, trained_for = state.get("kind"), state.get("latent_space")
        net = ConditionalP(ConditionalConfig.from_dict(state["inter_config"])) if kind == "inter" else None
        if net is not None:
            net.load_state_dict(state["model"])
    except Exception as e:  # noqa: BLE001 - see export
        raise ModelError(f"not a usable `lvc train-inter` checkpoint ({e.__class__.__name__})", path) from None
    if net is None:
        raise ModelError(f"this is a {kind} checkpoint, not an inter one", path, "pass a `lvc train-inter` checkpoint")
    if trained_for != space:
        raise ModelError(f"the inter model was trained for latent space {str(trained_for)[:16]}, not the intra "
                         f"model's {space[:16]}", path, "train it against this intra model (`lvc train-inter --model`)")
    return net


def export(args: argparse.Namespace) -> int:
    if not valid_model_name(args.name):
        raise ModelError("model name must be 1..64 bytes of UTF-8", args.name)
    try:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
        model = LatentModel(ModelConfig.from_dict(state["model_config"]))
        model.load_state_dict(state["model"])
    except Exception as e:  # noqa: BLE001 - unpickling can fail in many ways; all mean "not a checkpoint"
        raise ModelError(f"not a usable lvc checkpoint ({e.__class__.__name__})", args.checkpoint) from None
    space = latent_space_id(model.g_a, model.log_gain)
    if model.cfg.context and args.context:
        warnings.warn(f"--context replaces the context network {args.checkpoint} trained with the transforms",
                      stacklevel=1)
    nets: dict[str, Correction | None] = {"temporal": None, "context": None}
    for key, cls, command in (("temporal", TemporalPrior, "lvc train-p"), ("context", SpatialContext, "lvc train-ctx")):
        path = getattr(args, key)
        if not path:
            continue
        nets[key], trained_for = _load_correction(path, key, cls, command)
        if trained_for != space:
            raise ModelError(f"the {key} prior was trained for latent space {trained_for[:16]}, not this "
                             f"checkpoint's {space[:16]}", path,
                             f"export the intra model alone, then run `{command} --model IT --init CKPT`")
    inter = _load_inter(args.inter, space) if getattr(args, "inter", None) else None
    frozen = freeze(model, args.name, nets["temporal"], nets["context"], inter)
    sha = save_frozen(frozen, args.output)
    _record(args.manifest, args.name, sha)
    print(f"{args.output}: {args.name} sha256 {sha} (step {state.get('step')})")
    return 0


def _record(manifest: str | None, name: str, sha: str) -> None:
    if manifest:
        path = Path(manifest)
        entries = json.loads(path.read_text()) if path.exists() else {}
        entries[name] = sha
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
        tmp.replace(path)


def extend_model(args: argparse.Namespace) -> int:
    from lvc.models.registry import load_model

    if not valid_model_name(args.name):
        raise ModelError("model name must be 1..64 bytes of UTF-8", args.name)
    base = load_model(args.base)
    space = latent_space_id(base.g_a, base.log_gain)
    net = _load_inter(args.inter, space)
    temporal, temporal_space = None, None
    if getattr(args, "temporal", None):
        temporal, temporal_space = _load_correction(args.temporal, "temporal", TemporalPrior, "lvc train-p")
    hint = Path(args.base).name if args.base.endswith(".lvcm") or "/" in args.base else None
    if Path(args.output).name in (hint, f"{base.name}.lvcm"):
        raise ModelError("the output would take the base model's file name", args.output,
                         "write the extension under another name, beside the base")
    try:
        frozen = extend(base, args.name, net, space, base_file=hint, temporal=temporal, temporal_space=temporal_space)
    except ValueError as e:  # e.g. the base has a conditional P section (or a P-frame prior) already
        raise ModelError(str(e), args.base, "extend the intra model it was made from") from None
    sha = save_frozen(frozen, args.output)
    _record(args.manifest, args.name, sha)
    print(f"{args.output}: {args.name} sha256 {sha}, extends {base.name} ({base.sha256[:16]}): "
          f"keep {hint or base.name + '.lvcm'} beside it unless that model is shipped")
    return 0
