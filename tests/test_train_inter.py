"""Training of the conditional P model (``lvc train-inter``): exact resume, logs, warm start."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from conftest import write_y4m
from PIL import Image

from lvc.errors import InputError
from lvc.models.conditional import ConditionalConfig
from lvc.models.registry import load_model
from lvc.train import sequences
from lvc.train.data import collect_sources
from lvc.train.inter import InterTrainConfig, train_inter


@pytest.fixture
def five(twelve, tmp_path):
    """A five-frame clip to train on."""
    src = tmp_path / "five.y4m"
    write_y4m(src, twelve[:5])
    return src


def tiny_shape(intra, **kw) -> ConditionalConfig:
    """A tiny conditional model reading ``intra``'s latent."""
    return ConditionalConfig(M=8, C=8, N=8, Nh=8, intra_M=intra.config.M, levels=intra.log_gain.shape[0], **kw)


def test_train_inter_resumes_exactly(tiny_model, five, tmp_path):
    intra = load_model(tiny_model)

    def cfg(out, steps):
        return InterTrainConfig([str(five)], str(out), steps=steps, batch=2, crop=64, length=3, per_clip=3,
                                ckpt_every=2, keep=5, threads=1)

    model_cfg = tiny_shape(intra)
    straight = train_inter(cfg(tmp_path / "a", 4), intra, model_cfg, progress=False)
    train_inter(cfg(tmp_path / "b", 2), intra, model_cfg, progress=False)
    resumed = train_inter(cfg(tmp_path / "b", 4), intra, resume=True, progress=False)
    a = torch.load(straight, weights_only=False)
    b = torch.load(resumed, weights_only=False)
    assert a["step"] == b["step"] == 4 and a["kind"] == "inter"
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_train_inter_logs_intra_display_and_keeps_old_logs(tiny_model, five, tmp_path):
    """New runs log the I-frame context's display PSNR; a run resumed into a log written
    before that column existed keeps the log's own columns."""
    intra = load_model(tiny_model)
    model_cfg = tiny_shape(intra)
    for name, old in (("new", False), ("old", True)):
        out = tmp_path / name
        out.mkdir()
        if old:
            (out / "log.csv").write_text("step,time,lr,loss,bpp,psnr,aux\n")
        cfg = InterTrainConfig([str(five)], str(out), steps=20, batch=1, crop=64, length=2, per_clip=2,
                               ckpt_every=20, threads=1)
        train_inter(cfg, intra, model_cfg, progress=False)
        rows = list(csv.reader(open(out / "log.csv")))
        assert len(rows) == 2 and all(len(r) == len(rows[0]) for r in rows)
        assert (rows[0][-1] == "psnr_i") != old and 0 < float(rows[1][5]) < 100


def test_train_inter_init_takes_another_intra_models_p_machinery(tiny_model, five, tmp_path):
    """``--init`` from a run trained for another intra model (here a different latent width)
    keeps every tensor that fits, in the checkpoint's shape, and fits only the intra latent's
    input anew; a checkpoint of another kind is refused with a clear error."""
    from lvc.models.frozen import freeze, load_frozen, save_frozen
    from lvc.models.latent import LatentModel, ModelConfig

    intra = load_model(tiny_model)
    shape = tiny_shape(intra, block=8)
    first = train_inter(InterTrainConfig([str(five)], str(tmp_path / "a"), steps=2, batch=1, crop=64, length=2,
                                         per_clip=2, threads=1), intra, shape, progress=False)
    torch.manual_seed(0)
    other = LatentModel(ModelConfig(N=8, M=intra.config.M + 4, Nh=8, levels=intra.log_gain.shape[0]))
    save_frozen(freeze(other, "wider"), tmp_path / "wider.lvcm")
    wider = load_frozen(tmp_path / "wider.lvcm")
    cfg = InterTrainConfig([str(five)], str(tmp_path / "b"), steps=1, batch=1, crop=64, length=2, per_clip=2,
                           threads=1, lr=0.0, aux_lr=0.0, distil_steps=3, init=str(first))
    second = train_inter(cfg, wider, progress=False)  # no shape given: the checkpoint's
    a, b = (torch.load(p, weights_only=False) for p in (first, second))
    assert b["inter_config"] == {**a["inter_config"], "intra_M": intra.config.M + 4}
    assert b["train_config"]["init"] == str(first)
    kept = {k for k in b["model"] if not k.startswith("g_i")}
    assert kept and all(torch.equal(a["model"][k], b["model"][k]) for k in kept)  # lr 0: as loaded
    assert b["model"]["g_i_up.0.weight"].shape[1] == intra.config.M + 4
    assert not torch.equal(a["model"]["g_i.0.weight"], b["model"]["g_i.0.weight"])  # fitted anew
    with pytest.raises(InputError, match="not an inter one"):
        train_inter(InterTrainConfig([str(five)], str(tmp_path / "c"), steps=1, init=str(tiny_model)), wider,
                    progress=False)



