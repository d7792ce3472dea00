"""In-loop deblocking of colour format 1's residual layers (format 1.5, lvc.codec.deblock)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from conftest import DATA, claiming_minor, motion_only_version, write_y4m

from lvc.bitstream import syntax
from lvc.bitstream.container import FRAME_I, FRAME_IL, FRAME_PM, MOTION_ONLY_SINCE, LvcReader
from lvc.codec import api, colour, deblock, partition, sequence
from lvc.codec.residual import Residual, ResidualCoder
from lvc.codec.residual_picture import ResidualPicture
from lvc.codec.transform import BLOCK
from lvc.errors import BitstreamError

MODEL = str(DATA / "tiny-inter.lvcm")


def _blocky(h: int = 32, w: int = 48, seed: int = 0) -> np.ndarray:
    """Quarter-level plane: a smooth ramp plus a different offset per 8x8 block."""
    rng = np.random.default_rng(seed)
    ramp = np.add.outer(np.arange(h), np.arange(w)).astype(np.int32) * 4 + 400
    offsets = rng.integers(-12, 13, (h // BLOCK, w // BLOCK)).astype(np.int32)
    return ramp + np.kron(offsets, np.ones((BLOCK, BLOCK), dtype=np.int32)), ramp


def test_the_grid_is_the_residual_layers_blocks():
    assert deblock.GRID == BLOCK


def test_only_pixels_next_to_edges_of_coded_blocks_move_and_the_steps_shrink():
    plane, smooth = _blocky()
    coded = np.zeros((4, 6), dtype=bool)
    coded[1, 2] = True
    out = deblock.deblock(plane, coded, tc=8, beta=48)
    moved = out != plane
    assert moved.any()
    ys, xs = np.nonzero(moved)
    # every moved pixel is one of the four next to an 8-pixel edge, around the coded block
    near = {0, 1, BLOCK - 2, BLOCK - 1}
    assert all(x % BLOCK in near or y % BLOCK in near for y, x in zip(ys, xs, strict=True))
    assert ys.min() >= BLOCK - 2 and ys.max() <= 2 * BLOCK + 1 and xs.min() >= 2 * BLOCK - 2
    assert xs.max() <= 3 * BLOCK + 1
    assert np.abs(out - plane).max() <= 2 * (8 + 2)  # tc + 2 per pass (a corner pixel is on two edges)
    assert np.square(out - smooth).sum() < np.square(plane - smooth).sum()
    # nothing coded, or tc 0: the plane itself
    assert deblock.deblock(plane, np.zeros_like(coded), 8, 48) is plane
    assert deblock.deblock(plane, coded, 0, 0) is plane


def test_texture_next_to_an_edge_is_left_alone():
    plane = np.zeros((16, 16), dtype=np.int32)
    plane[:, 6] = 200  # p1 differs from p0 by more than beta: texture, not a block step
    plane[:, 8:] = 20
    out = deblock.deblock(plane, np.ones((2, 2), dtype=bool), tc=8, beta=48)
    assert np.array_equal(out[:, 5:11], plane[:, 5:11])


def test_thresholds_follow_the_step():
    assert deblock.thresholds(0, 416) == (0, 0)
    tc, beta = deblock.thresholds(4, 416)  # step 26 pixels: 104 quarter levels, an eighth of it
    assert tc == 13 and beta == deblock.BETA_RATIO * tc


def test_the_encoders_strengths_never_raise_the_frames_error():
    plane, smooth = _blocky(seed=1)
    cplane, csmooth = _blocky(16, 24, seed=2)
    target = tuple(np.clip((p + 2) >> 2, 0, 255).astype(np.uint8) for p in (smooth, csmooth, csmooth))
    coded = (np.ones((4, 6), dtype=bool), np.ones((2, 3), dtype=bool))
    planes = [plane, cplane, cplane.copy()]
    steps = (416, 416)
    s = deblock.choose(planes, target, coded, steps)
    assert s[0] > 0 and s[1] > 0
    err = [sum(float(np.square(p - t.astype(np.int64) * 4).sum()) for p, t in zip(pp, target, strict=True))
           for pp in (planes, deblock.apply(planes, coded, steps, s))]
    assert err[1] < err[0]
    assert deblock.choose(planes, target, coded, steps, chroma=False)[1] == 0


@pytest.mark.parametrize("seed", range(12))
def test_the_chosen_strengths_beat_no_filtering_or_are_none(seed):
    """Random blocky planes, random coded blocks and steps: the climb's strength is 0 unless
    it lowers the error (a tie, or a filter with tc 0, stays unfiltered)."""
    rng = np.random.default_rng(seed)
    planes = [_blocky(32, 48, seed)[0] + rng.integers(-20, 21, (32, 48)), _blocky(16, 24, seed + 1)[0],
              _blocky(16, 24, seed + 2)[0]]
    target = tuple(np.clip((p + rng.integers(-30, 31, p.shape) + 2) >> 2, 0, 255).astype(np.uint8) for p in planes)
    coded = (rng.random((4, 6)) < 0.5, rng.random((2, 3)) < 0.5)
    steps = tuple(int(s) for s in rng.choice([10, 40, 160, 416, 1664], 2))
    s = deblock.choose(planes, target, coded, steps)
    for c, idx in ((0, (0,)), (1, (1, 2))):
        def err(k, c=c, idx=idx):
            return sum(float(np.square(deblock.deblock(planes[i], coded[c], *deblock.thresholds(k, steps[c]))
                                       - target[i].astype(np.int64) * 4).sum()) for i in idx)
        assert s[c] == 0 or err(s[c]) < err(0)


def _residual(h: int = 48, w: int = 64, strengths: tuple[int, int] = (5, 3), fmt: int = syntax.COLOUR_YUV420):
    rng = np.random.default_rng(3)
    coded = (rng.random((h // 8, w // 8)) < 0.5, rng.random((h // 16, w // 16)) < 0.5)
    coeffs = tuple(rng.integers(-3, 4, (p, int(c.sum()), 8, 8)) for p, c in zip((1, 2), coded, strict=True))
    if fmt == syntax.COLOUR_RGB:
        coded, coeffs = coded[:1], (rng.integers(-3, 4, (3, int(coded[0].sum()), 8, 8)),)
    return Residual((30, 30), coded, coeffs, fmt, strengths)


def test_strengths_round_trip_and_the_picture_is_the_filtered_sum():
    r = _residual()
    levels = tuple(np.full((c.shape[0], 8), 20) for c in r.coeffs)
    section, _ = ResidualCoder().encode(r, levels)
    back = ResidualCoder().decode(section, 48, 64, "test", syntax.COLOUR_YUV420)
    assert back.deblock == (5, 3)
    picture = np.random.default_rng(4).integers(0, 256, (48, 64, 3), dtype=np.uint8)

    class Ready:
        def result(self):
            return picture

    shown = ResidualPicture(Ready(), back, 48, 64)
    unfiltered = ResidualPicture(Ready(), replace(back, deblock=(0, 0)), 48, 64)
    quarter = colour.quarter_yuv(picture)
    total = [q + d for q, d in zip(quarter, back.planes(48, 64), strict=True)]
    expect = colour.rounded_planes(tuple(deblock.apply(total, back.coded, back.step_sizes, (5, 3))))
    assert all(np.array_equal(a, b) for a, b in zip(shown.planes(), expect, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(shown.planes(), unfiltered.planes(), strict=True))
    # later frames predict from the RGB picture of the filtered planes
    assert not np.array_equal(shown.result(), unfiltered.result())


def test_deblocking_in_colour_format_0_is_refused_as_corrupt():
    r = _residual(fmt=syntax.COLOUR_RGB)
    section, _ = ResidualCoder().encode(r, (np.full((3, 8), 20),))
    with pytest.raises(BitstreamError, match="deblocks a colour format 0 picture"):
        ResidualCoder().decode(section, 48, 64, "test", syntax.COLOUR_RGB)


def _strengths(stream) -> list[tuple[int, int]]:
    with LvcReader(stream) as r:
        return [(u.residual[6], u.residual[7]) for u in r.units() if u.residual]


def test_a_deblocked_stream_is_format_1_5_and_decodes_to_the_encoders_planes(tmp_path):
    """(``deblock=False``: no strength anywhere.)"""
    out = tmp_path / "d.lvc"
    r = api.encode(DATA / "clip.y4m", out, quality=0.5, model=MODEL, intra_period=4, progress=False, ms_ssim=False)
    assert any(s != (0, 0) for s in _strengths(out))
    with LvcReader(out) as rd:
        assert rd.header.version == motion_only_version(out, (1, 5))
    assert api.decode(out, reference=DATA / "clip.y4m", model=MODEL).sha256 == r.recon_sha256
    plain = tmp_path / "p.lvc"
    api.encode(DATA / "clip.y4m", plain, quality=0.5, model=MODEL, intra_period=4, progress=False, ms_ssim=False,
               deblock=False)
    assert set(_strengths(plain)) == {(0, 0)}


def test_odd_sizes_and_grey_frames_deblock_and_decode_to_the_encoders_planes(tmp_path):
    """A 58x38 crop (chroma 29x19: partial blocks, edges at the last columns) with its first
    two frames grey: the grey ones carry no chroma strength."""
    from lvc.io.reader import open_video

    with open_video(DATA / "clip.y4m") as v:
        frames = [np.ascontiguousarray(f[5:43, 3:61]) for f in v.frames()]
    for f in frames[:2]:
        f[:] = f.mean(-1, keepdims=True).astype(np.uint8)
    src, out = tmp_path / "odd.y4m", tmp_path / "odd.lvc"
    write_y4m(src, frames)
    r = api.encode(src, out, quality=0.5, model=MODEL, intra_period=4, progress=False, ms_ssim=False)
    with LvcReader(out) as rd:
        units = list(rd.units())
    assert any(u.residual and u.residual[6] for u in units)
    assert all(u.residual[7] == 0 for u in units[:2] if u.residual) and [u.grey for u in units[:3]] == [1, 1, 0]
    assert api.decode(out, reference=src, model=MODEL).sha256 == r.recon_sha256


def test_the_residual_cycle_restarts_after_each_intra_frame(monkeypatch):
    """Conditional frames' layers take RESIDUAL_CYCLE's scales of lambda in turn, from each
    I-frame on (I-frames, at their raised quality, take none); every layer's weight follows
    the sequence's quality (IL candidates' layers aside)."""
    from lvc.codec.frame import quality_lambda
    from lvc.codec.residual_rdo import ResidualEncoder
    from lvc.io.reader import open_video
    from lvc.models.registry import load_model

    calls = []
    real = ResidualEncoder.encode

    def spy(self, frame, picture, lmbda, quality, *a, **k):
        if not k.get("intra_everywhere"):  # (an I-frame's IL candidate: lvc.codec.layer_intra)
            calls.append((lmbda, quality))
        return real(self, frame, picture, lmbda, quality, *a, **k)

    monkeypatch.setattr(ResidualEncoder, "encode", spy)
    monkeypatch.setattr(sequence, "RESIDUAL_CYCLE", (0.5, 0.25, 2.0))
    model, q = load_model(MODEL), 30000
    with open_video(DATA / "clip.y4m") as v:
        frames = list(v.frames())
    enc = sequence.SequenceEncoder(model, q, 3)
    try:
        kinds = [enc.encode(f).frame_type for f in frames]
    finally:
        enc.close()
    assert [k in MOTION_ONLY_SINCE for k in kinds] == [False, True, True, False, True, True]
    assert kinds[3] in (FRAME_I, FRAME_IL)
    base = quality_lambda(model, q)
    assert len(calls) == 6 and all(qq == q for _, qq in calls)
    assert [round(lm / base, 9) for i, (lm, _) in enumerate(calls) if i % 3] == [0.5, 0.25, 0.5, 0.25]
    assert all(lm > base for lm, _ in (calls[0], calls[3]))  # (at their raised quality's lambda)


def test_a_motion_only_frame_in_a_1_4_stream_is_refused_as_corrupt(tmp_path, monkeypatch):
    monkeypatch.setattr(partition, "SPLIT_COST", math.inf)  # no quartered blocks: PM frames (1.5)
    src = tmp_path / "p.lvc"
    api.encode(DATA / "clip.y4m", src, quality=0.5, model=MODEL, intra_period=4, progress=False, ms_ssim=False,
               deblock=False, intra_blocks=False, small_transforms=False)
    with LvcReader(src) as rd:
        assert FRAME_PM in [u.frame_type for u in rd.units()]
    bad = claiming_minor(src, tmp_path / "bad.lvc", 4)
    with LvcReader(bad) as rd, pytest.raises(BitstreamError, match="frame type 4 is not valid in a format 1.4"):
        list(rd.units())


def test_deblocking_in_a_1_4_stream_is_refused_as_corrupt(tmp_path):
    src = tmp_path / "d.lvc"
    api.encode(DATA / "clip.y4m", src, quality=0.5, model=MODEL, intra_period=4, progress=False, ms_ssim=False,
               intra_blocks=False, small_transforms=False)
    bad = claiming_minor(src, tmp_path / "bad.lvc", 4)
    with LvcReader(bad) as rd, pytest.raises(BitstreamError, match="format 1.4 stream cannot"):
        list(rd.units())
