"""Freezing: a trained :class:`LatentModel` becomes an immutable coding model.

``freeze`` is the one explicit step that converts everything the decoder's probability
path needs into integers (coding tables, integer hyper-synthesis, fixed-point static
priors). The result is saved as a ``.lvcm`` file; its SHA-256 identifies it in
bitstreams, and loading it never recomputes a table.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from lvc.entropy.intnet import IntSynthesis
from lvc.entropy.tables import LOG_FRAC_BITS, CdfTables, factorized_tables, gaussian_tables
from lvc.errors import ModelError
from lvc.models.conditional import ConditionalP
from lvc.models.correction import Correction, CorrectionConfig
from lvc.models.inter_frozen import FrozenInter, build_inter, freeze_inter
from lvc.models.latent import LatentModel, ModelConfig

FILE_FORMAT = "lvc-model/1"
FILE_FORMAT_TEMPORAL = "lvc-model/2"  # with a P-frame prior: older decoders must refuse, not ignore it
FILE_FORMAT_CONTEXT = "lvc-model/3"  # with a spatial context prior (and perhaps a P-frame prior)
FILE_FORMAT_INTER = "lvc-model/4"  # with a conditional P-frame section (lvc.models.inter_frozen)
# Only a conditional P-frame section, over a base model named by name and SHA-256 (not copied):
# the base keeps its own identity, so streams coded with it still find it.
FILE_FORMAT_EXTENSION = "lvc-model/5"
# An extension that also brings a P-frame prior (for a base without one): older readers must
# refuse it, not decode residual P-frames without the prior.
FILE_FORMAT_EXTENSION_TEMPORAL = "lvc-model/6"
EXTENSION_FORMATS = (FILE_FORMAT_EXTENSION, FILE_FORMAT_EXTENSION_TEMPORAL)
FILE_FORMATS = (FILE_FORMAT, FILE_FORMAT_TEMPORAL, FILE_FORMAT_CONTEXT, FILE_FORMAT_INTER, *EXTENSION_FORMATS)
# Suffixes of any format above naming what its conditional section needs beyond the format:
# blending the previous picture into its pictures (ConditionalConfig.pixel_ref),
# fractional motion vectors (ConditionalConfig.subpel) and the latent's linear path into the
# context (ConditionalConfig.skip). A reader without one must refuse the file, not fail to
# load it or decode streams wrongly.
PIXEL_REF = "+pixel-ref"
SUBPEL = "+subpel"
CTX_SKIP = "+ctx-skip"
FEATURES = (PIXEL_REF, SUBPEL, CTX_SKIP)


def inter_features(cfg) -> str:
    """The format suffixes a conditional section with ``cfg`` (ConditionalConfig) needs."""
    return ((PIXEL_REF if cfg.pixel_ref else "") + (SUBPEL if cfg.subpel > 1 else "")
            + (CTX_SKIP if cfg.skip else ""))
BaseResolver = Callable[[dict], "FrozenModel"]  # {"name", "sha256", "file"} -> that model, or ModelError
QUALITY_MAX = 65535  # qualities travel as 16-bit integers


@dataclass(frozen=True)
class FrozenCorrection:
    """A prior correction (:mod:`lvc.models.correction`) with its decoder path in integers:
    the P-frame prior, or the spatial context prior."""

    config: CorrectionConfig
    fuse: IntSynthesis  # [mean, log-scale, condition] -> corrections (all fixed point)
    latent_space: str  # latent_space_id of the intra transforms it was trained on



@dataclass(frozen=True)
class FrozenModel:
    """Everything the codec needs; immutable once built."""

    name: str
    config: ModelConfig
    g_a: nn.Module
    g_s: nn.Module
    h_a: nn.Module | None
    log_gain: torch.Tensor  # (levels, M) float
    log_inv_gain: torch.Tensor
    hyper: IntSynthesis | None  # integer hyper-synthesis (hyperprior arch)
    z_tables: CdfTables | None
    y_tables: CdfTables
    static_mean: torch.Tensor | None  # (levels, M) int64 fixed point (factorized arch)
    static_log_scale: torch.Tensor | None
    sha256: str = ""
    data: bytes = field(default=b"", repr=False)  # the serialised file this model was read from
    temporal: FrozenCorrection | None = None  # P-frame prior; without it P-frames code latent residuals
    context: FrozenCorrection | None = None  # spatial (checkerboard) prior of I-frames
    inter: FrozenInter | None = None  # conditional P-frames (FRAME_PC)
    base: tuple[str, str] | None = None  # (name, SHA-256) of the model an extension file adds to

    @property
    def weights_hash(self) -> bytes:
        """First 8 bytes of the file's SHA-256, as recorded in bitstreams."""
        return bytes.fromhex(self.sha256[:16])


