"""Quarter-pixel motion (``ConditionalConfig.subpel``): vectors in 1/4 pixel move the context
and the previous picture bilinearly, in exact integers on the codec's side.

These check that the codec's interpolation is the training warp's (the moved picture's own
test is ``test_pixel_ref.test_the_codecs_moved_picture_is_the_training_warp``), that
the search finds fractional motion, that streams decode to the encoder's pictures across
thread counts, that model files name the feature, and that training caches fractional motion.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from conftest import assert_decodes_to_encoder, write_y4m

from lvc.codec.lookahead import Found
from lvc.codec.motion import estimate_motion, phase_planes, warp
from lvc.codec.phases import PhasePlanes
from lvc.errors import ModelError
from lvc.models.conditional import ConditionalConfig
from lvc.models.frozen import PIXEL_REF, SUBPEL, from_bytes
from lvc.models.registry import load_model
from lvc.train.inter import InterTrainConfig, train_inter
from lvc.train.sequences import SequenceCache

QUARTER = ConditionalConfig(M=8, C=8, N=8, Nh=8, intra_M=16, levels=3, pixel_ref=True, subpel=4)


def _textured(g: torch.Generator, h: int, w: int) -> torch.Tensor:
    """Texture at a few pixels' scale (what block matching can lock on to), 0..255."""
    return torch.nn.functional.avg_pool2d(torch.rand(1, 3, h, w, generator=g) * 255, 5, 1, 2)


@pytest.mark.parametrize("frac", [1, 4])
def test_integer_warp_floors_or_rounds_the_float_warp(frac):
    g = torch.Generator().manual_seed(0)
    feat = torch.randint(-(1 << 30), 1 << 30, (2, 3, 12, 20), generator=g)
    mv = torch.randint(-40 * frac, 40 * frac + 1, (2, 6, 10, 2), generator=g)
    exact = torch.floor(warp(feat.double(), mv, 16, 8, frac))
    assert torch.equal(warp(feat, mv, 16, 8, frac), exact.long())
    pixels = torch.randint(0, 256, (2, 3, 40, 70), generator=g)
    rounded = torch.floor(warp(pixels.double(), mv, 16, 1, frac) + 0.5).long()
    assert torch.equal(warp(pixels, mv, 16, 1, frac, rounded=True), rounded)


def test_phase_planes_hold_the_warp_at_every_quarter_position():
    x = _textured(torch.Generator().manual_seed(1), 32, 48)
    luma = x[:, :1]
    planes = phase_planes(luma, 4)
    for dy in range(4):
        for dx in range(4):
            mv = torch.tensor([dx, dy]).expand(1, 2, 3, 2)
            assert torch.allclose(warp(luma, mv, 16, 1, 4), planes[:, 4 * dy + dx:4 * dy + dx + 1], atol=1e-3)


def test_phase_planes_padded_further_hold_the_same_values():
    """Shared planes (lvc.codec.phases) serve steps of smaller padding bit for bit."""
    luma = _textured(torch.Generator().manual_seed(3), 40, 56)[:, :1]
    phases = PhasePlanes(luma, 4, least=9)
    wide, p = phases.padded(5)
    assert p == 9 and phases.padded(9)[0] is wide  # made once for the largest need
    for r in (1, 5, 8):
        own = phase_planes(torch.nn.functional.pad(luma, (r,) * 4, mode="replicate"), 4)
        assert torch.equal(wide[..., p - r:p + 40 + r, p - r:p + 56 + r], own)
    assert phases.padded(12)[1] == 12  # made again for a caller needing more


@pytest.mark.parametrize("rate_weight", [0.0, 20.0])
def test_motion_estimation_finds_a_quarter_pixel_shift(rate_weight):
    big = _textured(torch.Generator().manual_seed(2), 112, 192)
    true = torch.tensor([-7, 5])  # content 1 3/4 px left, 1 1/4 px down (in quarter pixels)
    cur = warp(big, true.expand(1, 7, 12, 2), 16, 1, 4)
    mv = estimate_motion(big, cur, 16, rate_weight=rate_weight, frac=4)
    assert mv.shape == (1, 7, 12, 2)
    assert (mv[0, 1:-1, 1:-1] == true).all()
    assert torch.equal(estimate_motion(big, cur, 16, frac=1)[0, 2, 2], torch.tensor([-2, 1]))


def test_quarter_pixel_stream_decodes_to_the_encoders_pictures(quarter_file, twelve, tmp_path):
    assert {"PC", "PS", "PM", "PQ"} & set(assert_decodes_to_encoder(quarter_file, twelve, tmp_path))


