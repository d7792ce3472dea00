"""The shipped model files: hash-checked at load, and the right default for each input."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from lvc.codec import api
from lvc.codec.cli import sample_clip
from lvc.errors import ModelError
from lvc.models import registry


def test_every_shipped_file_matches_its_manifest_hash():
    shipped = registry.manifest()
    assert {registry.DEFAULT_MODEL, registry.DEFAULT_IMAGE_MODEL} <= set(shipped)
    for name, sha in shipped.items():
        path = registry._weights_dir() / f"{name}{registry.SUFFIX}"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha, name
        assert registry.load_model(name).name == name


def test_a_still_image_takes_the_image_model_and_video_the_video_model(tmp_path):
    from lvc.io.reader import open_video

    with open_video(sample_clip()) as v:
        crop = next(v.frames())[:64, :96]
    Image.fromarray(np.ascontiguousarray(crop)).save(tmp_path / "still.png")
    api.encode(tmp_path / "still.png", tmp_path / "still.lvc", progress=False, metrics=False, refine=0)
    api.encode(sample_clip(), tmp_path / "clip.lvc", max_frames=2, progress=False, metrics=False)
    api.encode(sample_clip(), tmp_path / "one.lvc", max_frames=1, progress=False, metrics=False, refine=0)
    assert api.info(tmp_path / "still.lvc")["model"] == registry.DEFAULT_IMAGE_MODEL
    assert api.info(tmp_path / "one.lvc")["model"] == registry.DEFAULT_IMAGE_MODEL
    assert api.info(tmp_path / "clip.lvc")["model"] == registry.DEFAULT_MODEL
    # an explicit --model wins over the routing
    api.encode(tmp_path / "still.png", tmp_path / "v.lvc", model=registry.DEFAULT_MODEL, progress=False,
               metrics=False, refine=0)
    assert api.info(tmp_path / "v.lvc")["model"] == registry.DEFAULT_MODEL
    decoded = list(api.iter_decode(tmp_path / "still.lvc"))
    assert len(decoded) == 1 and decoded[0].shape == crop.shape


def test_unknown_model_name_is_refused():
    with pytest.raises(ModelError):
        registry.load_model("lvc-nonexistent")


def test_search_and_scenes_keep_the_analysis_their_indexes_were_built_with(tmp_path):
    """The coding defaults moved to lvc-hl192c's latent space; an index built with the
    earlier default (lvc-hp64c, described by its base lvc-hp64) still opens."""
    from lvc.search import service

    hp64 = f"lvc-hp64@{registry.manifest()['lvc-hp64'][:16]}"
    assert service._model_tag(registry.analysis_model()) == hp64
    assert registry.analysis_model().name != registry.load_model(registry.DEFAULT_MODEL).name
    root = tmp_path / "idx"
    state, _ = service._open(root, None, create=True)
    assert state.model == hp64 and state.dim == 2 * registry.load_model("lvc-hp64").config.M
