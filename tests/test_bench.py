"""lvc bench: one results schema, BD-rate rows, resumable cache, a report that renders in Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import replace

import numpy as np
import pytest
from conftest import run_lvc

from lvc.bench.bdrate import bd_rate, bd_table, bootstrap_interval


def test_bd_rate_of_a_shifted_curve():
    anchor = [{"bpp": b, "psnr_rgb": 30 + 5 * i} for i, b in enumerate([0.1, 0.2, 0.4, 0.8])]
    test = [{"bpp": r["bpp"] * 0.8, "psnr_rgb": r["psnr_rgb"]} for r in anchor]
    assert bd_rate(anchor, test, "psnr_rgb") == pytest.approx(-20.0, abs=0.01)
    far = [{"bpp": r["bpp"], "psnr_rgb": r["psnr_rgb"] + 40} for r in anchor]
    assert bd_rate(anchor, far, "psnr_rgb") is None  # no overlap: no number, not an extrapolation


def test_per_sequence_mean_is_reported_beside_the_average_curve():
    """Two clips at very different rates: test saves 50% on the cheap clip, nothing on the
    expensive one. The per-sequence mean says -25%; the average curve is led by the big clip."""
    rows = []
    for seq, scale, saving in (("cheap", 0.05, 0.5), ("big", 2.0, 0.0)):
        for i, q in enumerate((30.0, 33.0, 36.0, 39.0)):
            rate = scale * 1.6 ** i
            rows.append({"sequence": seq, "codec": "anchor", "param": i, "bpp": rate, "psnr_rgb": q})
            rows.append({"sequence": seq, "codec": "test", "param": i, "bpp": rate * (1 - saving), "psnr_rgb": q})
    table = {(r["sequence"], r["metric"]): r["percent"] for r in bd_table(rows, [("test", "anchor")])}
    assert table[("cheap", "psnr_rgb")] == pytest.approx(-50, abs=0.5)
    assert table[("big", "psnr_rgb")] == pytest.approx(0, abs=0.5)
    assert table[("MEAN", "psnr_rgb")] == pytest.approx(-25, abs=0.5)
    assert -5 < table[("AVERAGE", "psnr_rgb")] < 0


def test_bench_video_against_x264_and_report_renders(tmp_path, clip, tiny_model):
    assert shutil.which("ffmpeg"), "the ffmpeg CLI is needed for the anchors (scripts/run test installs it)"
    out = tmp_path / "bench"
    r = run_lvc("bench", clip, "--out", out, "--codecs", "lvc,x264", "--frames", "3", "--model", tiny_model,
                "--no-ms-ssim")
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "results.json").read_text())
    assert doc["schema"] == "lvc-bench/1"
    names = {c["name"] for c in doc["codecs"]}
    assert names == {"lvc", "x264"}
    for c in doc["codecs"]:
        assert c["version"] and c["command"] and len(c["points"]) >= 5
        for p in c["points"]:
            assert p["bytes"] > 0 and p["psnr_yuv"] > 0 and p["encode_fps"] > 0
    for row in doc["bd_rate"]:
        assert set(row) == {"sequence", "test", "anchor", "metric", "percent"}
    assert (out / "results.csv").read_text().startswith("sequence,codec,param")
    cached = sorted(p.name for p in (out / "cache").iterdir())
    r2 = run_lvc("bench", clip, "--out", out, "--codecs", "lvc,x264", "--frames", "3", "--model", tiny_model,
                 "--no-ms-ssim")
    assert r2.returncode == 0 and sorted(p.name for p in (out / "cache").iterdir()) == cached
    assert json.loads((out / "results.json").read_text())["codecs"] == doc["codecs"]
    _assert_renders(out / "report.html", tmp_path)


def _assert_renders(report, tmp_path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is needed for this test (scripts/run test installs it)"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=5000", "--dump-dom",
           report.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    title = dom.split("<title>")[1].split("</title>")[0]
    assert title.startswith("rendered:") and int(title.split(":")[1]) >= 5, title  # 3 plots + 3 crops


def test_missing_encoder_is_reported_and_skipped(tmp_path, clip, tiny_model):
    env = {"PATH": os.path.dirname(shutil.which("python") or "/usr/bin/python")}
    r = run_lvc("bench", clip, "--out", tmp_path / "b", "--codecs", "lvc,x265", "--frames", "2", "--model",
                tiny_model, "--no-ms-ssim", env=env)
    assert r.returncode == 0, r.stderr
    assert "x265 is not available" in r.stderr
    doc = json.loads((tmp_path / "b" / "results.json").read_text())
    assert [c["name"] for c in doc["codecs"]] == ["lvc"]


def test_cache_follows_content_not_path_or_time(tmp_path):
    """A cache copied to another checkout or machine (other paths, other times) is still used,
    and an edited input is coded again."""
    from PIL import Image

    rng = np.random.default_rng(0)
    first = tmp_path / "a" / "img.png"
    first.parent.mkdir()
    Image.fromarray(rng.integers(0, 256, (32, 48, 3), dtype="uint8")).save(first)
    out = tmp_path / "bench"
    assert run_lvc("bench", first, "--out", out, "--codecs", "jpeg", "--no-ms-ssim").returncode == 0
    cached = sorted(p.name for p in (out / "cache").iterdir())
    moved = tmp_path / "b" / "img.png"
    moved.parent.mkdir()
    shutil.copy(first, moved)  # new path, new mtime, same bytes
    assert run_lvc("bench", moved, "--out", out, "--codecs", "jpeg", "--no-ms-ssim").returncode == 0
    assert sorted(p.name for p in (out / "cache").iterdir()) == cached
    Image.fromarray(rng.integers(0, 256, (32, 48, 3), dtype="uint8")).save(moved)
    assert run_lvc("bench", moved, "--out", out, "--codecs", "jpeg", "--no-ms-ssim").returncode == 0
    assert len(list((out / "cache").iterdir())) == 2 * len(cached)


def test_still_image_settings_key_only_one_frame_points(tmp_path):
    """medium's still-image refinement budget is part of the cache key of one-frame points
    only: video points stay cached across changes to it; the residual layer's settings key
    only video points."""
    from lvc.bench.codecs import lvc_codec
    from lvc.bench.runner import Reference, _key

    frame = np.zeros((16, 16, 3), np.uint8)
    (tmp_path / "x").write_bytes(b"x")
    still = Reference(tmp_path / "x", "x", "image", [frame], 25.0)
    video = Reference(tmp_path / "x", "x", "video", [frame, frame], 25.0)
    medium, slow, refine = lvc_codec(), lvc_codec(preset="slow"), lvc_codec(refine=3)
    assert "still-refine=50@1048576px/fifth" in medium.still_version and "still-refine" not in medium.version
    assert _key(still, medium, 0.5) != _key(still, lvc_codec(preset="fast"), 0.5)
    assert _key(video, medium, 0.5) == _key(video, replace(medium, still_version="other"), 0.5)
    assert _key(still, medium, 0.5) != _key(still, replace(medium, still_version="other"), 0.5)
    for c in (slow, refine):  # the preset's steps everywhere; video's residual layers key only video points
        assert "still-refine" not in c.still_version and "residual=" not in c.still_version
        assert "residual=" in c.version


def _curves(savings: list[float]) -> list[dict]:
    """Per input, an anchor curve and a test curve that saves ``saving`` of its rate."""
    rows = []
    for s, saving in enumerate(savings):
        for i, q in enumerate((30.0, 33.0, 36.0, 39.0)):
            rate = (0.1 + 0.05 * s) * 1.6 ** i
            rows.append({"sequence": f"s{s}", "codec": "anchor", "param": i, "bpp": rate, "psnr_rgb": q})
            rows.append({"sequence": f"s{s}", "codec": "test", "param": i, "bpp": rate * (1 - saving), "psnr_rgb": q})
    return rows


def test_bootstrap_interval_reflects_how_much_the_inputs_disagree():
    same = bootstrap_interval(_curves([0.2] * 8), "test", "anchor", "psnr_rgb")
    assert same == pytest.approx((-20, -20), abs=0.1)  # every input agrees: no sampling spread
    mixed = _curves([0.0, 0.4, 0.1, 0.3, 0.0, 0.4, 0.2, 0.2])
    lo, hi = bootstrap_interval(mixed, "test", "anchor", "psnr_rgb")
    point = next(r["percent"] for r in bd_table(mixed, [("test", "anchor")]) if r["sequence"] == "AVERAGE")
    assert lo < point < hi and hi - lo > 5
    assert bootstrap_interval(_curves([0.2] * 4), "test", "anchor", "psnr_rgb") is None  # too few inputs