def test_quarter_pixel_model_files_name_the_feature(quarter_file):
    """Readers without fractional motion must refuse such a file (they would decode its
    streams wrongly), and a tag that disagrees with the section is damage."""
    state = torch.load(quarter_file, weights_only=True)
    assert state["format"] == "lvc-model/4" + PIXEL_REF + SUBPEL
    assert from_bytes(quarter_file.read_bytes(), "x").inter.config.subpel == 4
    for tag, match in (("lvc-model/4+pixel-ref", "damaged"), ("lvc-model/4+pixel-ref+subpel+x", "upgrade lvc")):
        buf = io.BytesIO()
        torch.save({**state, "format": tag}, buf)
        with pytest.raises(ModelError, match=match):
            from_bytes(buf.getvalue(), "x")


def test_train_inter_caches_quarter_pixel_motion(tiny_model, twelve, tmp_path):
    src = tmp_path / "five.y4m"
    write_y4m(src, twelve[:5])
    intra = load_model(tiny_model)
    shape = ConditionalConfig(M=8, C=8, N=8, Nh=8, intra_M=intra.config.M, levels=intra.log_gain.shape[0],
                              pixel_ref=True, subpel=4)
    cfg = InterTrainConfig([str(src)], str(tmp_path / "run"), steps=1, batch=2, crop=64, length=3, per_clip=3,
                           threads=1)
    last = train_inter(cfg, intra, shape, progress=False)
    assert torch.load(last, weights_only=False)["inter_config"]["subpel"] == 4
    whole = SequenceCache.build([src], tmp_path / "cache", 64, 3, 3, 16)
    quarter = SequenceCache.build([src], tmp_path / "cache", 64, 3, 3, 16, subpel=4)
    assert np.array_equal(whole.frames, quarter.frames)
    assert (np.abs(quarter.motion.astype(int) - 4 * whole.motion) <= 3).all()


@pytest.mark.parametrize(("name", "subpel"), [("lvc-hl192dv", 1), ("lvc-hl192dq", 4),
                                               ("lvc-hl192dr", 4)])
def test_shipped_motion_tables_are_the_codes_for_their_precision(name, subpel):
    """The shipped video models hold the motion tables the code makes for their precision
    (so ``lvc extend`` rebuilds them); quarter-pixel rows give zero the probability
    ``MV_SPIKES`` fitted, and every row is symmetric."""
    from lvc.models.inter_frozen import MV_SPIKES, mv_table

    inter = load_model(name).inter
    assert inter.config.subpel == subpel
    assert all(torch.equal(a, b) for a, b in zip(inter.mv_tables.to_state().values(),
                                                 mv_table(subpel).to_state().values(), strict=True))
    tables = mv_table(subpel)
    for k in range(5):
        p = [2.0 ** -tables.bits(np.array([k]), np.array([v])) for v in (-3, 0, 3)]
        assert p[0] == pytest.approx(p[2], rel=1e-3)
        if subpel == 4:
            assert p[1] == pytest.approx(MV_SPIKES[k][0], abs=0.01)  # less the floors of 513 values


def test_the_search_takes_8_bit_frames_luma_as_it_takes_rgb():
    """The encoder searches on luma straight from its 8-bit frames (``frame_luma``); the
    vectors must be those of the float RGB frames (the training cache's input)."""
    from lvc.codec.motion import frame_luma

    big = _textured(torch.Generator().manual_seed(5), 112, 192).round()
    cur = warp(big, torch.tensor([6, -3]).expand(1, 7, 12, 2), 16, 1, 4, rounded=True)
    u8 = [x[0].permute(1, 2, 0).to(torch.uint8).numpy() for x in (big, cur)]
    u8.append(np.ascontiguousarray(u8[1][::-1, ::-1])[::-1, ::-1])  # negative strides are frames too
    for w in (0.0, 32.0):
        rgb = estimate_motion(big.float(), cur.float(), 16, rate_weight=w, frac=4)
        luma = estimate_motion(frame_luma(u8[0]), frame_luma(u8[1]), 16, rate_weight=w, frac=4)
        # the two lumas differ by float rounding (1e-5 of a level), which may flip a near-tie
        assert (rgb != luma).any(-1).sum() <= 2
        assert (luma[0, 1:-1, 1:-1] == torch.tensor([6, -3])).all()
        assert torch.equal(luma, estimate_motion(frame_luma(u8[0]), frame_luma(u8[2]), 16, rate_weight=w, frac=4))