def latent_space_id(g_a: nn.Module, log_gain: torch.Tensor) -> str:
    """SHA-256 of what defines the intra latents (analysis weights as stored, gains): a P prior
    is valid for exactly this latent space, however the rest of the model file changes."""
    h = hashlib.sha256()
    for k, v in g_a.state_dict().items():
        h.update(k.encode())
        h.update((v.half() if v.is_floating_point() else v).contiguous().numpy().tobytes())
    h.update(log_gain.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def freeze(model: LatentModel, name: str, temporal: Correction | None = None,
           context: Correction | None = None, inter: ConditionalP | None = None) -> FrozenModel:
    """Build the integer coding state of ``model`` (explicit, once, before saving).

    The result is what loading the saved file gives, byte for byte: transforms are
    stored in float16 and the model is re-read from its own serialisation. A context
    network trained jointly with the transforms is the context prior unless ``context``
    names another; the file then looks like any model with a context prior.
    """
    model = model.eval()
    if model.cfg.context and context is None:
        context = model.context
    cfg = replace(model.cfg, context=0)
    one = 1 << LOG_FRAC_BITS
    frozen: dict = {"hyper": None, "z_tables": None, "static_mean": None, "static_log_scale": None}
    with torch.no_grad():
        if cfg.arch == "hyperprior":
            frozen["hyper"] = IntSynthesis.from_float(model.h_s).to_state()
            frozen["z_tables"] = factorized_tables(model.z_density).to_state()
        else:
            frozen["static_mean"] = torch.round(model.y_mean.detach().double() * one).int()
            frozen["static_log_scale"] = torch.round(model.y_log_scale.detach().double() * one).int()
    frozen["y_tables"] = gaussian_tables().to_state()
    half = {k: _half(getattr(model, k).state_dict()) if hasattr(model, k) else None for k in ("g_a", "g_s", "h_a")}
    state = {"format": FILE_FORMAT, "name": name, "config": cfg.to_dict(),
             "float": {**half, "log_gain": model.log_gain.detach().clone(),
                       "log_inv_gain": model.log_inv_gain.detach().clone()},
             "frozen": frozen}
    for key, net in (("temporal", temporal), ("context", context)):
        if net is None:
            continue
        if cfg.arch != "hyperprior":
            raise ValueError(f"a {key} prior corrects the hyperprior's predictions; this model has none")
        state["format"] = FILE_FORMAT_CONTEXT if context is not None else FILE_FORMAT_TEMPORAL
        state[key] = _freeze_correction(net, latent_space_id(model.g_a, model.log_gain))
    if inter is not None:
        state["format"] = FILE_FORMAT_INTER + inter_features(inter.cfg)
        state["inter"] = freeze_inter(inter, latent_space_id(model.g_a, model.log_gain), model.log_inv_gain)
    buf = io.BytesIO()
    torch.save(state, buf)
    return from_bytes(buf.getvalue(), name)


def extend(base: FrozenModel, name: str, inter: ConditionalP, latent_space: str,
           base_file: str | None = None, temporal: Correction | None = None,
           temporal_space: str | None = None) -> FrozenModel:
    """A model that adds conditional P-frames to ``base`` without copying it: its file holds
    the inter section and the base's name and SHA-256 (and ``base_file``, the base's file name,
    as a hint where to find it; the hash decides). ``latent_space`` is the one the inter model
    was trained for; it must be the base's. ``temporal``: a P-frame prior for the residual
    P-frames of a base that has none (trained for ``temporal_space``, again the base's)."""
    if base.inter is not None or base.base is not None:
        raise ValueError(f"{base.name} already has a conditional P section")
    space = latent_space_id(base.g_a, base.log_gain)
    if latent_space != space:
        raise ValueError(f"the inter model was trained for latent space {latent_space[:16]}, not {base.name}'s")
    ref = {"name": base.name, "sha256": base.sha256, "file": base_file or f"{base.name}.lvcm"}
    state = {"format": FILE_FORMAT_EXTENSION, "name": name, "base": ref,
             "inter": freeze_inter(inter, latent_space, base.log_inv_gain)}
    if temporal is not None:
        if base.temporal is not None:
            raise ValueError(f"{base.name} has a P-frame prior already")
        if temporal_space != space:
            raise ValueError(f"the P-frame prior was trained for latent space {str(temporal_space)[:16]}, "
                             f"not {base.name}'s")
        state["format"] = FILE_FORMAT_EXTENSION_TEMPORAL
        state["temporal"] = _freeze_correction(temporal, space)
    state["format"] += inter_features(inter.cfg)
    buf = io.BytesIO()
    torch.save(state, buf)
    return from_bytes(buf.getvalue(), name, lambda ref: base)


def _half(sd: dict) -> dict:
    return {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}


def _full(sd: dict) -> dict:
    return {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}


def save_frozen(fm: FrozenModel, path: str | os.PathLike) -> str:
    """Write the model file atomically; returns its SHA-256 (the model's identity)."""
    data = fm.data
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"cannot write the model file ({e.strerror})", str(path)) from None
    return hashlib.sha256(data).hexdigest()


