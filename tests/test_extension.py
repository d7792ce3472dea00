"""Extension model files: a conditional P section over a base model named by its hash."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import encoder_recons, run_lvc, same_picture, write_y4m

from lvc.codec import api
from lvc.codec.cli import sample_clip
from lvc.errors import ModelError
from lvc.io.reader import open_video
from lvc.models.conditional import ConditionalConfig, ConditionalP
from lvc.models.frozen import extend, freeze, latent_space_id, load_frozen, save_frozen
from lvc.models.latent import LatentModel, ModelConfig


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """A tiny base model file, an (untrained, seeded) inter model for it, and its latent space."""
    torch.manual_seed(0)
    intra = LatentModel(ModelConfig(N=8, M=16, Nh=8, levels=3))
    inter = ConditionalP(ConditionalConfig(M=8, C=8, N=8, Nh=8, intra_M=16, levels=3))
    folder = tmp_path_factory.mktemp("ext")
    base = freeze(intra, "tiny-base")
    save_frozen(base, folder / "tiny-base.lvcm")
    return folder, base, inter, latent_space_id(base.g_a, base.log_gain)


@pytest.fixture(scope="module")
def six(tmp_path_factory):
    with open_video(sample_clip()) as v:
        frames = [np.ascontiguousarray(f[100:164, 300:428]) for _, f in zip(range(6), v.frames())]
    path = tmp_path_factory.mktemp("six") / "six.y4m"
    write_y4m(path, frames)
    return path


def test_extension_loads_with_its_base_beside_it_and_codes_pc_frames(parts, six, tmp_path):
    folder, base, inter, space = parts
    ext = extend(base, "tiny-ext", inter, space)
    path = folder / "tiny-ext.lvcm"
    save_frozen(ext, path)
    loaded = load_frozen(path)
    assert loaded.name == "tiny-ext" and loaded.inter is not None and loaded.base == ("tiny-base", base.sha256)
    assert loaded.sha256 == ext.sha256 != base.sha256
    out = tmp_path / "a.lvc"
    api.encode(six, out, quality=0.5, model=str(path), progress=False)
    info = api.info(out)
    assert info["model"] == "tiny-ext" and {"PC", "PS", "PM", "PQ"} & {f["type"] for f in info["frames"]}
    # The file holds the inter section only: the base's transforms are not copied into it.
    assert b"g_s" not in path.read_bytes()
    expected = encoder_recons(loaded, six, 0.5)
    decoded = list(api.iter_decode(out, model=str(path), planes=None))
    assert len(decoded) == 6 and all(same_picture(x, y) for x, y in zip(decoded, expected))


def test_extension_without_its_base_fails_cleanly(parts, tmp_path):
    folder, base, inter, space = parts
    lonely = tmp_path / "tiny-ext.lvcm"
    save_frozen(extend(base, "tiny-ext", inter, space), lonely)
    with pytest.raises(ModelError, match="extends tiny-base"):
        load_frozen(lonely)
    # A base file of the same name but other weights is refused by its hash.
    torch.manual_seed(1)
    save_frozen(freeze(LatentModel(ModelConfig(N=8, M=16, Nh=8, levels=3)), "tiny-base"), tmp_path / "tiny-base.lvcm")
    with pytest.raises(ModelError, match="differs from the expected"):
        load_frozen(lonely)


def test_extension_refuses_an_inter_model_of_another_latent_space(parts):
    _, base, inter, _ = parts
    with pytest.raises(ValueError, match="latent space"):
        extend(base, "tiny-ext", inter, "0" * 64)


def test_lvc_extend_command(parts, tmp_path):
    folder, base, inter, space = parts
    ckpt = tmp_path / "inter.pt"
    torch.save({"kind": "inter", "inter_config": inter.cfg.to_dict(), "model": inter.state_dict(),
                "latent_space": space}, ckpt)
    out = folder / "cli-ext.lvcm"
    r = run_lvc("extend", folder / "tiny-base.lvcm", "--inter", ckpt, "--name", "cli-ext", "-o", out)
    assert r.returncode == 0, r.stderr
    assert load_frozen(out).inter is not None
    other = tmp_path / "other.pt"
    torch.save({"kind": "inter", "inter_config": inter.cfg.to_dict(), "model": inter.state_dict(),
                "latent_space": "f" * 64}, other)
    r = run_lvc("extend", folder / "tiny-base.lvcm", "--inter", other, "--name", "x", "-o", tmp_path / "x.lvcm")
    assert r.returncode != 0 and "latent space" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.lvcm").exists()
    r = run_lvc("extend", folder / "tiny-base.lvcm", "--inter", ckpt, "--name", "y", "-o", tmp_path / "tiny-base.lvcm")
    assert r.returncode != 0 and "base model's file name" in r.stderr and "Traceback" not in r.stderr


def test_damaged_base_references_fail_cleanly(parts, tmp_path):
    """A reference without a proper hash, or to the extension itself, is refused, not followed."""
    import io

    folder, base, inter, space = parts
    good = torch.load(io.BytesIO(extend(base, "tiny-ext", inter, space).data), weights_only=True)
    for ref in ({"name": "self", "sha256": "", "file": "self.lvcm"},
                {"name": "self", "sha256": "0" * 64, "file": "self.lvcm"},
                {"name": "x" * 100, "sha256": base.sha256}):
        path = tmp_path / "self.lvcm"
        buf = io.BytesIO()
        torch.save({**good, "base": ref}, buf)
        path.write_bytes(buf.getvalue())
        with pytest.raises(ModelError) as e:
            load_frozen(path)
        assert "self.lvcm" in str(e.value)


def test_an_index_built_with_the_base_serves_the_extension(parts, six, tmp_path):
    """Descriptors come from the base's analysis, which the extension does not change."""
    from lvc.search import service

    folder, base, inter, space = parts
    path = folder / "tiny-ext2.lvcm"
    save_frozen(extend(base, "tiny-ext2", inter, space), path)
    idx = tmp_path / "idx"
    service.index_add([six], idx, model=str(folder / "tiny-base.lvcm"), progress=False)
    hits = service.search(idx, six, k=1, model=str(path))
    assert hits and hits[0].path == str(six)