def test_the_encoders_kept_luma_changes_no_byte(inter_model, twelve):
    """The luma a conditional encoder keeps for the next frame's search (compared by content,
    not identity) gives the stream of a search that computes every luma afresh."""
    from lvc.bitstream.container import CONDITIONAL
    from lvc.codec.sequence import SequenceEncoder

    streams = []
    for fresh in (False, True):
        enc = SequenceEncoder(inter_model, 40000, 32)
        try:
            units = []
            for f in twelve:
                if fresh:
                    enc.inter.motion._luma = None
                c = enc.encode(np.array(f))  # a new array each time
                units.append((c.frame_type, c.payload))
            streams.append(units)
        finally:
            enc.close()
    assert streams[0] == streams[1]
    assert sum(t in CONDITIONAL for t, _ in streams[0]) >= 6  # searched frames


def test_sharp_copies_are_exact_where_the_vector_is_whole_and_follow_a_smooth_ramp():
    """The 8-tap filters: whole-pixel vectors copy exactly (as the bilinear path does); on
    a smooth ramp every quarter position lands within rounding of the true value, and
    only quarter-pixel vectors are accepted."""
    from lvc.codec.sharp import sharp_moved
    from lvc.codec.skip import moved_picture

    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    whole = rng.integers(-5, 6, (3, 4, 2)) * 4
    assert np.array_equal(sharp_moved(img, whole, 16, 4), moved_picture(img, torch.from_numpy(whole), 16, 4))
    yy, xx = np.mgrid[0:48, 0:64]
    ramp = np.repeat((60 + 2 * xx + yy)[..., None], 3, -1).astype(np.uint8)
    for fx, fy in ((1, 0), (2, 3), (3, 1)):
        v = np.broadcast_to(np.array([fx, fy]), (3, 4, 2))
        out = sharp_moved(ramp, v, 16, 4).astype(float)[4:-4, 4:-4, 0]
        true = (60 + 2 * (xx + fx / 4) + (yy + fy / 4))[4:-4, 4:-4]
        assert np.abs(out - true).max() <= 0.5 + 1e-9
    with pytest.raises(ValueError, match="quarter-pixel"):
        sharp_moved(img, whole, 16, 2)