def test_photo_pans_move_the_crop_window_along_a_line():
    """A pan at an integer velocity is exact shifted crops of the photo, and the encoder's
    motion search finds the pan as the block vectors."""
    rng = np.random.default_rng(3)
    photo = rng.integers(0, 256, (160, 200, 3), dtype=np.uint8)  # texture: one clear match per block

    class Fixed:  # velocity (3, -2) px/frame, no downscale, the window at (10, 20)
        def __init__(self):
            self.values = [np.array([3.0, -2.0]), 1.0, 10.0, 20.0 - 4.0]

        def uniform(self, *args):
            return self.values.pop(0)

    seq = sequences.pan(photo, 64, 3, Fixed())
    assert seq.shape == (3, 64, 64, 3)
    for t in range(3):
        y, x = 20 - 2 * t, 10 + 3 * t
        assert np.array_equal(seq[t], photo[y:y + 64, x:x + 64])
    mv = sequences._with_motion(iter([seq]), 16, 1, ValueError())[1][0]
    assert (mv[..., 0] == 3).mean() > 0.8 and (mv[..., 1] == -2).mean() > 0.8
    assert sequences.pan(photo, 200, 3, np.random.default_rng(0)) is None  # too small for the window


def test_train_inter_takes_photo_pans_beside_clips(tiny_model, five, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (120, 140, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    sources = collect_sources([str(five), str(photos)])
    clips_only = sequences.SequenceCache.build(sources, tmp_path / "c1", 64, 3, 2, 16)
    both = sequences.SequenceCache.build(sources, tmp_path / "c2", 64, 3, 2, 16, per_photo=3)
    assert len(clips_only) == 2 and len(both) == 2 + 2 * 3
    assert np.array_equal(both.frames[:2], clips_only.frames[:2])  # the clips' sequences are unchanged
    intra = load_model(tiny_model)
    cfg = InterTrainConfig([str(five), str(photos)], str(tmp_path / "run"), steps=2, batch=2, crop=64, length=3,
                           per_clip=2, per_photo=3, ckpt_every=2, threads=1)
    assert train_inter(cfg, intra, tiny_shape(intra), progress=False).exists()


def test_yuv_mse_weighs_what_psnr_yuv_scores():
    """An error equal in R, G and B costs its RGB MSE; of an error whose chroma 2x2 averaging
    cancels, only the luma part costs; and the value matches PSNR-YUV's own planes (lvc.metrics)."""
    from lvc.metrics import RGB2YUV, rgb_to_yuv420
    from lvc.train.trainer import yuv_mse

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 48, generator=g) * 0.8 + 0.1
    grey = torch.full((2, 1, 32, 48), 0.02)
    assert torch.allclose(yuv_mse(x + grey, x), torch.full((2,), 0.02**2))
    checker = (torch.arange(32)[:, None] + torch.arange(48)[None]) % 2 * 2 - 1  # +-1, cancels per 2x2
    blue = torch.zeros_like(x)
    blue[:, 2] = 0.02 * checker  # mostly chroma; its luma part remains
    only_luma = torch.einsum("c,bchw->bhw", torch.tensor([0.0, 0.0, 1.0]), blue)
    ksum = float(RGB2YUV[0].sum())
    ky = float(RGB2YUV[0, 2]) / ksum  # blue's share of luma
    assert torch.allclose(yuv_mse(x + blue, x), (ky * only_luma).square().flatten(1).mean(1), rtol=1e-4)
    # on 8-bit frames, the metric's own planes (lvc.metrics.rgb_to_yuv420) give the same number
    a, b = (np.rint(t[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
            for t in (x, (x + 0.05 * torch.rand(x.shape, generator=g)).clamp(0, 1)))
    mse = [float(np.mean((p - q) ** 2)) for p, q in zip(rgb_to_yuv420(a), rgb_to_yuv420(b))]
    ours = float(yuv_mse(*(torch.from_numpy(f).permute(2, 0, 1)[None] / 255.0 for f in (b, a)))[0]) * 255**2
    assert ours == pytest.approx((6 * mse[0] + mse[1] + mse[2]) / (6 * ksum**2), rel=1e-4)


def test_train_inter_trains_on_yuv_mse_and_refuses_unknown_distortions(tiny_model, five, tmp_path):
    intra = load_model(tiny_model)

    def cfg(out, distortion):
        return InterTrainConfig([str(five)], str(out), steps=2, batch=1, crop=64, length=2, per_clip=2,
                                ckpt_every=2, threads=1, distortion=distortion)

    last = train_inter(cfg(tmp_path / "yuv", "yuv-mse"), intra, tiny_shape(intra), progress=False)
    assert torch.load(last, weights_only=False)["step"] == 2
    with pytest.raises(InputError, match="distortion"):
        train_inter(cfg(tmp_path / "bad", "ssim"), intra, tiny_shape(intra), progress=False)
