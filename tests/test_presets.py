"""Presets trade encoder effort only; rate control lands on the requested bitrate."""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest

from lvc.codec import api
from lvc.codec.cli import sample_clip
from lvc.codec.ratecontrol import search_quality
from lvc.codec.sequence import PRESETS, SequenceEncoder
from lvc.io.reader import open_video
from lvc.io.writer import FrameWriter
from lvc.models.frozen import QUALITY_MAX
from lvc.models.registry import load_model


@pytest.fixture(scope="module")
def twelve(tmp_path_factory):
    """12 real frames (96x64 crops of the sample clip) and the frames the encoder sees."""
    with open_video(sample_clip()) as v:
        frames = [np.ascontiguousarray(f[100:164, 300:396]) for _, f in zip(range(12), v.frames())]
    path = tmp_path_factory.mktemp("presets") / "twelve.y4m"
    w = FrameWriter(path, 96, 64, Fraction(25))
    for f in frames:
        w.write(f)
    w.commit()
    with open_video(path) as v:
        return path, list(v.frames())


@pytest.mark.parametrize("preset,refine", [("fast", None), ("medium", None), ("slow", 2)])
def test_every_preset_decodes_to_the_encoders_reconstruction(tmp_path, twelve, preset, refine):
    src, frames = twelve
    out = tmp_path / "a.lvc"
    api.encode(src, out, quality=0.5, intra_period=-1, preset=preset, refine=refine, max_frames=6, progress=False,
               colour="rgb")
    enc = SequenceEncoder(load_model(), round(0.5 * QUALITY_MAX), -1, refine, preset)
    expected = [enc.encode(f).recon for f in frames[:6]]
    decoded = list(api.iter_decode(out))
    assert len(decoded) == 6 and all(np.array_equal(a, b) for a, b in zip(decoded, expected))


def test_one_frame_video(tmp_path, twelve):
    src, frames = twelve
    out = tmp_path / "one.lvc"
    res = api.encode(src, out, max_frames=1, progress=False)
    assert res.frames == 1 and api.info(out)["frame_count"] == 1
    (decoded,) = list(api.iter_decode(out))
    from lvc.models.registry import default_model

    assert api.info(out)["model"] == default_model(still=True)  # a single frame takes the image model
    steps = PRESETS["medium"].still_steps(frames[0].shape[0] * frames[0].shape[1])
    enc = SequenceEncoder(load_model(default_model(still=True)), round(0.5 * QUALITY_MAX), 32, steps, residual=0.0)
    assert np.array_equal(decoded, enc.encode(frames[0]).recon)


def test_still_refinement_budget_bounds_large_images():
    """medium refines a still image fully up to its pixel budget, then the same total work, then none."""
    medium, slow = PRESETS["medium"], PRESETS["slow"]
    assert medium.refine_steps == 0 < medium.still_refine_steps  # video frames are not refined at medium
    assert medium.still_steps(481 * 321) == medium.still_steps(1 << 20) == medium.still_refine_steps
    assert medium.still_steps(2 << 20) == medium.still_refine_steps // 2
    assert medium.still_steps(12_000_000) == 0 and slow.still_steps(12_000_000) == slow.still_refine_steps
    assert PRESETS["fast"].still_steps(1000) == 0


def test_one_frame_y4m_is_a_still_image(tmp_path, twelve):
    """y4m does not state its length: a one-frame file is still coded as an image."""
    from lvc.models.registry import default_model

    _, frames = twelve
    src = tmp_path / "one.y4m"
    w = FrameWriter(src, 96, 64, Fraction(25))
    w.write(frames[0])
    w.commit()
    with open_video(src) as v:
        assert v.info.frame_count is None  # what makes the look necessary
    api.encode(src, tmp_path / "one.lvc", progress=False, metrics=False, refine=0)
    assert api.info(tmp_path / "one.lvc")["model"] == default_model(still=True)


def test_bitrate_lands_within_5_percent(tmp_path, twelve):
    src, _ = twelve
    probe = api.encode(src, tmp_path / "p.lvc", quality=0.37, progress=False, metrics=False)
    target = probe.kbps * 1.1  # reachable, and not a quality the search starts from
    res = api.encode(src, tmp_path / "r.lvc", bitrate=target, progress=False, metrics=False)
    actual = (tmp_path / "r.lvc").stat().st_size * 8 * res.fps / res.frames / 1000
    assert abs(actual / target - 1) < 0.05, (actual, target, res.quality)
    assert 1 <= res.rate_passes <= 7