@pytest.mark.parametrize("block", [8, 16])
def test_sharp_copies_are_the_integer_filters_pixel_by_pixel(block):
    """The float32 filtering of :func:`sharp_moved` is exact: every block (extreme values
    too, selected blocks alone) equals the bitstream's integer rule computed directly."""
    from lvc.codec.sharp import SHARP_TAPS, sharp_moved

    rng = np.random.default_rng(6)
    img = (rng.integers(0, 2, (37, 45, 3)) * 255).astype(np.uint8)
    img[::3] = rng.integers(0, 256, img[::3].shape)
    hb, wb = -(-37 // block), -(-45 // block)
    v = rng.integers(-30, 31, (hb, wb, 2))
    only = rng.integers(0, 2, (hb, wb)).astype(bool)
    out = sharp_moved(img, v, block, 4, only)
    for by, bx in zip(*np.nonzero(only)):
        (dx, dy), (fx, fy) = v[by, bx] // 4, v[by, bx] % 4
        ys = np.clip(np.arange(by * block, (by + 1) * block)[:, None] + dy + np.arange(-3, 5), 0, 36)
        xs = np.clip(np.arange(bx * block, (bx + 1) * block)[:, None] + dx + np.arange(-3, 5), 0, 44)
        region = img.astype(np.int64)[ys[:, None, :, None], xs[None, :, None, :]]  # (y, x, ty, tx, 3)
        total = np.einsum("yxijc,i,j->yxc", region, SHARP_TAPS[fy], SHARP_TAPS[fx])
        want = np.clip((total + 2048) >> 12, 0, 255)[:37 - by * block, :45 - bx * block]
        assert np.array_equal(out[by * block:(by + 1) * block, bx * block:(bx + 1) * block], want)


def test_a_sharp_motion_only_frame_decodes_to_the_encoders_picture(quarter_file, twelve, monkeypatch):
    """The encoder's filter choice (forced sharp here) is the payload's first symbol; the
    decoder copies through the same filters. A filter symbol out of range is refused."""
    from lvc.bitstream.container import FRAME_I, FRAME_PM, FrameUnit
    from lvc.codec import inter as inter_mod
    from lvc.codec import skip
    from lvc.codec.decoder import SequenceDecoder
    from lvc.codec.frame import FrameCodec
    from lvc.codec.sharp import sharp_moved
    from lvc.entropy import coder
    from lvc.errors import BitstreamError
    from lvc.models.inter_frozen import MV_SCALES

    model, q = load_model(str(quarter_file)), 40000
    fc, ic = FrameCodec(model), inter_mod.InterCodec(model)
    i = fc.encode(twelve[0], q)
    mv = torch.zeros(4, 8, 2, dtype=torch.long)
    mv[..., 0], mv[1:, :, 1] = 5, -3  # fractional in both directions
    monkeypatch.setattr(ic.motion, "vectors", lambda *a: Found(mv))
    scores = iter([0, 1])  # the sharp copy's error first, then the bilinear one's
    monkeypatch.setattr("lvc.codec.copies._sse", lambda a, b: next(scores))
    ctx0 = ic.intra_context(i.latent, q)

    class Shown:  # a textured previous picture (this random model's I-frame shows almost nothing)
        def result(self):
            return twelve[0]

    r = ic.encode(twelve[1], twelve[0], q, ctx0, skip.ShownPicture(Shown(), twelve[0]), None, copies=True,
                  motion_only=True)
    assert r.frame_type == FRAME_PM
    assert np.array_equal(r.recon, sharp_moved(twelve[0], mv.numpy(), 16, 4))
    assert not np.array_equal(r.recon, skip.moved_picture(twelve[0], mv, 16, 4))

    def decoder():
        dec = SequenceDecoder(model, 128, 64, "test")
        dec.decode(FrameUnit(0, FRAME_I, q, i.payload, 0))
        dec.picture = Shown()
        return dec

    assert np.array_equal(decoder().decode(FrameUnit(1, FRAME_PM, q, r.payload, 0)), r.recon)
    enc = coder.new_encoder()  # filter 2: no such filter
    ic.mv_coder.encode(enc, np.array([2]), np.array([len(MV_SCALES)]))
    ic.write_motion(enc, mv)
    dec = decoder()
    with pytest.raises(BitstreamError, match="motion filter out of range"):
        dec.decode(FrameUnit(1, FRAME_PM, q, coder.finish(enc), 0))


def test_sharp_phase_planes_hold_the_sharp_copy_at_every_quarter_position():
    """The search's 8-tap planes are the codec's sharp copies before rounding; the search
    can return both fields, the sharp one refined on them from the same whole-pixel start."""
    from lvc.codec.sharp import sharp_moved, sharp_phase_planes

    x = _textured(torch.Generator().manual_seed(3), 32, 48)
    img = x[0].permute(1, 2, 0).round().to(torch.uint8).numpy()
    luma = torch.from_numpy(img[..., :1].astype(np.float32)).permute(2, 0, 1)[None]
    planes = sharp_phase_planes(luma, 4)
    for dy in range(4):
        for dx in range(4):
            moved = sharp_moved(img, np.broadcast_to(np.array([dx, dy]), (2, 3, 2)), 16, 4)[..., 0].astype(float)
            plane = planes[0, 4 * dy + dx].clamp(0, 255).numpy()
            assert np.abs(plane - moved)[:-4, :-4].max() <= 0.5 + 1e-4
    big = _textured(torch.Generator().manual_seed(2), 112, 192)
    cur = warp(big, torch.tensor([-7, 5]).expand(1, 7, 12, 2), 16, 1, 4)
    mv, mv_sharp = estimate_motion(big, cur, 16, rate_weight=20.0, frac=4, sharp_too=True)
    assert torch.equal(mv, estimate_motion(big, cur, 16, rate_weight=20.0, frac=4))
    assert mv_sharp.shape == mv.shape and ((mv_sharp - mv).abs() <= 3).all()  # the same whole-pixel start


def test_slow_searches_a_field_for_sharp_copies_and_decodes_to_the_encoders_pictures(quarter_file, twelve,
                                                                                      tmp_path, monkeypatch):
    """Only the slow preset asks the search for the sharp copy's own field (medium keeps its
    speed); either way the stream decodes to the encoder's pictures."""
    from lvc.codec import api
    from lvc.codec.motion import estimate_motion as real

    asked = []

    def spy(*args, **kwargs):
        if args[2] == 16:  # (not the quarters' search)
            asked.append(kwargs.get("sharp_too", False))
        return real(*args, **kwargs)

    monkeypatch.setattr("lvc.codec.lookahead.estimate_motion", spy)
    src = tmp_path / "twelve.y4m"
    write_y4m(src, twelve)
    for preset in ("medium", "slow"):
        asked.clear()
        out = tmp_path / f"{preset}.lvc"
        r = api.encode(src, out, quality=0.5, model=str(quarter_file), progress=False, preset=preset, refine=0,
                       ms_ssim=False)
        assert asked and set(asked) == {preset == "slow"}
        assert {"PM", "PQ"} & {f["type"] for f in api.info(out)["frames"]}
        assert api.decode(out, reference=src, model=str(quarter_file)).sha256 == r.recon_sha256
