"""Inter coding: P-frames predict from the decoder's exact latent, so nothing drifts."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DATA, encoder_recons, same_picture, write_y4m

from lvc.codec import api
from lvc.codec.cli import sample_clip
from lvc.io.reader import open_video
from lvc.models.registry import load_model


@pytest.fixture(scope="module")
def forty(tmp_path_factory):
    """40 real frames, 96x64 crops of one shot of the sample clip (frames 137-176; its cuts
    are at 30, 76, 137, 187), where P-frames pay: the tests need them."""
    with open_video(sample_clip()) as v:
        frames = [f[100:164, 300:396] for _, f in zip(range(177), v.frames())][137:]
    path = tmp_path_factory.mktemp("inter") / "forty.y4m"
    write_y4m(path, frames)
    return path, _read(path)


def _read(path) -> list[np.ndarray]:
    """Frames as the encoder sees them (after the y4m's 4:2:0 round trip)."""
    with open_video(path) as v:
        return list(v.frames())


def _types(path) -> list[str]:
    return [f["type"] for f in api.info(path)["frames"]]


INTRA = {"I", "IL"}  # learned I-frames, and I-frames of the residual layer alone
PREDICTED = {"P", "PC", "PS", "PM", "PQ"}  # latent-residual or conditional P-frames (the shipped model has both)


def test_no_drift_over_a_40_frame_group(tmp_path, forty):
    src, frames = forty
    out = tmp_path / "a.lvc"
    api.encode(src, out, quality=0.6, intra_period=-1, progress=False)
    types = _types(out)
    assert types[0] in INTRA and PREDICTED & set(types) and len(types) == 40
    expected = encoder_recons(load_model(), src, 0.6, intra_period=-1)  # colour format 1: planes
    decoded = list(api.iter_decode(out, planes=None))
    assert len(decoded) == 40 and all(same_picture(a, b) for a, b in zip(decoded, expected))


def test_intra_period_one_codes_only_intra(tmp_path, forty):
    src, _ = forty
    api.encode(src, tmp_path / "a.lvc", intra_period=1, max_frames=6, progress=False)
    types = _types(tmp_path / "a.lvc")
    assert len(types) == 6 and set(types) <= INTRA


def test_intra_period_forces_random_access_points(tmp_path, forty):
    src, _ = forty
    api.encode(src, tmp_path / "a.lvc", intra_period=4, max_frames=12, progress=False)
    types = _types(tmp_path / "a.lvc")
    assert {types[0], types[4], types[8]} <= INTRA
    assert api.info(tmp_path / "a.lvc")["intra_period"] == 4


def test_scene_cut_in_the_middle_of_a_group_becomes_intra(tmp_path):
    with open_video(sample_clip()) as v:
        a = [f[100:164, 300:396] for _, f in zip(range(5), v.frames())]
    with open_video(DATA / "clip.y4m") as v:  # another place in the clip: a hard cut
        b = [np.ascontiguousarray(np.pad(f, ((8, 8), (16, 16), (0, 0)), mode="edge")) for f in v.frames()][:5]
    b = [np.ascontiguousarray(255 - f[:, ::-1]) for f in b]
    src = tmp_path / "cut.y4m"
    write_y4m(src, a + b)
    out = tmp_path / "cut.lvc"
    api.encode(src, out, quality=0.5, intra_period=-1, progress=False)
    types = _types(out)
    assert types[5] in INTRA, types
    decoded = list(api.iter_decode(out, planes=None))
    expected = encoder_recons(load_model(), src, 0.5, intra_period=-1)
    assert len(decoded) == 10 and all(same_picture(d, e) for d, e in zip(decoded, expected))


def test_decode_identical_across_threads_with_p_frames(tmp_path, forty):
    from conftest import run_lvc

    src, _ = forty
    out = tmp_path / "a.lvc"
    api.encode(src, out, quality=0.5, intra_period=-1, max_frames=12, progress=False)
    assert PREDICTED & set(_types(out))
    outputs = []
    for threads in ("1", "2"):
        y4m = tmp_path / f"{threads}.y4m"
        r = run_lvc("decode", out, "-o", y4m, "--threads", threads)
        assert r.returncode == 0, r.stderr
        outputs.append(y4m.read_bytes())
    assert outputs[0] == outputs[1]


def test_intra_period_zero_and_minus_one_are_the_same(tmp_path, forty):
    src, _ = forty
    api.encode(src, tmp_path / "a.lvc", intra_period=0, max_frames=5, progress=False)
    api.encode(src, tmp_path / "b.lvc", intra_period=-1, max_frames=5, progress=False)
    assert (tmp_path / "a.lvc").read_bytes() == (tmp_path / "b.lvc").read_bytes()
    assert api.info(tmp_path / "a.lvc")["intra_period"] == 0


def test_p_frame_without_reference_is_refused(tmp_path, forty):
    from conftest import run_lvc

    from lvc.bitstream.container import LvcReader, SequenceHeader, pack_frame
    from lvc.codec.frame import FrameCodec

    src, frames = forty
    full = tmp_path / "a.lvc"
    api.encode(src, full, quality=0.6, intra_period=1, max_frames=1, progress=False, refine=0)
    with LvcReader(full) as r:
        h = r.header
    codec, q = FrameCodec(load_model()), round(0.6 * 65535)
    p_payload = codec.encode(frames[1], q, reference=codec.encode(frames[0], q).latent).payload
    head = SequenceHeader(**{**h.__dict__, "frame_count": 1}).pack()
    bad = tmp_path / "bad.lvc"
    bad.write_bytes(head + pack_frame(1, q, p_payload))
    r = run_lvc("decode", bad, "-o", tmp_path / "x.y4m")
    assert r.returncode != 0 and "frame 0" in r.stderr and "P-frame without" in r.stderr
    assert not (tmp_path / "x.y4m").exists()