def test_bitrate_writes_the_chosen_probe_instead_of_coding_it_again(tmp_path, twelve, monkeypatch):
    """The probe rate control picks is written as coded: no extra pass, the same bytes and
    scores as a plain encode at that quality."""
    src, _ = twelve
    probe = api.encode(src, tmp_path / "p.lvc", quality=0.6, max_frames=4, progress=False, metrics=False)
    passes = []
    real = api.SequenceEncoder
    monkeypatch.setattr(api, "SequenceEncoder", lambda *a, **k: passes.append(a[1]) or real(*a, **k))
    res = api.encode(src, tmp_path / "r.lvc", bitrate=probe.kbps * 0.9, max_frames=4, progress=False)
    assert len(passes) == res.rate_passes and round(res.quality * QUALITY_MAX) in passes
    monkeypatch.undo()
    plain = api.encode(src, tmp_path / "q.lvc", quality=res.quality, max_frames=4, progress=False)
    assert (tmp_path / "r.lvc").read_bytes() == (tmp_path / "q.lvc").read_bytes()
    assert res.metrics == plain.metrics and res.frames == plain.frames == 4
    assert res.estimated_bits == plain.estimated_bits
    # A probe too large to keep (or `reuse_probe=False`, as `lvc roundtrip` asks) is coded again.
    for kw in ({}, {"reuse_probe": False}):
        passes.clear()
        monkeypatch.setattr(api, "SequenceEncoder", lambda *a, **k: passes.append(a[1]) or real(*a, **k))
        if not kw:
            monkeypatch.setattr(api, "KEEP_PROBE_BYTES", 100)
        again = api.encode(src, tmp_path / "s.lvc", bitrate=probe.kbps * 0.9, max_frames=4, progress=False, **kw)
        monkeypatch.undo()
        assert len(passes) == again.rate_passes + 1 and again.metrics == plain.metrics
        assert (tmp_path / "s.lvc").read_bytes() == (tmp_path / "q.lvc").read_bytes()


def test_unreachable_bitrate_warns_and_uses_the_nearest_quality(tmp_path, twelve):
    src, _ = twelve
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        res = api.encode(src, tmp_path / "r.lvc", bitrate=0.5, max_frames=3, progress=False, metrics=False)
    assert res.quality == 0.0 and any("outside this model's range" in str(x.message) for x in w)


def test_rate_search_converges_on_a_monotone_rate_curve():
    calls = []

    def measure(q: int) -> float:  # a made-up model: log-rate linear with a kink
        calls.append(q)
        x = q / QUALITY_MAX
        return 1e5 * math.exp(2.3 * x + (0.6 * (x - 0.5) if x > 0.5 else 0.0))

    for target in (1.3e5, 4e5, 9e5):
        calls.clear()
        r = search_quality(measure, target)
        assert r.reachable and abs(r.bits / target - 1) <= 0.02 and len(calls) <= 6


def test_unknown_preset_is_refused(tmp_path, twelve):
    from lvc.errors import InputError

    with pytest.raises(InputError, match="preset"):
        api.encode(twelve[0], tmp_path / "x.lvc", preset="ultra", progress=False)
    assert not (tmp_path / "x.lvc").exists()


def test_p_frame_dead_zone_only_rounds_toward_the_prediction():
    """The dead zone may only move a symbol one step toward zero, and only near a rounding
    boundary; without it quantisation is plain rounding."""
    import torch

    from lvc.codec.frame import quantise

    r = torch.linspace(-4, 4, 8001)
    plain, dz = quantise(r), quantise(r, 0.15)
    assert torch.equal(plain, torch.round(r))
    assert torch.all(dz.abs() <= plain.abs()) and torch.all((plain - dz).abs() <= 1)
    far = (r.abs() - r.abs().floor() - 0.5).abs() > 0.15  # fractions outside [0.35, 0.65]
    assert torch.equal(dz[far], plain[far])
    assert torch.any(dz != plain)


def test_slow_preset_does_not_use_the_dead_zone():
    """Refinement chooses the symbols itself; a dead zone after it would undo its search."""
    from conftest import DATA

    model = load_model(str(DATA / "tiny.lvcm"))
    assert SequenceEncoder(model, 30000, 4, preset="slow").codec.p_deadzone == 0
    assert SequenceEncoder(model, 30000, 4, preset="medium").codec.p_deadzone > 0
