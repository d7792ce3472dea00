"""Latent search and analysis: index life cycle, queries with time ranges, scene boundaries."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_lvc, write_y4m

from lvc.codec import api
from lvc.codec.cli import sample_clip
from lvc.errors import InputError
from lvc.io.reader import open_video
from lvc.search import index as ix
from lvc.search import service


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Three 2 s clips of different content: crops of three shots of the sample clip (its cuts
    are at frames 30, 76, 137, 187 and 242), one colour-inverted."""
    root = tmp_path_factory.mktemp("search")
    with open_video(sample_clip()) as v:
        frames = [f for _, f in zip(range(240), v.frames())]
    clips = {
        "left": [f[40:136, 0:128] for f in frames[80:130]],
        "right": [f[150:246, 480:608] for f in frames[137:187]],
        "inverted": [255 - f[80:176, 250:378] for f in frames[188:238]],
    }
    paths = {}
    for name, fr in clips.items():
        paths[name] = root / f"{name}.y4m"
        write_y4m(paths[name], fr)
    return root, paths, clips


def test_index_search_finds_the_source_and_its_time(tmp_path, videos):
    _, paths, clips = videos
    idx = tmp_path / "idx"
    service.index_add(list(paths.values()), idx, progress=False)
    assert {v["path"] for v in service.index_list(idx)} == {str(p) for p in paths.values()}
    query = tmp_path / "q.y4m"
    write_y4m(query, [np.ascontiguousarray(f[:, ::-1]) for f in clips["right"][10:45]])  # 1.4 s excerpt, mirrored
    (top, *_) = service.search(idx, query, k=3)
    assert top.path == str(paths["right"]) and abs(top.start - 0.4) <= 1.0 and top.end > top.start
    r = run_lvc("search", query, "--index", idx, "-k", "2", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert len(out) == 2 and out[0]["path"] == str(paths["right"]) and out[0]["score"] >= out[1]["score"]
    assert {"path", "start", "end", "score"} <= set(out[0])


def test_lvc_file_is_indexed_and_searched_without_full_decode(tmp_path, videos):
    _, paths, clips = videos
    coded = tmp_path / "left.lvc"
    api.encode(paths["left"], coded, quality=0.8, progress=False)
    idx = tmp_path / "idx"
    service.index_add([coded, paths["right"], paths["inverted"]], idx, progress=False)
    query = tmp_path / "q.y4m"
    write_y4m(query, clips["left"][10:50])
    assert service.search(idx, query, k=1)[0].path == str(coded)
    assert service.search(idx, coded, k=1)[0].path == str(coded)  # an .lvc as the query


def test_remove_rebuild_and_interrupted_add(tmp_path, videos, monkeypatch):
    _, paths, _ = videos
    idx = tmp_path / "idx"
    service.index_add([paths["left"], paths["right"]], idx, progress=False)
    service.index_remove([paths["left"]], idx)
    assert [v["path"] for v in service.index_list(idx)] == [str(paths["right"])]
    before = (idx / "CURRENT").read_text()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(service, "describe_video", boom)
    with pytest.raises(KeyboardInterrupt):
        service.index_add([paths["inverted"]], idx, progress=False)
    monkeypatch.undo()
    assert (idx / "CURRENT").read_text() == before
    assert [v["path"] for v in service.index_list(idx)] == [str(paths["right"])]
    assert service.index_rebuild(idx, progress=False) == [str(paths["right"])]
    with pytest.raises(InputError, match="not in the index"):
        service.index_remove([paths["left"]], idx)


def test_concurrent_adds_both_land(tmp_path, videos, monkeypatch):
    """A writer that lands while another is still describing its videos is not lost."""
    _, paths, _ = videos
    idx = tmp_path / "idx"
    service.index_add([paths["left"]], idx, progress=False)
    real = service._segments
    calls = []

    def racing(path, describer, progress):
        if not calls:  # the first add is describing: a second add runs to completion meanwhile
            calls.append(path)
            service.index_add([paths["inverted"]], idx, progress=False)
        return real(path, describer, progress)

    monkeypatch.setattr(service, "_segments", racing)
    service.index_add([paths["right"]], idx, progress=False)
    assert {v["path"] for v in service.index_list(idx)} == {str(p) for p in paths.values()}


def test_bad_index_and_bad_query_fail_cleanly(tmp_path, videos):
    _, paths, _ = videos
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x.txt").write_text("hello")
    r = run_lvc("search", paths["left"], "--index", foreign)
    assert r.returncode != 0 and "not an lvc index" in r.stderr and "Traceback" not in r.stderr
    r = run_lvc("index", "add", paths["left"], "--index", foreign)
    assert r.returncode != 0 and "not an lvc index" in r.stderr
    idx = tmp_path / "idx"
    assert run_lvc("index", "add", paths["left"], "--index", idx).returncode == 0
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 1000)
    r = run_lvc("search", junk, "--index", idx)
    assert r.returncode != 0 and "junk.mp4" in r.stderr and "Traceback" not in r.stderr
    assert ix.load(idx).videos  # untouched


def test_scenes_finds_a_hard_cut_and_writes_outputs(tmp_path, videos):
    _, _, clips = videos
    src = tmp_path / "cut.y4m"
    write_y4m(src, clips["left"][:40] + clips["right"][:35])  # one cut, at frame 40
    sheet, kf, act = tmp_path / "sheet.png", tmp_path / "kf", tmp_path / "act.csv"
    r = run_lvc("scenes", src, "--json", "--contact-sheet", sheet, "--keyframes", kf, "--activity", act)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["fps"] == 25.0 and [s["start_frame"] for s in out["scenes"]] == [0, 40]
    assert out["scenes"][1]["end_frame"] == 74 and out["scenes"][0]["end_time"] == pytest.approx(1.6)
    assert sheet.stat().st_size > 1000 and len(list(kf.glob("*.png"))) == 2
    assert act.read_text().startswith("second,latent_change") and act.with_suffix(".png").exists()
    coded = tmp_path / "cut.lvc"
    api.encode(src, coded, quality=0.8, progress=False)
    r = run_lvc("scenes", coded, "--json")
    assert r.returncode == 0, r.stderr
    assert [s["start_frame"] for s in json.loads(r.stdout)["scenes"]] == [0, 40]


def test_lvc_latents_are_read_only_in_the_analysis_models_latent_space(tmp_path, videos):
    """Signal thresholds belong to the analysis model's latent space: a stream coded in it is
    read from its latents, one coded in another (the default video model's) from pixels."""
    from lvc.analysis.signals import video_signals
    from lvc.models.registry import analysis_model

    _, _, clips = videos
    src = tmp_path / "six.y4m"
    write_y4m(src, clips["left"][:6])
    sources = {}
    for name in ("lvc-hp64", None):
        coded = tmp_path / f"{name}.lvc"
        api.encode(src, coded, quality=0.8, model=name, intra_period=1, progress=False, metrics=False)
        sources[name] = video_signals(coded, analysis_model()).source
    assert sources == {"lvc-hp64": "latents", None: "pixels"}
