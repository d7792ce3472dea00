"""Conditional P-frames: block motion (estimation, exact warping) and exact coding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import encoder_recons, same_picture, write_y4m

from lvc.bitstream.container import CONDITIONAL, FRAME_I, FRAME_P, FRAME_PC, FRAME_PM, FRAME_PS, FrameUnit
from lvc.codec import api
from lvc.codec.decoder import SequenceDecoder
from lvc.codec.frame import FrameCodec, quality_lambda
from lvc.codec.inter import InterCodec
from lvc.codec.lookahead import Found
from lvc.codec.motion import estimate_motion, warp
from lvc.errors import BitstreamError
from lvc.models.conditional import ConditionalConfig, ConditionalP
from lvc.models.frozen import freeze, load_frozen, save_frozen
from lvc.models.latent import LatentModel, ModelConfig
from lvc.models.registry import load_model

TINY = ConditionalConfig(M=8, C=8, N=8, Nh=8, intra_M=16, levels=3)


def test_integer_warp_is_the_floor_of_the_float_warp():
    g = torch.Generator().manual_seed(0)
    feat = torch.randint(-(1 << 30), 1 << 30, (2, 3, 12, 20), generator=g)
    mv = torch.randint(-40, 41, (2, 6, 10, 2), generator=g)
    exact = warp(feat, mv, 16, 8)
    assert exact.dtype == torch.int64
    assert torch.equal(exact, torch.floor(warp(feat.double(), mv, 16, 8)).long())


def test_warp_by_whole_feature_pixels_is_a_shift_with_edges_replicated():
    feat = torch.arange(6 * 10).view(1, 1, 6, 10)
    assert torch.equal(warp(feat, torch.zeros(1, 3, 5, 2, dtype=torch.long), 16, 8), feat)
    mv = torch.tensor([16, -8]).expand(1, 3, 5, 2)  # two feature pixels right, one up
    out = warp(feat, mv, 16, 8)
    assert torch.equal(out[0, 0, 1:, :8], feat[0, 0, :-1, 2:])
    assert torch.equal(out[0, 0, 0], out[0, 0, 1])  # the top row repeats the edge
    assert torch.equal(out[0, 0, 1:, 8:], feat[0, 0, :-1, 9:].expand(-1, 2))


@pytest.mark.parametrize("keep", [0, 1, 3])  # half-resolution search; quarter-resolution (fast preset)
def test_motion_estimation_finds_a_global_shift(keep):
    g = torch.Generator().manual_seed(1)
    # texture at the scale of a few pixels: what a quarter-resolution search can see
    big = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 140, 220, generator=g) * 255, 7, 1, 3)
    ref = big[..., 20:116, 20:196]
    cur = big[..., 20 - 3:116 - 3, 20 + 5:196 + 5]  # content moved 5 px left, 3 px down
    mv = estimate_motion(ref, cur, block=16, search=16, keep=keep)
    assert mv.shape == (1, 6, 11, 2)
    assert (mv[0, 1:-1, 1:-1] == torch.tensor([5, -3])).all()


@pytest.mark.parametrize("keep", [0, 3])
def test_rate_constrained_motion_stays_in_range_and_smooths_flat_areas(keep):
    """A textured frame moved by (5, -3) beyond a flat band: the textured blocks keep the true
    vector, flat blocks (any vector fits) take their predictor's instead of noise, and no
    vector leaves the search range even where the true motion is beyond it."""
    torch.manual_seed(0)
    ref = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 80, 144) * 255, 3, 1, 1)
    ref[..., :, 96:] = 128.0  # flat right part
    cur = torch.roll(ref, (-3, 5), (2, 3))
    free = estimate_motion(ref, cur, 16, keep=keep)
    mv = estimate_motion(ref, cur, 16, rate_weight=64.0, keep=keep)
    assert mv.shape == free.shape == (2, 5, 9, 2)
    assert (mv[:, 1:-1, 1:5] == torch.tensor([-5, 3])).all()
    assert (mv[:, 1:, 7:] == mv[:, :-1, 7:]).all()  # flat: each block copies the one above
    far = estimate_motion(ref, torch.roll(ref, (0, 23), (2, 3)), 16, rate_weight=64.0, keep=keep)
    assert far.abs().max() <= 16


def test_motion_is_the_same_whatever_the_gather_batch(monkeypatch):
    """Large frames gather the fine search's candidates in several batches (memory bound);
    the vectors must not depend on it."""
    from lvc.codec import motion

    torch.manual_seed(2)
    ref = torch.nn.functional.avg_pool2d(torch.rand(2, 3, 72, 120) * 255, 3, 1, 1)
    cur = torch.roll(ref, (2, -7), (2, 3)) + torch.rand(2, 3, 72, 120)
    whole = [estimate_motion(ref, cur, 16, rate_weight=w) for w in (0.0, 64.0)]
    monkeypatch.setattr(motion, "GATHER_PIXELS", 1)  # one candidate at a time
    assert all(torch.equal(a, estimate_motion(ref, cur, 16, rate_weight=w)) for a, w in zip(whole, (0.0, 64.0)))


def test_batched_block_sad_equals_one_shift_at_a_time():
    """The whole-frame search batches candidates by row; its SADs must be the same numbers
    (to float rounding) as moving the reference by each candidate alone."""
    from lvc.codec.motion import _block_sad, _square

    torch.manual_seed(0)
    ref, cur = torch.rand(2, 1, 40, 72) * 255, torch.rand(2, 1, 40, 72) * 255
    cands = torch.cat([_square(3), torch.tensor([[0, 0], [2, -3]])])
    r = 3
    pad = torch.nn.functional.pad(ref, (r, r, r, r), mode="replicate")
    one = [torch.nn.functional.avg_pool2d((pad[..., r + dy:r + dy + 40, r + dx:r + dx + 72] - cur).abs(), 8)
           for dx, dy in cands.tolist()]
    assert torch.allclose(_block_sad(ref, cur, 8, cands), torch.cat(one, 1), rtol=1e-6)
    # ... and a per-block start (row-window fetches) gives the shifts' numbers too
    base = torch.tensor([1, -2]).expand(2, 5, 9, 2)
    moved = [torch.nn.functional.avg_pool2d((pad[..., r - 2 + dy:r - 2 + dy + 40, r + 1 + dx:r + 1 + dx + 72]
                                             - cur).abs(), 8) for dx, dy in _square(1).tolist()]
    assert torch.allclose(_block_sad(ref, cur, 8, _square(1), base=base), torch.cat(moved, 1), rtol=1e-6)


def test_intra_latent_is_what_an_i_frame_decodes_to(twelve):
    model = load_model()  # the shipped model has the checkerboard context prior
    codec = FrameCodec(model)
    q = 30000
    y, _ = codec.analyse(twelve[0], q)
    assert torch.equal(codec.intra_latent(y, q), codec.encode(twelve[0], q, y=y).latent)


def test_forward_carries_the_context_and_counts_bits():
    model = ConditionalP(TINY).eval()
    x = torch.rand(2, 3, 64, 128)
    ctx = model.intra_context(torch.randn(2, 16, 4, 8))
    assert ctx.shape == (2, 8, 8, 16)
    mv = torch.zeros(2, 4, 8, 2, dtype=torch.long)
    with torch.no_grad():
        out = model(x, ctx, mv, torch.tensor([0.0, 1.0]))
    assert out["x_hat"].shape == x.shape and out["ctx"].shape == ctx.shape
    assert torch.isfinite(out["bpp"]).all() and (out["bpp"] > 0).all()


def _units(model, frames, q=40000):
    """I, then conditional P-frames: the units and the encoder's reconstructions and contexts."""
    fc, ic = FrameCodec(model), InterCodec(model)
    r = fc.encode(frames[0], q)
    ctx = ic.intra_context(r.latent, q)
    units, recons = [FrameUnit(0, FRAME_I, q, r.payload, 0)], [r.recon]
    for t in range(1, len(frames)):
        p = ic.encode(frames[t], frames[t - 1], q, ctx)
        ctx = p.context
        units.append(FrameUnit(t, FRAME_PC, q, p.payload, 0))
        recons.append(p.recon)
    return units, recons, ctx


