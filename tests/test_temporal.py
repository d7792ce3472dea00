"""The temporal (P-frame) prior: integer-exact decoding, model files, resumable training."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from lvc.codec import api
from lvc.codec.cli import sample_clip
from lvc.codec.frame import FrameCodec
from lvc.codec.sequence import SequenceEncoder
from lvc.io.reader import open_video
from lvc.io.writer import FrameWriter
from lvc.models.frozen import freeze, save_frozen
from lvc.models.latent import LatentModel, ModelConfig
from lvc.models.registry import load_model
from lvc.models.temporal import TemporalConfig, TemporalPrior
from lvc.train.temporal import TemporalTrainConfig, intra_identity, train_temporal

SMALL = TemporalConfig(M=16, C=8)


def _tiny_with_prior(std: float = 0.05):
    """A tiny intra model with a random (untrained, non-trivial) temporal prior."""
    torch.manual_seed(0)
    model = LatentModel(ModelConfig(N=8, M=16, Nh=8, levels=3))
    prior = TemporalPrior(SMALL)
    torch.nn.init.normal_(prior.fuse[-1].weight, std=std)  # exercise the corrections
    return freeze(model, "t", prior), freeze(model, "t")


@pytest.fixture(scope="module")
def frames(clip):
    with open_video(clip) as v:
        return list(v.frames())


def test_temporal_p_frames_decode_bit_exactly(frames):
    fm, _ = _tiny_with_prior()
    codec = FrameCodec(fm)
    q = round(0.6 * 65535)
    ref = codec.encode(frames[0], q).latent
    for f in frames[1:]:
        r = codec.encode(f, q, reference=ref)
        pixels, latent = FrameCodec(fm).decode(r.payload, 48, 64, q, reference=ref)
        assert np.array_equal(pixels, r.recon)
        assert torch.equal(latent, r.latent)
        assert len(r.payload) * 8 >= r.estimated_bits * 0.99
        ref = r.latent


def test_model_file_keeps_the_temporal_prior(tmp_path, frames, clip):
    fm, intra = _tiny_with_prior(std=0.002)  # mild: P must still beat I on this untrained model
    path = tmp_path / "p.lvcm"
    save_frozen(fm, path)
    again = load_model(str(path))
    assert again.temporal is not None and again.sha256 == fm.sha256
    assert again.temporal.latent_space == intra_identity(intra) == intra_identity(again)
    assert intra.sha256 != again.sha256
    out = tmp_path / "a.lvc"
    api.encode(clip, out, quality=0.5, model=str(path), intra_period=-1, progress=False, colour="rgb")
    types = "".join(u["type"] for u in api.info(out)["frames"])
    assert "P" in types
    enc = SequenceEncoder(again, round(0.5 * 65535), -1)
    expected = [enc.encode(f).recon for f in frames]
    assert all(np.array_equal(a, b) for a, b in zip(api.iter_decode(out, model=str(path)), expected))


def test_temporal_prior_starts_as_residual_coding():
    prior = TemporalPrior(SMALL)
    ref, mu, s = torch.randn(3, 2, 16, 4, 4)
    mean, log_scale = prior.params(mu, s, ref)
    assert torch.equal(mean, ref + mu) and torch.equal(log_scale, s)


def test_train_p_resumes_exactly(tiny_model, tmp_path):
    intra = load_model(tiny_model)
    with open_video(sample_clip()) as v:
        frames = [np.ascontiguousarray(f[100:164, 300:428]) for _, f in zip(range(5), v.frames())]
    src = tmp_path / "five.y4m"
    w = FrameWriter(src, 128, 64, Fraction(25))
    for f in frames:
        w.write(f)
    w.commit()

    def cfg(out, steps):
        return TemporalTrainConfig([str(src)], str(out), steps=steps, batch=2, crop=64, pairs_per_clip=6,
                                   ckpt_every=2, keep=5)

    straight = train_temporal(cfg(tmp_path / "a", 4), intra, progress=False)
    train_temporal(cfg(tmp_path / "b", 2), intra, progress=False)
    resumed = train_temporal(cfg(tmp_path / "b", 4), intra, resume=True, progress=False)
    a = torch.load(straight, weights_only=False)
    b = torch.load(resumed, weights_only=False)
    assert a["step"] == b["step"] == 4 and a["latent_space"] == intra_identity(intra)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