def test_extension_with_a_p_frame_prior_codes_as_the_whole_model(six, tmp_path):
    """`extend --temporal` for a base without a P-frame prior: the two small files code exactly
    as one file holding intra model, P-frame prior and inter section, and the prior is used."""
    import io

    from lvc.models.temporal import TemporalConfig, TemporalPrior

    torch.manual_seed(0)
    intra = LatentModel(ModelConfig(N=8, M=16, Nh=8, levels=3))
    inter = ConditionalP(ConditionalConfig(M=8, C=8, N=8, Nh=8, intra_M=16, levels=3))
    prior = TemporalPrior(TemporalConfig(M=16, C=8))
    torch.nn.init.normal_(prior.fuse[-1].weight, std=0.05)  # non-trivial corrections
    base = freeze(intra, "tp-base")
    save_frozen(base, tmp_path / "tp-base.lvcm")
    space = latent_space_id(base.g_a, base.log_gain)
    ckpt = tmp_path / "inter.pt"
    torch.save({"kind": "inter", "inter_config": inter.cfg.to_dict(), "model": inter.state_dict(),
                "latent_space": space}, ckpt)
    p_ckpt = tmp_path / "p.pt"
    torch.save({"kind": "temporal", "correction_config": prior.cfg.to_dict(), "model": prior.state_dict(),
                "latent_space": space}, p_ckpt)
    r = run_lvc("extend", tmp_path / "tp-base.lvcm", "--inter", ckpt, "--temporal", p_ckpt, "--name", "tp-ext",
                "-o", tmp_path / "tp-ext.lvcm")
    assert r.returncode == 0, r.stderr
    save_frozen(extend(base, "tp-plain", inter, space), tmp_path / "tp-plain.lvcm")  # no prior
    save_frozen(freeze(intra, "tp-ext", prior, None, inter), tmp_path / "whole.lvcm")
    ext = load_frozen(tmp_path / "tp-ext.lvcm")
    assert ext.temporal is not None and ext.base == ("tp-base", base.sha256)
    streams, pictures = {}, {}
    for name in ("tp-ext", "whole", "tp-plain"):
        out, model = tmp_path / f"{name}.lvc", str(tmp_path / f"{name}.lvcm")
        # (no residual layers: with them PC frames win where this test needs a residual P-frame)
        api.encode(six, out, quality=0.7, model=model, progress=False, residual=0)
        streams[name] = [(f["type"], f["bytes"]) for f in api.info(out)["frames"]]
        pictures[name] = list(api.iter_decode(out, model=model, planes=None))
        expected = encoder_recons(load_frozen(model), six, 0.7, residual=0.0)
        assert all(same_picture(x, y) for x, y in zip(pictures[name], expected, strict=True))
    assert streams["tp-ext"] == streams["whole"]
    assert all(same_picture(x, y) for x, y in zip(pictures["tp-ext"], pictures["whole"], strict=True))
    assert "P" in {t for t, _ in streams["whole"]}  # a residual P-frame: where the prior acts ...
    assert streams["tp-plain"] != streams["whole"]  # ... and it does act
    # A base with a prior of its own: refused when writing, and when reading a file that claims it.
    with_prior = freeze(intra, "tp-prior", prior)
    save_frozen(with_prior, tmp_path / "tp-prior.lvcm")
    with pytest.raises(ValueError, match="P-frame prior"):
        extend(with_prior, "x", inter, space, temporal=prior, temporal_space=space)
    with pytest.raises(ValueError, match="latent space"):
        extend(base, "x", inter, space, temporal=prior, temporal_space="0" * 64)
    state = torch.load(io.BytesIO(ext.data), weights_only=True)
    for bad in ({**state, "base": {"name": "tp-prior", "sha256": with_prior.sha256, "file": "tp-prior.lvcm"}},
                {**state, "temporal": None}):
        buf = io.BytesIO()
        torch.save(bad, buf)
        (tmp_path / "bad.lvcm").write_bytes(buf.getvalue())
        with pytest.raises(ModelError):
            load_frozen(tmp_path / "bad.lvcm")