def _freeze_correction(net: Correction, latent_space: str) -> dict:
    """A correction network's file section: its config and integer fuse layers."""
    with torch.no_grad():
        return {"config": net.eval().cfg.to_dict(), "fuse": IntSynthesis.from_float(net.fuse).to_state(),
                "latent_space": latent_space}


def load_frozen(path: str | os.PathLike, expect_sha256: str | None = None,
                resolve_base: BaseResolver | None = None) -> FrozenModel:
    """Read a model file. An extension file's base comes from ``resolve_base``, by default the
    base's file beside it (hash-checked)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelError(f"cannot read model file ({e.strerror})", str(path)) from None
    digest = hashlib.sha256(data).hexdigest()
    if expect_sha256 is not None and digest != expect_sha256:
        raise ModelError(f"model file hash {digest[:16]} differs from the expected {expect_sha256[:16]}",
                         str(path), "reinstall lvc; the weights file is damaged")
    if resolve_base is None:
        def resolve_base(ref: dict) -> FrozenModel:
            return load_frozen(base_beside(path, ref), ref["sha256"])
    return from_bytes(data, str(path), resolve_base)


def from_bytes(data: bytes, where: str, resolve_base: BaseResolver | None = None) -> FrozenModel:
    """Parse a serialised model file (as written by :func:`save_frozen`)."""
    path = where
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a model file"
        raise ModelError(f"not an lvc model file ({e.__class__.__name__})", str(path)) from None
    if not isinstance(state, dict) or not isinstance(state.get("format"), str):
        raise ModelError("not an lvc model file (format tag missing)", str(path))
    tag, *features = state["format"].split("+")
    if tag not in FILE_FORMATS:
        raise ModelError("not an lvc model file (format tag missing)", str(path))
    unknown = [f for f in features if "+" + f not in FEATURES]
    if unknown:
        raise ModelError(f"model file needs a feature this lvc does not know ({'+'.join(unknown)})", str(path),
                         "upgrade lvc")
    state["format"], suffix = tag, "".join("+" + f for f in features)
    base = None
    if state["format"] in EXTENSION_FORMATS:
        ref = state.get("base")
        if not (isinstance(ref, dict) and valid_model_name(ref.get("name")) and valid_model_name(state.get("name"))
                and isinstance(ref.get("sha256"), str) and re.fullmatch("[0-9a-f]{64}", ref["sha256"])):
            raise ModelError("damaged lvc model file (base reference)", str(path), "re-export or reinstall the model")
        wanted = f"{ref['name']} ({ref['sha256'][:16]})"
        if resolve_base is None:
            raise ModelError(f"model extends {wanted}, which is not available", str(path),
                             "keep the base model file beside it")
        try:
            base = resolve_base(ref)
        except ModelError as e:  # the base file's own problem, with its path and advice
            raise ModelError(f"model extends {wanted}: {e.what} ({e.where})", str(path),
                             f"put the base it was made with beside it (as {ref.get('file') or ref['name'] + '.lvcm'}),"
                             " or install the lvc that ships it") from None
    try:
        model = _build(state, data) if base is None else _build_extension(state, data, base, str(path))
        if suffix != (inter_features(model.inter.config) if model.inter is not None else ""):
            raise ValueError("format tag and conditional section disagree")
        return model
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise ModelError(f"damaged lvc model file ({e.__class__.__name__})", str(path),
                         "re-export or reinstall the model") from None


def _check_inter(inter: FrozenInter, cfg: ModelConfig) -> None:
    if inter.config.intra_M != cfg.M or inter.config.levels != cfg.levels:
        raise ValueError("the inter section does not match the intra model's latent")


def valid_model_name(name: object) -> bool:
    """Names travel in bitstreams as 1..64 bytes of UTF-8."""
    return isinstance(name, str) and 1 <= len(name.encode()) <= 64


def base_beside(path: Path, ref: dict) -> Path:
    """Where an extension file's base is looked for: its recorded file name, else its model
    name, in the extension's folder (only a file name: a path in a model file is ignored; the
    extension itself is never its own base)."""
    names = [c for c in (ref.get("file"), f"{ref['name']}.lvcm")
             if isinstance(c, str) and c and Path(c).name == c and c != path.name]
    for candidate in names:
        if (path.parent / candidate).is_file():
            return path.parent / candidate
    return path.parent / (names[0] if names else f"{Path(ref['name']).name}.lvcm")


def _build_extension(state: dict, data: bytes, base: FrozenModel, where: str) -> FrozenModel:
    inter = build_inter(state["inter"])
    if inter.latent_space != latent_space_id(base.g_a, base.log_gain):
        raise ModelError(f"the inter section was made for another latent space than {base.name}'s", where,
                         "re-export it against its base model")
    _check_inter(inter, base.config)
    temporal = base.temporal
    if state["format"] == FILE_FORMAT_EXTENSION_TEMPORAL:
        if temporal is not None:
            raise ModelError(f"the extension brings a P-frame prior, but {base.name} has one", where,
                             "re-export it against its base model")
        if not isinstance(state.get("temporal"), dict):
            raise ModelError("damaged lvc model file (P-frame prior)", where, "re-export or reinstall the model")
        temporal = _build_correction(state["temporal"])
        if temporal.latent_space != inter.latent_space:
            raise ModelError(f"the P-frame prior was made for another latent space than {base.name}'s", where,
                             "re-export it against its base model")
    return replace(base, name=state["name"], sha256=hashlib.sha256(data).hexdigest(), data=data, inter=inter,
                   temporal=temporal, base=(base.name, base.sha256))


def _build(state: dict, data: bytes) -> FrozenModel:
    cfg = ModelConfig.from_dict(state["config"])
    model = LatentModel(cfg).requires_grad_(False)
    model.g_a.load_state_dict(_full(state["float"]["g_a"]))
    model.g_s.load_state_dict(_full(state["float"]["g_s"]))
    if cfg.arch == "hyperprior":
        model.h_a.load_state_dict(_full(state["float"]["h_a"]))
    fr = state["frozen"]
    fm = FrozenModel(
        state["name"], cfg, model.g_a.eval(), model.g_s.eval(), model.h_a.eval() if cfg.arch == "hyperprior" else None,
        state["float"]["log_gain"], state["float"]["log_inv_gain"],
        IntSynthesis.from_state(fr["hyper"]) if fr["hyper"] else None,
        CdfTables.from_state(fr["z_tables"]) if fr["z_tables"] else None,
        CdfTables.from_state(fr["y_tables"]),
        fr["static_mean"].long() if fr["static_mean"] is not None else None,
        fr["static_log_scale"].long() if fr["static_log_scale"] is not None else None,
        hashlib.sha256(data).hexdigest(), data, _build_correction(state.get("temporal")),
        _build_correction(state.get("context")), build_inter(state["inter"]) if state.get("inter") else None,
    )
    if fm.inter is not None:
        _check_inter(fm.inter, cfg)
    return fm


def _build_correction(t: dict | None) -> FrozenCorrection | None:
    if t is None:
        return None
    return FrozenCorrection(CorrectionConfig.from_dict(t["config"]), IntSynthesis.from_state(t["fuse"]),
                            t["latent_space"])
