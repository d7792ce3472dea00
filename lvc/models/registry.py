"""Model lookup by stable name (shipped weights) or by path, with hash checks.

Bitstreams name their model and carry the first 8 bytes of its weights' SHA-256, so a
decoder can refuse a file whose model it does not have instead of decoding garbage.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

from lvc.errors import ModelError
from lvc.models.frozen import FrozenModel, base_beside, load_frozen

# Video: lvc-hl192d (the image model) plus pixel-reference conditional P-frames with
# quarter-pixel motion, trained with raised I-frames as the encoder codes them, and a P-frame
# prior trained on its latent space (an extension file; docs/models.md). Still images take
# lvc-hl192d itself: image and video share one latent space again (search and scene analysis
# keep ANALYSIS_MODEL below).
DEFAULT_MODEL = "lvc-hl192dr"
DEFAULT_IMAGE_MODEL = "lvc-hl192d"
# Search descriptors and scene signals come from a model's analysis; their thresholds and
# measurements (docs/search.md) are lvc-hp64's, and indexes record the model they were built
# with, so they keep it when the coding defaults move on.
ANALYSIS_MODEL = "lvc-hp64c"
ANALYSIS_MODEL_HELP = f"model name or .lvcm path whose analysis makes the signals (default: {ANALYSIS_MODEL})"
SUFFIX = ".lvcm"


def _weights_dir() -> Path:
    return Path(str(resources.files("lvc") / "weights"))


def manifest() -> dict[str, str]:
    """Shipped model name -> SHA-256 of its weights file."""
    path = _weights_dir() / "MANIFEST.json"
    return json.loads(path.read_text()) if path.exists() else {}


def available() -> list[str]:
    return sorted(manifest())


def _resolve_base(path: Path):
    """Bases of extension files: a shipped model when the hash matches, else the file beside."""
    def resolve(ref: dict) -> FrozenModel:
        if manifest().get(ref["name"]) == ref["sha256"]:
            return load_model(ref["name"])
        return _load_cached(str(base_beside(path, ref)), ref["sha256"])
    return resolve


@lru_cache(maxsize=8)
def _load_cached(path: str, sha: str | None) -> FrozenModel:
    return load_frozen(path, expect_sha256=sha, resolve_base=_resolve_base(Path(path)))


def default_model(still: bool = False) -> str:
    """The shipped model ``lvc encode`` takes without ``--model``: for a still image or video."""
    return DEFAULT_IMAGE_MODEL if still and DEFAULT_IMAGE_MODEL in manifest() else DEFAULT_MODEL


def analysis_model(name_or_path: str | None = None) -> FrozenModel:
    """The model whose analysis makes search descriptors and scene signals (default
    :data:`ANALYSIS_MODEL`)."""
    return load_model(name_or_path or ANALYSIS_MODEL)


def load_model(name_or_path: str | None = None) -> FrozenModel:
    """A shipped model by name (default: :data:`DEFAULT_MODEL`) or a ``.lvcm`` file by path."""
    key = name_or_path or DEFAULT_MODEL
    if key.endswith(SUFFIX) or "/" in key:
        if not Path(key).is_file():
            raise ModelError("model file not found", key, "pass a .lvcm file or one of: " + ", ".join(available()))
        return _load_cached(str(Path(key).resolve()), None)
    shipped = manifest()
    if key not in shipped:
        raise ModelError(f"unknown model {key!r}", None, "available: " + (", ".join(available()) or "none"))
    return _load_cached(str(_weights_dir() / f"{key}{SUFFIX}"), shipped[key])


def model_for_stream(name: str, weights_hash: bytes, override: str | FrozenModel | None, where: str) -> FrozenModel:
    """The model a bitstream needs; ``override`` (name, path or a loaded model) replaces the
    lookup by name."""
    try:
        model = override if isinstance(override, FrozenModel) else load_model(override or name)
    except ModelError as e:
        raise ModelError(f"stream needs model {name!r} ({weights_hash.hex()}): {e.what}", where,
                         e.hint or "pass --model PATH to the weights it was encoded with") from None
    if model.weights_hash != weights_hash:
        raise ModelError(f"stream was encoded with {name!r} weights {weights_hash.hex()}, but the model found has "
                         f"{model.weights_hash.hex()}", where, "pass --model PATH to the matching weights")
    return model
