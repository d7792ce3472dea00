"""The spatial context (checkerboard) prior: exact two-pass decoding, model files, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import write_y4m

from lvc.codec import api
from lvc.codec.cli import sample_clip
from lvc.codec.frame import FrameCodec
from lvc.errors import InputError, ModelError
from lvc.io.reader import open_video
from lvc.models.context import SpatialContext, anchor_mask
from lvc.models.correction import CorrectionConfig
from lvc.models.frozen import FILE_FORMAT_CONTEXT, freeze, save_frozen
from lvc.models.latent import LatentModel, ModelConfig
from lvc.models.registry import load_model
from lvc.models.temporal import TemporalPrior
from lvc.train.cli import _load_correction
from lvc.train.context import ContextTrainConfig, train_context
from lvc.train.correction import intra_identity
from lvc.train.temporal import TemporalTrainConfig, train_temporal

SMALL = CorrectionConfig(M=16, C=8)


def _tiny_with_context(std: float = 0.3, temporal: bool = False):
    """A tiny model whose random context prior moves means and scales noticeably."""
    torch.manual_seed(0)
    model = LatentModel(ModelConfig(N=8, M=16, Nh=8, levels=3))
    with torch.no_grad():  # an untrained analysis gives near-zero latents; make them matter
        model.log_gain.add_(2.0)
        model.log_inv_gain.sub_(2.0)
    ctx = SpatialContext(SMALL)
    torch.nn.init.normal_(ctx.fuse[-1].weight, std=std)
    prior = TemporalPrior(SMALL) if temporal else None
    return freeze(model, "t", prior, ctx), freeze(model, "t", prior)


@pytest.fixture(scope="module")
def frames(clip):
    with open_video(clip) as v:
        return [f for _, f in zip(range(4), v.frames())]


def test_anchor_mask_is_half_a_checkerboard():
    m = anchor_mask(4, 5)[0, 0]
    assert int(m.sum()) == 10 and bool(m[0, 0]) and not bool(m[0, 1]) and bool(m[1, 1])


def test_context_i_frames_decode_bit_exactly(frames):
    fm, plain = _tiny_with_context()
    q = round(0.7 * 65535)
    changed = False
    for f in frames:
        r = FrameCodec(fm).encode(f, q)
        pixels, latent = FrameCodec(fm).decode(r.payload, f.shape[0], f.shape[1], q)
        assert np.array_equal(pixels, r.recon) and torch.equal(latent, r.latent)
        assert len(r.payload) * 8 >= r.estimated_bits * 0.99
        changed |= FrameCodec(plain).encode(f, q).payload != r.payload
    assert changed  # the context really changed the coding


def test_model_file_keeps_the_context_prior(tmp_path, frames, clip):
    fm, plain = _tiny_with_context(temporal=True)
    path = tmp_path / "c.lvcm"
    save_frozen(fm, path)
    again = load_model(str(path))
    assert again.context is not None and again.temporal is not None and again.sha256 == fm.sha256
    assert torch.load(path, weights_only=True)["format"] == FILE_FORMAT_CONTEXT
    assert again.context.latent_space == intra_identity(plain)
    out = tmp_path / "a.lvc"
    api.encode(clip, out, quality=0.5, model=str(path), intra_period=2, progress=False)
    decoded = list(api.iter_decode(out, model=str(path)))
    assert len(decoded) == len(api.info(out)["frames"]) and decoded[0].shape == frames[0].shape


def test_untrained_context_changes_nothing():
    net = SpatialContext(SMALL)
    mu, s, cond = torch.randn(3, 2, 16, 4, 4)
    mean, log_scale = net.corrected(mu, s, cond)
    assert torch.equal(mean, mu) and torch.equal(log_scale, s)


def test_train_ctx_resumes_exactly(tiny_model, tmp_path):
    intra = load_model(tiny_model)
    with open_video(sample_clip()) as v:
        src = tmp_path / "three.y4m"
        write_y4m(src, [np.ascontiguousarray(f[100:164, 300:428]) for _, f in zip(range(3), v.frames())])

    def cfg(out, steps):
        return ContextTrainConfig([str(src)], str(out), steps=steps, batch=2, crop=64, crops=6, ckpt_every=2,
                                  keep=5)

    straight = train_context(cfg(tmp_path / "a", 4), intra, progress=False)
    train_context(cfg(tmp_path / "b", 2), intra, progress=False)
    resumed = train_context(cfg(tmp_path / "b", 4), intra, resume=True, progress=False)
    a = torch.load(straight, weights_only=False)
    b = torch.load(resumed, weights_only=False)
    assert a["step"] == b["step"] == 4 and a["kind"] == "context" and a["latent_space"] == intra_identity(intra)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    # the P and context priors share one network shape: only the recorded kind tells them apart
    with pytest.raises(ModelError, match="context prior checkpoint"):
        _load_correction(str(straight), "temporal", TemporalPrior, "lvc train-p")
    with pytest.raises(InputError, match="context prior run"):
        train_temporal(TemporalTrainConfig([str(src)], str(tmp_path / "a"), steps=6, batch=2, crop=64,
                                           pairs_per_clip=2), intra, resume=True, progress=False)
