"""Training: exact resume after a kill, DDP replicas in sync, both model families code bit-exactly."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from lvc.codec.cli import sample_clip
from lvc.codec.frame import FrameCodec
from lvc.models.frozen import freeze
from lvc.models.latent import LatentModel, ModelConfig
from lvc.train.trainer import TrainConfig, latest_checkpoint, train

TINY = ModelConfig(N=8, M=16, Nh=8, levels=3)


def _cfg(out, steps: int) -> TrainConfig:
    return TrainConfig(data=[str(sample_clip())], out=str(out), steps=steps, batch=2, crop=64, ckpt_every=2,
                       frames_per_video=2, threads=1, val_every=4)


def test_resume_continues_exactly(tmp_path):
    def cfg(out, steps):  # with real-encoder validation at step 2, which must not disturb the RNG stream
        c = _cfg(out, steps)
        c.val, c.val_every = [str(sample_clip())], 2
        return c

    straight = train(cfg(tmp_path / "a", 4), TINY, progress=False)
    train(cfg(tmp_path / "b", 2), TINY, progress=False)
    resumed = train(cfg(tmp_path / "b", 4), TINY, resume=True, progress=False)
    sa = torch.load(straight, weights_only=False)
    sb = torch.load(resumed, weights_only=False)
    assert sa["step"] == sb["step"] == 4
    for k, v in sa["model"].items():
        assert torch.equal(v, sb["model"][k]), k
    assert (tmp_path / "b" / "log.csv").exists() and (tmp_path / "b" / "progress.png").exists()


def test_resume_after_a_kill_logs_each_step_once(tmp_path):
    """A process killed after its last checkpoint has logged (and validated) steps the
    resumed run repeats: those rows go, and the time column counts on from the checkpoint."""
    cfg = _cfg(tmp_path, 2)
    cfg.val, cfg.val_every = [str(sample_clip())], 2
    last = train(cfg, TINY, progress=False)
    ckpt = torch.load(last, weights_only=False)
    ckpt["elapsed"] = 500.0  # as if step 2 had taken that long: the resumed rows count on from it
    torch.save(ckpt, last)
    log, val = tmp_path / "log.csv", tmp_path / "val.csv"
    with open(log, "a") as f:  # what the killed process wrote after ckpt-00000002.pt, the last cut short
        f.write("3,999.0,0.1,1,1,1,1,1\n4,999.5,0.1,1,1,1,1,1\n5,99")
    val.write_text("step,quality,bpp,psnr_rgb\n4,0.0,0.1,20.0\n")  # killed while validating step 2
    cfg.steps = 4
    train(cfg, TINY, resume=True, progress=False)
    rows = list(csv.DictReader(open(log)))
    steps, times = [int(r["step"]) for r in rows], [float(r["time"]) for r in rows]
    assert steps == [2, 4] and times[0] < 500 <= times[1] < 999
    assert [r["step"] for r in csv.DictReader(open(val))] == ["2"] * 3 + ["4"] * 3


def test_run_log_drops_a_line_cut_short_and_sets_an_old_run_aside(tmp_path):
    from lvc.train.runlog import RunLog

    log = tmp_path / "log.csv"
    # 960 was written by an older version with fewer columns: kept; "1020,..." cut short by a kill
    log.write_text("step,time,lr\n960,4.0\n980,5.0,0.1\n1000,6.0,0.1\n10")
    run = RunLog(log, ["step", "time", "lr"], 1000)  # a checkpoint that did not record its time
    run.write(1020, "0.1")
    run.close()
    rows = list(csv.reader(open(log)))
    assert [r[0] for r in rows] == ["step", "960", "980", "1000", "1020"] and float(rows[-1][1]) >= 6.0
    run = RunLog(log, ["step", "time", "lr", "new"], 1020)  # the old run's columns stay; rows padded
    run.write(1040)
    run.close()
    assert open(log).read().splitlines()[-1].startswith("1040,") and len(list(csv.reader(open(log)))[-1]) == 3
    RunLog(log, ["step", "time", "lr", "new"], 0).close()  # a fresh run into the same folder
    assert (tmp_path / "log.previous.csv").read_text().splitlines()[-1].startswith("1040,")
    assert log.read_text() == "step,time,lr,new\n"
    run = RunLog(log, ["step", "time"], 0)  # that run logs a step; a third one keeps both earlier logs
    run.write(20)
    run.close()
    RunLog(log, ["step", "time"], 0).close()
    assert (tmp_path / "log.previous.csv").exists() and (tmp_path / "log.previous-2.csv").exists()


def test_run_log_sets_an_unreadable_log_aside(tmp_path):
    from lvc.train.runlog import RunLog

    log = tmp_path / "log.csv"
    log.write_bytes(b"\xff\xfe\x00garbage\n")
    RunLog(log, ["step", "time"], 1000).close()
    assert log.read_text() == "step,time\n" and (tmp_path / "log.previous.csv").read_bytes().startswith(b"\xff")


def test_ms_ssim_distortion_trains(tmp_path):
    cfg = _cfg(tmp_path, 2)
    cfg.distortion = "ms-ssim"
    last = train(cfg, TINY, progress=False)
    assert torch.load(last, weights_only=False)["train_config"]["distortion"] == "ms-ssim"


def test_slim_checkpoint_resumes(tmp_path):
    from lvc.train.trainer import slim_checkpoint

    last = train(_cfg(tmp_path / "a", 2), TINY, progress=False)
    (tmp_path / "b").mkdir()
    slim_checkpoint(last, tmp_path / "b" / last.name)
    assert (tmp_path / "b" / last.name).stat().st_size < last.stat().st_size / 2
    resumed = train(_cfg(tmp_path / "b", 4), TINY, resume=True, progress=False)
    assert torch.load(resumed, weights_only=False)["step"] == 4


def test_frozen_analysis_keeps_the_latent_space(tmp_path, capsys):
    """--freeze-analysis trains the decoder side only, so the latent space (and every prior
    trained for it) survives; resuming a full run that way restarts Adam instead of failing."""
    from lvc.models.frozen import latent_space_id

    first = train(_cfg(tmp_path / "a", 2), TINY, progress=False)
    cfg = _cfg(tmp_path / "a", 4)
    cfg.freeze_analysis = True
    last = train(cfg, TINY, resume=True, progress=False)
    err = capsys.readouterr().err
    assert "restarting Adam" in err and "from step 2 it trains the decoder side only" in err
    before, after = (torch.load(p, weights_only=False)["model"] for p in (first, last))
    models = []
    for sd in (before, after):
        m = LatentModel(TINY)
        m.load_state_dict(sd)
        models.append(m)
    assert latent_space_id(models[0].g_a, models[0].log_gain) == latent_space_id(models[1].g_a, models[1].log_gain)
    assert not torch.equal(before["g_s.0.weight"], after["g_s.0.weight"])


def test_resume_says_when_no_checkpoint_is_named_to_resume(tmp_path, capsys):
    """A checkpoint copied in under another name is not resumed silently as a fresh run."""
    from lvc.train.trainer import resume_checkpoint

    last = train(_cfg(tmp_path / "a", 2), TINY, progress=False)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "saved-ckpt-2.pt").write_bytes(last.read_bytes())
    assert resume_checkpoint(tmp_path / "b", True) is None
    assert "saved-ckpt-2.pt" in capsys.readouterr().err
    (tmp_path / "b" / "saved-ckpt-2.pt").rename(tmp_path / "b" / last.name)
    assert resume_checkpoint(tmp_path / "b", True) == tmp_path / "b" / last.name
    assert resume_checkpoint(tmp_path / "b", False) is None


def test_checkpoint_describes_itself(tmp_path):
    last = train(_cfg(tmp_path, 2), TINY, progress=False)
    state = torch.load(last, weights_only=False)
    assert state["format"] == "lvc-checkpoint/1" and state["model_config"]["M"] == 16
    assert {"optimizer", "rng", "train_config", "code_version"} <= set(state)
    assert latest_checkpoint(tmp_path) == last


def test_validation_uses_real_encoder(tmp_path):
    cfg = _cfg(tmp_path, 4)
    cfg.val = [str(sample_clip())]
    train(cfg, TINY, progress=False)
    rows = (tmp_path / "val.csv").read_text().strip().splitlines()
    assert rows[0] == "step,quality,bpp,psnr_rgb" and len(rows) == 4
    assert all(float(r.split(",")[2]) > 0 for r in rows[1:])


@pytest.mark.parametrize("arch", ["hyperprior", "factorized"])
def test_both_families_code_bit_exactly(arch):
    torch.manual_seed(0)
    model = LatentModel(ModelConfig(arch=arch, N=8, M=16, Nh=8, levels=3))
    codec = FrameCodec(freeze(model, f"t-{arch}"))
    rng = np.random.default_rng(0)
    frame = (rng.random((40, 70, 3)) * 255).astype(np.uint8)
    for q in (0, 30000, 65535):
        r = codec.encode(frame, q)
        assert np.array_equal(codec.decode(r.payload, 40, 70, q)[0], r.recon)
        assert len(r.payload) * 8 >= r.estimated_bits


def test_ddp_two_processes_stay_in_sync(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "lvc.cli",
           "train", str(sample_clip()), "--out", str(tmp_path), "--steps", "3", "--batch", "2", "--crop", "64",
           "--N", "8", "--M", "16", "--Nh", "8", "--levels", "3", "--frames-per-video", "2", "--threads", "1",
           "--ckpt-every", "3"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    # the ranks' own messages, not the launcher's report of their exit
    own = [line for line in r.stderr.splitlines() if "torch/distributed/elastic" not in line]
    assert r.returncode == 0, "\n".join(own[:40])
    assert "replicas in sync across 2 processes" in r.stdout
    assert latest_checkpoint(tmp_path).name == "ckpt-00000003.pt"


def test_widened_model_starts_where_the_narrow_one_ended(tmp_path):
    """``--init`` into a wider synthesis and analysis preserves the function exactly, then
    trains, and the wider model codes bit-exactly through its own model file."""
    from dataclasses import replace

    from lvc.train.widen import widen_from

    narrow = train(_cfg(tmp_path / "a", 2), TINY, progress=False)
    state = torch.load(narrow, weights_only=False)["model"]
    wide_cfg = replace(TINY, synthesis_widths=(16, 12, 8), analysis_widths=(8, 12, 16))
    old, new = LatentModel(TINY), LatentModel(wide_cfg)
    old.load_state_dict(state)
    assert widen_from(new, state)
    x, q = torch.rand(1, 3, 64, 64), torch.tensor([0.5])
    old.eval(), new.eval()
    assert torch.equal(old(x, q)["x_hat"], new(x, q)["x_hat"])

    cfg = _cfg(tmp_path / "b", 2)
    cfg.init = str(narrow)
    wide = torch.load(train(cfg, wide_cfg, progress=False), weights_only=False)
    assert wide["model"]["g_s.2.weight"].shape[:2] == (16, 12) and wide["train_config"]["init"] == str(narrow)
    assert wide["model"]["g_a.4.weight"].shape[:2] == (16, 12)
    model = LatentModel(ModelConfig.from_dict(wide["model_config"]))
    model.load_state_dict(wide["model"])
    codec = FrameCodec(freeze(model, "wide-test"))
    frame = (np.random.default_rng(0).random((40, 70, 3)) * 255).astype(np.uint8)
    r = codec.encode(frame, 30000)
    assert np.array_equal(codec.decode(r.payload, 40, 70, 30000)[0], r.recon)

    with pytest.raises(ValueError, match="cannot widen"):
        widen_from(LatentModel(TINY), wide["model"])
    from lvc.errors import InputError

    cfg = _cfg(tmp_path / "c", 2)
    cfg.init = str(narrow)
    with pytest.raises(InputError, match="only widths may change, not levels"):
        train(cfg, replace(TINY, levels=4), progress=False)


def test_more_latent_channels_keep_the_old_ones_exact():
    """Widening M: reconstructions and the old channels' means and scales are unchanged
    (the [mean, log-scale] output of the hyper-synthesis is widened block by block)."""
    from dataclasses import replace

    from lvc.train.widen import widen_from

    torch.manual_seed(0)
    old = LatentModel(TINY).eval()
    new = LatentModel(replace(TINY, M=24)).eval()
    widen_from(new, old.state_dict())
    x, q = torch.rand(1, 3, 64, 64), torch.tensor([0.7])
    assert torch.equal(old(x, q)["x_hat"], new(x, q)["x_hat"])
    y_old = old.g_a(x) * torch.exp(old.interp(old.log_gain, q))[:, :, None, None]
    y_new = new.g_a(x) * torch.exp(new.interp(new.log_gain, q))[:, :, None, None]
    assert torch.equal(y_old, y_new[:, :16])
    for a, b in zip(old.entropy_params(y_old, q, False)[:2], new.entropy_params(y_new, q, False)[:2]):
        assert torch.equal(a, b[:, :16])


def test_joint_context_starts_from_a_plain_model_and_exports_as_its_context_prior(tmp_path, capsys):
    """``--init`` adds a checkerboard context network that changes nothing at first, trains
    it with the transforms, and ``lvc export`` writes it as the model's context prior."""
    from dataclasses import replace

    from lvc.cli import main
    from lvc.models.registry import load_model
    from lvc.train.widen import widen_from

    plain = train(_cfg(tmp_path / "a", 2), TINY, progress=False)
    joint_cfg = replace(TINY, context=8)
    old, new = LatentModel(TINY), LatentModel(joint_cfg)
    old.load_state_dict(torch.load(plain, weights_only=False)["model"])
    widen_from(new, old.state_dict())
    old.eval(), new.eval()
    x, q = torch.rand(2, 3, 64, 64), torch.tensor([0.2, 0.9])
    a, b = old(x, q), new(x, q)
    assert torch.equal(a["x_hat"], b["x_hat"]) and torch.equal(a["bpp"], b["bpp"])

    cfg = _cfg(tmp_path / "b", 2)
    cfg.init = str(plain)
    joint = train(cfg, joint_cfg, progress=False)
    state = torch.load(joint, weights_only=False)
    assert state["model_config"]["context"] == 8 and state["model"]["context.fuse.4.weight"].abs().sum() > 0

    out = tmp_path / "joint.lvcm"
    assert main(["export", str(joint), "--name", "joint", "-o", str(out)]) == 0
    fm = load_model(str(out))
    assert fm.context is not None and fm.config.context == 0  # stored like any model with a context prior
    codec = FrameCodec(fm)
    frame = (np.random.default_rng(1).random((40, 70, 3)) * 255).astype(np.uint8)
    for quality in (0, 65535):
        r = codec.encode(frame, quality)
        assert np.array_equal(codec.decode(r.payload, 40, 70, quality)[0], r.recon)
        assert len(r.payload) * 8 >= r.estimated_bits

    bad = tmp_path / "bad.lvcm"
    assert main(["export", str(joint), "--name", "j", "-o", str(bad), "--context", str(plain)]) != 0
    assert "not a context one" in capsys.readouterr().err and not bad.exists()
    with pytest.raises(ValueError, match="needs arch 'hyperprior'"):
        ModelConfig(arch="factorized", context=8)
    with pytest.raises(ValueError, match="context network would be dropped"):
        widen_from(LatentModel(TINY), state["model"])
    with pytest.raises(ValueError, match="cannot be widened"):
        widen_from(LatentModel(replace(joint_cfg, M=24)), state["model"])