def test_conditional_p_frames_decode_bit_exactly_without_drift(inter_model, twelve):
    assert inter_model.inter is not None and inter_model.sha256
    torch.set_num_threads(1)
    units, recons, ctx = _units(inter_model, twelve)
    torch.set_num_threads(2)  # the decoder on another thread count
    try:
        dec = SequenceDecoder(inter_model, 128, 64, "test")
        decoded = [dec.decode(u) for u in units]
    finally:
        torch.set_num_threads(1)
    assert all(np.array_equal(a, b) for a, b in zip(decoded, recons))
    assert torch.equal(dec.context, ctx)


def test_a_video_as_narrow_as_one_side_information_column_decodes_bit_exactly(twelve):
    """40 pixels wide and 128 high: one column of two side-information rows, which the
    shipped model's integer 3x3 layers see padded to their kernel's width (once misread:
    the encoder coded garbage and such videos did not decode)."""
    from lvc.codec.sequence import SequenceEncoder
    from lvc.models.registry import default_model, load_model

    fm = load_model(default_model())
    frames = [np.ascontiguousarray(f.transpose(1, 0, 2)[:, :40]) for f in twelve[:3]]
    enc = SequenceEncoder(fm, 30000, 32)
    try:
        coded = [enc.encode(f) for f in frames]
        recons = [c.recon for c in coded]
    finally:
        enc.close()
    dec = SequenceDecoder(fm, 40, 128, "test")
    try:
        for i, (c, r) in enumerate(zip(coded, recons)):
            assert np.array_equal(dec.decode(FrameUnit(i, c.frame_type, c.quality, c.payload, 0, False, c.residual)), r)
    finally:
        dec.close()
    assert min(10 * np.log10(255**2 / np.mean((r.astype(float) - f) ** 2)) for r, f in zip(recons, frames)) > 25