def test_source_sampling_gives_each_file_the_same_share(tmp_path):
    """A photo and a clip of many large frames are drawn equally often with --sample-by source."""
    from PIL import Image

    from lvc.train.data import CropSampler, FrameCache, collect_sources, frame_weights

    Image.fromarray(np.full((70, 90, 3), 128, np.uint8)).save(tmp_path / "photo.png")
    sources = collect_sources([tmp_path / "photo.png", sample_clip()])
    cache = FrameCache.build(sources, tmp_path / "cache", crop=64, frames_per_video=4)
    assert set(cache.index[:, 3]) == {0, 1} and (cache.index[:, 3] == 1).sum() >= 2
    by_source = frame_weights(cache.index, 64, "source")
    by_area = frame_weights(cache.index, 64, "area")
    photo = cache.index[:, 3] == 0
    assert by_source[photo].sum() == pytest.approx(0.5)
    assert by_area[photo].sum() < 0.1  # what area weighting did to small photos
    clip = ~photo  # within a source, frames still go by their area
    area = (cache.index[clip, 1] - 63) * (cache.index[clip, 2] - 63)
    assert np.allclose(by_source[clip] / by_source[clip].sum(), area / area.sum())
    assert CropSampler(cache, 64, seed=0).batch(3).shape == (3, 3, 64, 64)
    with pytest.raises(ValueError):
        frame_weights(cache.index, 64, "pixels")