def test_damaged_conditional_p_frame_fails_cleanly(inter_model, twelve):
    units, _, _ = _units(inter_model, twelve[:3])
    dec = SequenceDecoder(inter_model, 128, 64, "test")
    dec.decode(units[0])
    bad = FrameUnit(1, FRAME_PC, units[1].quality, units[1].payload[: len(units[1].payload) // 2], 0)
    with pytest.raises(BitstreamError, match="frame 1"):
        dec.decode(bad)
    with pytest.raises(BitstreamError, match="without a preceding frame"):
        dec.decode(units[2])  # the failed frame left no context


def test_conditional_p_frame_needs_a_model_with_an_inter_section(tiny_model, inter_model, twelve):
    units, _, _ = _units(inter_model, twelve[:2])
    dec = SequenceDecoder(load_model(tiny_model), 128, 64, "test")
    with pytest.raises(BitstreamError, match="no conditional P section"):
        dec.decode(units[1])


@pytest.mark.parametrize("residual", [None, 0.0])  # the layer (frames of copies); none (the learned blocks)
def test_encoder_chooses_pc_frames_and_the_file_decodes_to_its_reconstructions(inter_model_file, inter_model,
                                                                               twelve, tmp_path, residual):
    src, out = tmp_path / "twelve.y4m", tmp_path / "a.lvc"
    write_y4m(src, twelve)
    api.encode(src, out, quality=0.5, model=str(inter_model_file), progress=False, residual=residual)
    types = [f["type"] for f in api.info(out)["frames"]]
    assert types[0] in ("I", "IL") and {"PC", "PS", "PM", "PQ"} & set(types)
    expected = encoder_recons(inter_model, src, 0.5, residual=residual)
    decoded = list(api.iter_decode(out, model=str(inter_model_file), planes=None))
    assert len(decoded) == 12 and all(same_picture(a, b) for a, b in zip(decoded, expected))


def test_clear_pc_wins_skip_the_intra_analysis_and_cuts_still_restart(inter_model, twelve, monkeypatch):
    """After a PC frame that clearly beats the last measured I cost, the next frames are not
    analysed for I (the encoder's largest saving), but a cut is: there the previous PC
    frame's quality says nothing about this one's. The stream decodes to the encoder's pictures."""
    from lvc.codec import sequence

    analysed = []
    real = FrameCodec.analyse
    monkeypatch.setattr(FrameCodec, "analyse", lambda self, *a, **k: analysed.append(1) or real(self, *a, **k))
    cut = [np.ascontiguousarray(255 - f[::-1]) for f in twelve[6:]]
    frames = twelve[:6] + cut
    enc = sequence.SequenceEncoder(inter_model, 40000, 32)
    units, recons = [], []
    try:
        for f in frames:
            before = len(analysed)
            c = enc.encode(f)
            units.append((c, len(analysed) > before))
            recons.append(c.recon)
    finally:
        enc.close()
    kinds = [c.frame_type for c, _ in units]
    assert units[6][1]
    skipped = [i for i, (c, looked) in enumerate(units) if not looked]
    assert skipped and all({kinds[i], kinds[i - 1]} <= set(CONDITIONAL) for i in skipped)
    dec = SequenceDecoder(inter_model, 128, 64, "test")
    decoded = [dec.decode(FrameUnit(i, c.frame_type, c.quality, c.payload, 0, False, c.residual))
               for i, (c, _) in enumerate(units)]
    assert all(np.array_equal(a, b) for a, b in zip(decoded, recons))


def test_pc_frames_follow_a_residual_p_frame_but_not_the_reverse(inter_model, twelve):
    """A P-frame restarts the context from its latent, as an I-frame does; after a PC frame
    there is no intra-space latent, so a residual P-frame there is a damaged stream."""
    q = 40000
    fc, ic = FrameCodec(inter_model), InterCodec(inter_model)
    i = fc.encode(twelve[0], q)
    p = fc.encode(twelve[1], q, reference=i.latent)
    pc1 = ic.encode(twelve[2], twelve[1], q, ic.intra_context(p.latent, q))
    pc2 = ic.encode(twelve[3], twelve[2], q, pc1.context)
    units = [FrameUnit(0, FRAME_I, q, i.payload, 0), FrameUnit(1, FRAME_P, q, p.payload, 0),
             FrameUnit(2, FRAME_PC, q, pc1.payload, 0), FrameUnit(3, FRAME_PC, q, pc2.payload, 0)]
    dec = SequenceDecoder(inter_model, 128, 64, "test")
    decoded = [dec.decode(u) for u in units]
    assert all(np.array_equal(a, b.recon) for a, b in zip(decoded, (i, p, pc1, pc2)))
    assert torch.equal(dec.context, pc2.context)
    with pytest.raises(BitstreamError, match="without a preceding frame"):
        dec.decode(FrameUnit(4, FRAME_P, q, p.payload, 0))


def test_scenes_of_a_conditional_stream_come_from_its_decoded_pictures(inter_model_file, twelve, tmp_path):
    """PC frames carry no intra latent: their stream is analysed from the decoded pixels."""
    from lvc.analysis.cli import analyse

    src, out = tmp_path / "twelve.y4m", tmp_path / "a.lvc"
    write_y4m(src, twelve)
    api.encode(src, out, quality=0.5, model=str(inter_model_file), progress=False)
    assert {"PC", "PS", "PM", "PQ"} & {f["type"] for f in api.info(out)["frames"]}
    sig, report = analyse(out, str(inter_model_file), progress=False)
    assert sig.source == "pixels" and len(sig) == 12
    assert [s["start_frame"] for s in report["scenes"]] == [0]


@pytest.fixture(scope="module")
def updating_model(tmp_path_factory):
    """As ``inter_model``, but its context update is not zero (the latent changes the picture)
    and its latent is large enough to code non-zero symbols."""
    torch.manual_seed(1)
    intra = LatentModel(ModelConfig(N=8, M=16, Nh=8, levels=3))
    inter = ConditionalP(ConditionalConfig(M=8, C=8, N=8, Nh=8, intra_M=16, levels=3))
    torch.nn.init.normal_(inter.g_c[-1].weight, std=0.1)
    with torch.no_grad():
        inter.log_gain += 3
        inter.log_inv_gain -= 3
    path = tmp_path_factory.mktemp("inter") / "tiny-updating.lvcm"
    save_frozen(freeze(intra, "tiny-updating", inter=inter), path)
    return load_frozen(path)


def test_float_update_follows_the_exact_context_update(updating_model):
    """Refinement differentiates a float stand-in; it must track the exact path closely."""
    from lvc.codec.inter import _ONE

    p = updating_model.inter
    g = torch.Generator().manual_seed(0)
    ctx_w = torch.randint(-3 * _ONE, 3 * _ONE, (1, 8, 8, 16), generator=g)
    y_fx = torch.randint(-4 * _ONE, 4 * _ONE, (1, 8, 4, 8), generator=g)
    exact = p.update(y_fx, ctx_w, 3, 6).double() / _ONE
    from lvc.models.inter_frozen import GAIN_FRAC_BITS
    from lvc.models.latent import interp_fixed

    inv = interp_fixed(p.inv_gain_fx, 3, 6).float() / (1 << GAIN_FRAC_BITS)
    approx = p.update_float(y_fx.float() / _ONE * inv[None, :, None, None], ctx_w.float() / _ONE)
    assert exact.abs().max() > 0.5
    assert torch.allclose(approx.double(), exact, atol=0.02)


def test_refined_pc_frames_cost_less_and_decode_to_the_encoders_pictures(updating_model, twelve):
    """Encoder-side refinement (slow preset) of PC latents: the decoder is unchanged, so the
    stream still decodes bit-exactly, and the frame's ``lambda * MSE + bpp`` does not rise."""
    q = 40000
    fc = FrameCodec(updating_model)
    i = fc.encode(twelve[0], q)
    lmbda, pixels = quality_lambda(updating_model, q) * 255**2, twelve[0].shape[0] * twelve[0].shape[1]

    def cost(r, frame):
        return lmbda * np.mean((r.recon.astype(np.float64) - frame) ** 2) / 255**2 + 8 * len(r.payload) / pixels

    results = {}
    for steps in (0, 20):
        ic = InterCodec(updating_model, fast_analysis=False, refine_steps=steps)
        ctx, results[steps] = ic.intra_context(i.latent, q), []
        for t in (1, 2):
            r = ic.encode(twelve[t], twelve[t - 1], q, ctx)
            ctx = r.context
            results[steps].append(r)
    assert cost(results[20][0], twelve[1]) <= 1.01 * cost(results[0][0], twelve[1])
    assert results[20][0].payload != results[0][0].payload
    dec = SequenceDecoder(updating_model, 128, 64, "test")
    units = [FrameUnit(0, FRAME_I, q, i.payload, 0)] + [FrameUnit(t + 1, FRAME_PC, q, r.payload, 0)
                                                        for t, r in enumerate(results[20])]
    decoded = [dec.decode(u) for u in units]
    assert all(np.array_equal(a, b.recon) for a, b in zip(decoded[1:], results[20]))
    assert torch.equal(dec.context, results[20][-1].context)


class _Ready:
    """A picture that has arrived (what ``result()`` returns)."""

    def __init__(self, x):
        self.x = x

    def result(self):
        return self.x


@pytest.mark.parametrize("p", [0.0, 0.05, 0.5, 0.97, 1.0])
def test_skip_flags_round_trip_and_cost_what_they_estimate(p):
    from lvc.codec.skip import SkipFlags
    from lvc.entropy import coder

    g = np.random.default_rng(int(p * 100))
    mask = g.random((7, 11)) < p
    mask[3:] = mask[3:] | (g.random((4, 11)) < p)  # some row-to-row correlation
    flags, enc = SkipFlags(), coder.new_encoder()
    bits = flags.encode(enc, mask)
    payload = coder.finish(enc)
    assert np.array_equal(flags.decode(coder.new_decoder(payload), mask.shape), mask)
    assert bits <= len(payload) * 8 <= bits + 64


def test_skip_decision_copies_what_the_previous_picture_shows_and_codes_changes():
    """A block the previous picture already shows (moved by its vector) is skipped; a changed
    block is not, unless its bits are worth more than the error it leaves."""
    from lvc.codec.skip import ShownPicture, decide

    g = np.random.default_rng(0)
    prev = g.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    frame = np.roll(prev, -3, axis=1)  # moved left by 3 pixels: vector (+3, 0)
    frame[16:32, 32:48] = 255 - frame[16:32, 32:48]  # block (1, 2) changed
    mv = torch.zeros(4, 6, 2, dtype=torch.long)
    mv[..., 0] = 3
    shown = ShownPicture(_Ready(prev), prev)  # coded error so far: 0
    skip = decide(frame, shown, mv, 16, np.full((4, 6), 50.0), lmbda=0.05)
    assert not skip[1, 2] and not skip[:, 5].any()  # the right edge wrapped around in np.roll
    assert skip[:, :5].sum() == 4 * 5 - 1
    expensive = np.full((4, 6), 50.0)
    expensive[1, 2] = 1e9
    assert decide(frame, ShownPicture(_Ready(prev), prev), mv, 16, expensive, lmbda=0.05)[1, 2]


def test_skipped_blocks_show_the_previous_picture_moved():
    from lvc.codec.skip import SkippedPicture, moved_picture

    g = np.random.default_rng(1)
    prev = g.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    display = np.zeros_like(prev)
    mv = torch.tensor([[[2, -1], [0, 0], [-5, 7], [1, 1]]] * 3)  # (3, 4) blocks of 16
    skipped = np.array([[True, False, True, False]] * 3)
    out = SkippedPicture(_Ready(display), _Ready(prev), skipped, mv, 16).result()
    moved = moved_picture(prev, mv, 16)
    assert np.array_equal(moved[5, 3], prev[4, 5]) and np.array_equal(moved[0, 40], prev[7, 35])
    assert np.array_equal(out[:, :16], moved[:, :16]) and not out[:, 16:32].any()
    assert np.array_equal(out[:, 32:48], moved[:, 32:48]) and not out[:, 48:].any()


def test_skipped_blocks_keep_the_warped_context_and_decode_bit_exactly(updating_model, twelve, monkeypatch):
    from lvc.codec import skip

    q = 40000
    fc, ic = FrameCodec(updating_model), InterCodec(updating_model)
    i = fc.encode(twelve[0], q)
    ctx0 = ic.intra_context(i.latent, q)
    grid = (64 // 16, 128 // 16)
    patterns = {"some": np.indices(grid).sum(0) % 3 == 0, "all": np.ones(grid, bool)}
    out = {}
    for name, pattern in patterns.items():
        monkeypatch.setattr(skip, "decide", lambda *a, _p=pattern, **k: _p)
        shown = skip.ShownPicture(i.pending, twelve[0], ic.show(ctx0, 64, 128))
        out[name] = ic.encode(twelve[1], twelve[0], q, ctx0, shown)
    r, warped = out["some"], out["all"].context  # all skipped: the context is the warped one
    assert r.frame_type == FRAME_PS and np.array_equal(r.skipped, patterns["some"])
    plain = ic.encode(twelve[1], twelve[0], q, ctx0)
    assert len(out["all"].payload) < len(r.payload) < len(plain.payload)
    keep = torch.from_numpy(patterns["some"]).repeat_interleave(2, 0).repeat_interleave(2, 1)
    assert torch.equal(r.context[..., keep], warped[..., keep])
    assert not torch.equal(plain.context[..., keep], warped[..., keep])
    pixels = np.repeat(np.repeat(patterns["some"], 16, 0), 16, 1)
    assert np.array_equal(out["all"].recon[pixels], r.recon[pixels])  # copies of the I-frame's picture
    dec = SequenceDecoder(updating_model, 128, 64, "test")
    dec.decode(FrameUnit(0, FRAME_I, q, i.payload, 0))
    out = dec.decode(FrameUnit(1, FRAME_PS, q, r.payload, 0))
    assert np.array_equal(out, r.recon) and torch.equal(dec.context, r.context)
    dec.decode(FrameUnit(0, FRAME_I, q, i.payload, 0))
    with pytest.raises(BitstreamError, match="frame 1"):
        dec.decode(FrameUnit(1, FRAME_PS, q, r.payload[: len(r.payload) // 2], 0))


def test_a_frame_of_copies_is_the_full_paths_result_without_its_networks(updating_model, twelve, monkeypatch):
    """Every block skipped: the context is the warped one and the picture the previous one
    moved, exactly what the update (kept nowhere) and the display (shown nowhere) would give;
    neither runs, in the encoder or the decoder."""
    from lvc.codec import skip
    from lvc.models.conditional import CONTEXT_SCALE
    from lvc.models.frozen import QUALITY_MAX

    q = 40000
    fc, ic = FrameCodec(updating_model), InterCodec(updating_model)
    i = fc.encode(twelve[0], q)
    ctx0 = ic.intra_context(i.latent, q)
    mv = torch.zeros(4, 8, 2, dtype=torch.long)
    mv[..., 0], mv[1:, :, 1] = 3 * ic.subpel, -ic.subpel  # (vectors that move pixels and context)
    monkeypatch.setattr(ic.motion, "vectors", lambda *a: Found(mv))
    monkeypatch.setattr(skip, "decide", lambda *a, **k: np.ones((4, 8), bool))
    ran = []
    monkeypatch.setattr(ic.display, "submit", lambda *a, **k: ran.append("display"))
    update = type(ic.p).update
    monkeypatch.setattr(type(ic.p), "update", lambda *a, **k: ran.append("update"))
    r = ic.encode(twelve[1], twelve[0], q, ctx0, skip.ShownPicture(i.pending, twelve[0]))
    assert r.frame_type == FRAME_PS and r.skipped.all() and not ran
    dec = SequenceDecoder(updating_model, 128, 64, "test")
    monkeypatch.undo()
    dec.decode(FrameUnit(0, FRAME_I, q, i.payload, 0))
    monkeypatch.setattr(type(ic.p), "update", lambda *a, **k: ran.append("update"))
    shown = dec.decode(FrameUnit(1, FRAME_PS, q, r.payload, 0))
    monkeypatch.undo()
    assert not ran and np.array_equal(shown, r.recon) and torch.equal(dec.context, r.context)
    ctx_w = warp(ctx0, mv[None], 16, CONTEXT_SCALE, ic.subpel)
    everywhere = torch.ones(ctx_w.shape[-2:], dtype=torch.bool)
    full = update(ic.p, torch.zeros(1, 8, 4, 8, dtype=torch.long), ctx_w, q, QUALITY_MAX, everywhere)
    assert torch.equal(r.context, ctx_w) and torch.equal(full, ctx_w)
    assert np.array_equal(r.recon, skip.moved_picture(i.recon, mv, 16, ic.subpel))


def test_a_motion_only_frame_is_a_frame_of_copies_without_flags_or_side_information(updating_model, twelve,
                                                                                  monkeypatch):
    """FRAME_PM: the same context and picture as a FRAME_PS frame of copies, from the motion
    alone (a shorter payload); a payload with more or less than the motion is refused."""
    from lvc.codec import skip

    q = 40000
    fc, ic = FrameCodec(updating_model), InterCodec(updating_model)
    i = fc.encode(twelve[0], q)
    ctx0 = ic.intra_context(i.latent, q)
    mv = torch.zeros(4, 8, 2, dtype=torch.long)
    mv[..., 0], mv[1:, :, 1] = 3 * ic.subpel, -ic.subpel
    monkeypatch.setattr(ic.motion, "vectors", lambda *a: Found(mv))
    shown = skip.ShownPicture(i.pending, twelve[0])
    ps = ic.encode(twelve[1], twelve[0], q, ctx0, shown, i.pending, copies=True)
    pm = ic.encode(twelve[1], twelve[0], q, ctx0, shown, i.pending, copies=True, motion_only=True)
    assert (ps.frame_type, pm.frame_type) == (FRAME_PS, FRAME_PM) and len(pm.payload) < len(ps.payload)
    assert np.array_equal(pm.recon, ps.recon) and torch.equal(pm.context, ps.context)
    assert pm.estimated_bits <= 8 * len(pm.payload)
    dec = SequenceDecoder(updating_model, 128, 64, "test")
    dec.decode(FrameUnit(0, FRAME_I, q, i.payload, 0))
    out = dec.decode(FrameUnit(1, FRAME_PM, q, pm.payload, 0))
    assert np.array_equal(out, pm.recon) and torch.equal(dec.context, pm.context)
    for bad in (ps.payload, pm.payload[:4], pm.payload + bytes(4), pm.payload + b"\xff" * 4):
        dec = SequenceDecoder(updating_model, 128, 64, "test")
        dec.decode(FrameUnit(0, FRAME_I, q, i.payload, 0))
        with pytest.raises(BitstreamError, match="does not decode"):
            dec.decode(FrameUnit(1, FRAME_PM, q, bad, 0))


def test_frames_after_skipped_ones_decode_the_same(inter_model_file, inter_model, twelve, tmp_path):
    """PS frames copy pixels from the previous picture, so a decoder that skips ahead
    (``advance``: no synthesis asked for) must still show the later frames exactly."""
    from lvc.bitstream.container import LvcReader

    src, out = tmp_path / "twelve.y4m", tmp_path / "a.lvc"
    write_y4m(src, twelve)
    api.encode(src, out, quality=0.5, model=str(inter_model_file), progress=False, colour="rgb")
    assert {"PM", "PQ"} & {f["type"] for f in api.info(out)["frames"]}  # (copies of the previous picture)
    full = list(api.iter_decode(out, model=str(inter_model_file)))
    with LvcReader(out) as r:
        dec = SequenceDecoder(inter_model, 128, 64, "test")
        later = [dec.decode(u) if u.index % 4 == 3 else dec.advance(u) for u in r.units()]
    assert all(np.array_equal(later[i], full[i]) for i in range(3, 12, 4))


@pytest.mark.parametrize("preset", ["medium", "slow"])
def test_without_the_layer_only_slow_skips_in_the_first_pc_frame_after_an_intra_latent(inter_model_file, twelve,
                                                                                     tmp_path, preset):
    src, out = tmp_path / "twelve.y4m", tmp_path / "a.lvc"
    write_y4m(src, twelve)
    api.encode(src, out, quality=0.5, model=str(inter_model_file), progress=False, preset=preset, refine=0,
               residual=0)
    types = [f["type"] for f in api.info(out)["frames"]]
    first = [t for before, t in zip(types, types[1:]) if before in ("I", "P")]
    assert "PS" in types
    assert ("PS" in first) == (preset == "slow"), types


@pytest.mark.parametrize("preset", ["fast", "medium"])
def test_with_the_layer_pc_frames_copy_every_block_without_the_learned_networks(inter_model_file, inter_model,
                                                                               twelve, tmp_path, monkeypatch,
                                                                               preset):
    """COPY_FRAMES: neither the encoder nor the decoder runs the P prior (nor the analysis,
    update or display), and the file still decodes to the encoder's pictures."""
    from lvc.models.inter_frozen import FrozenInter

    def refuse(*args, **kwargs):
        raise AssertionError("a frame of copies ran the P prior")

    src, out = tmp_path / "twelve.y4m", tmp_path / "a.lvc"
    write_y4m(src, twelve)
    monkeypatch.setattr(FrozenInter, "prior", refuse)
    api.encode(src, out, quality=0.5, model=str(inter_model_file), progress=False, preset=preset)
    types = [f["type"] for f in api.info(out)["frames"]]
    assert types[0] in ("I", "IL") and {"PM", "PQ"} & set(types) and not {"PC", "PS"} & set(types), types
    decoded = list(api.iter_decode(out, model=str(inter_model_file), planes=None))
    assert len(decoded) == 12
    monkeypatch.undo()
    if preset == "medium":  # (encoder_recons codes at the default preset)
        assert all(same_picture(a, b) for a, b in zip(decoded, encoder_recons(inter_model, src, 0.5)))
