"""Quartered blocks (frame type ``FRAME_PQ``, :mod:`lvc.codec.partition`): the field, the
syntax's round trip, the encoder's choice, exact decoding and what older streams may hold."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import claiming_minor, write_y4m
from torch.nn import functional as F

from lvc.bitstream.container import FRAME_PQ, FrameUnit, LvcReader
from lvc.codec import api, partition
from lvc.codec.partition import QuarterCoder, block_quarters, quarter_field
from lvc.codec.sharp import sharp_moved
from lvc.codec.skip import block_sse, moved_picture
from lvc.entropy import coder
from lvc.errors import BitstreamError
from lvc.models.inter_frozen import MV_SCALES, mv_table


def _quarter_coder() -> tuple[QuarterCoder, coder.TableCoder]:
    tables = mv_table(4)
    tc = coder.TableCoder(tables)
    return QuarterCoder(tc, tables, len(MV_SCALES), len(MV_SCALES)), tc


def test_a_quartered_field_keeps_the_blocks_vectors_except_where_quartered():
    g = np.random.default_rng(0)
    mv = torch.from_numpy(g.integers(-9, 9, (3, 4, 2)))
    split = np.zeros((3, 4), bool)
    assert torch.equal(quarter_field(mv, split, np.zeros((0, 2, 2, 2), np.int64))[::2, ::2], mv)
    split[0, 1] = split[2, 3] = True
    quarters = g.integers(-20, 20, (2, 2, 2, 2))
    fine = quarter_field(mv, split, quarters)
    assert fine.shape == (6, 8, 2)
    assert np.array_equal(block_quarters(fine, split), quarters)
    assert np.array_equal(fine[0:2, 2:4].numpy(), quarters[0]) and np.array_equal(fine[4:6, 6:8].numpy(), quarters[1])
    whole = np.repeat(np.repeat(mv.numpy(), 2, 0), 2, 1)
    keep = ~np.repeat(np.repeat(split, 2, 0), 2, 1)
    assert np.array_equal(fine.numpy()[keep], whole[keep])


@pytest.mark.parametrize("seed", range(4))
def test_quarters_round_trip_and_cost_what_they_estimate(seed):
    g = np.random.default_rng(seed)
    qc, _ = _quarter_coder()
    mv = torch.from_numpy(g.integers(-30, 30, (5, 7, 2)))
    split = g.random((5, 7)) < [0.0, 0.1, 0.5, 0.9][seed]
    quarters = mv.numpy()[split][:, None, None, :] + g.integers(-6, 7, (int(split.sum()), 2, 2, 2))
    enc = coder.new_encoder()
    bits = qc.encode(enc, mv, split, quarters)
    words = coder.finish(enc)
    assert bits <= 8 * len(words) <= bits + 64
    got_split, got, levels, row = qc.decode(coder.new_decoder(words), mv)
    assert np.array_equal(got_split, split) and np.array_equal(got, quarters)
    again = coder.new_encoder()  # the decoded choices code the same words (the decoder's exactness check)
    qc.encode(again, mv, got_split, got, levels, row)
    assert coder.finish(again) == words


def test_the_choice_quarters_only_blocks_whose_copy_gets_much_better():
    qc, _ = _quarter_coder()
    g = np.random.default_rng(1)
    frame = g.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    mv = torch.zeros(2, 3, 2, dtype=torch.long)
    fine = torch.zeros(4, 6, 2, dtype=torch.long)
    fine[0, 2] = torch.tensor([4, -4])  # block (0, 1) has a quarter of its own, and so does (1, 2)
    fine[3, 5] = torch.tensor([8, 0])
    moved = frame.copy()
    moved[:16, 16:32] = 0  # the block's copy is far off; quartered, it is the frame
    moved[16:, 32:] ^= 1  # here quartering saves almost nothing
    moved_q = moved.copy()
    moved_q[:16, 16:32] = frame[:16, 16:32]
    split = qc.choose(frame, moved, moved_q, mv, fine, lmbda=0.01)
    assert split.tolist() == [[False, True, False], [False, False, False]]
    assert not qc.choose(frame, moved, moved_q, mv, torch.zeros(4, 6, 2, dtype=torch.long), 0.01).any()


@pytest.mark.parametrize("sharp", [False, True])
def test_copies_by_quarters_are_the_blocks_copies_where_a_block_is_whole(sharp):
    """The encoder composes a quartered picture from the two copies it made for the choice."""
    g = np.random.default_rng(2)
    img = g.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    mv = torch.from_numpy(g.integers(-9, 9, (3, 4, 2)))
    split = g.random((3, 4)) < 0.5
    fine = quarter_field(mv, split, g.integers(-9, 9, (int(split.sum()), 2, 2, 2)))

    def copy(field, block):
        return sharp_moved(img, field.numpy(), block, 4) if sharp else moved_picture(img, field, block, 4)

    where = np.repeat(np.repeat(split, 16, 0), 16, 1)[:40, :56, None]
    full = quarter_field(mv, np.ones_like(split), block_quarters(fine, np.ones_like(split)))
    assert np.array_equal(copy(fine, 8), np.where(where, copy(full, 8), copy(mv, 16)))


def _coded(quarter_file, twelve, tmp_path, monkeypatch):
    monkeypatch.setattr(partition, "SPLIT_COST", 0.0)  # quarter every block whose quarters differ
    src, out = tmp_path / "twelve.y4m", tmp_path / "twelve.lvc"
    write_y4m(src, twelve)
    r = api.encode(src, out, quality=0.5, model=str(quarter_file), progress=False, ms_ssim=False,
                   intra_blocks=False, small_transforms=False)  # (format 1.6: the quartered blocks' own)
    return src, out, r


def test_quartered_frames_decode_to_the_encoders_pictures(quarter_file, twelve, tmp_path, monkeypatch):
    src, out, r = _coded(quarter_file, twelve, tmp_path, monkeypatch)
    info = api.info(out)
    assert "PQ" in [f["type"] for f in info["frames"]] and info["version"] == "1.6"
    assert api.decode(out, reference=src, model=str(quarter_file)).sha256 == r.recon_sha256


def test_a_quartered_frame_with_a_word_more_or_less_or_in_a_1_5_stream_is_refused(quarter_file, twelve, tmp_path,
                                                                                  monkeypatch):
    from lvc.codec.decoder import SequenceDecoder
    from lvc.models.registry import load_model

    src, out, _ = _coded(quarter_file, twelve, tmp_path, monkeypatch)
    units = list(LvcReader(out).units())
    k = next(i for i, u in enumerate(units) if u.frame_type == FRAME_PQ)
    model = load_model(str(quarter_file))
    for bad in (units[k].payload[:-4], units[k].payload + bytes(4)):
        dec = SequenceDecoder(model, 128, 64, "test", colour_format=LvcReader(out).header.colour_format)
        for u in units[:k]:
            dec.decode(u)
        with pytest.raises(BitstreamError, match="does not decode"):
            dec.decode(FrameUnit(k, FRAME_PQ, units[k].quality, bad, 0, residual=units[k].residual))
    older = tmp_path / "older.lvc"
    claiming_minor(out, older, 5)
    with pytest.raises(BitstreamError, match="frame type 5 is not valid in a format 1.5 stream"):
        list(LvcReader(older).units())


def test_medium_searches_quarters_and_polishes_its_copies_and_fast_does_neither(quarter_file, twelve, tmp_path,
                                                                               monkeypatch):
    from lvc.codec import inter

    called = []
    rows, polish = partition.QuarterSearch.rows, inter.polish
    monkeypatch.setattr(partition.QuarterSearch, "rows", lambda *a: called.append("search") or rows(*a))
    monkeypatch.setattr(inter, "polish", lambda *a: called.append("polish") or polish(*a))
    src = tmp_path / "twelve.y4m"
    write_y4m(src, twelve)
    for preset in ("fast", "medium"):
        called.clear()
        api.encode(src, tmp_path / f"{preset}.lvc", quality=0.5, model=str(quarter_file), progress=False,
                   preset=preset, ms_ssim=False)
        assert set(called) == ({"search", "polish"} if preset == "medium" else set())


def test_the_quarters_search_finds_a_quarters_own_motion():
    """A block whose top-left quarter moves otherwise than the rest: the search, starting
    from the block's vector, finds that quarter's shift to the quarter pixel."""
    g = torch.Generator().manual_seed(0)
    ref = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 48, 64, generator=g) * 255, 3, 1, 1)
    cur = ref.roll((1, -2), (2, 3)).clone()  # everything moved by (-2, +1) whole pixels ...
    cur[..., 16:24, 16:24] = ref[..., 16:24, 17:25]  # ... but this quarter by (+1, 0)
    mv = torch.full((3, 4, 2), 0, dtype=torch.long)
    mv[..., 0], mv[..., 1] = 8, -4  # (the content's vector, in quarter pixels: ref at x + 2, y - 1)
    fine = partition.search_quarters(ref, cur, mv, 16, 4, rate_weight=0.0)
    assert fine.shape == (6, 8, 2)
    assert fine[2, 2].tolist() == [4, 0]
    assert fine[3, 3].tolist() == [8, -4] and fine[4, 5].tolist() == [8, -4]


def test_a_mask_copies_its_blocks_sharp_and_the_rest_bilinearly():
    g = np.random.default_rng(3)
    img = g.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    mv = torch.from_numpy(g.integers(-9, 9, (3, 4, 2)))
    mask = g.random((3, 4)) < 0.5
    where = np.repeat(np.repeat(mask, 16, 0), 16, 1)[:40, :56, None]
    expected = np.where(where, sharp_moved(img, mv.numpy(), 16, 4), moved_picture(img, mv, 16, 4))
    assert np.array_equal(moved_picture(img, mv, 16, 4, sharp=mask), expected)


def test_filters_chosen_per_block_decode_to_the_encoders_picture(quarter_file, twelve, monkeypatch):
    """A frame whose left half is the previous picture's sharp copy and right half its
    bilinear one: the encoder copies the halves through their own filters (filter 2, PQ;
    where the two copies differ by less than a flag's bits, either), nearer the frame than
    either filter alone, and the decoder shows that picture. Filter 2 in a PM frame is refused."""
    from lvc.codec import skip
    from lvc.codec.copies import PER_BLOCK
    from lvc.codec.decoder import SequenceDecoder
    from lvc.codec.frame import FrameCodec
    from lvc.codec.inter import InterCodec
    from lvc.codec.lookahead import Found
    from lvc.models.registry import load_model

    model, q = load_model(str(quarter_file)), 40000
    fc, ic = FrameCodec(model), InterCodec(model)
    ic.quarter_search = True
    i = fc.encode(twelve[0], q)
    mv = torch.zeros(4, 8, 2, dtype=torch.long)
    mv[..., 0], mv[..., 1] = 5, -3  # fractional in both directions
    fine = mv.repeat_interleave(2, 0).repeat_interleave(2, 1)  # (no quarter of its own)
    monkeypatch.setattr(ic.motion, "vectors", lambda *a: Found(mv, None, fine))
    half = np.zeros((4, 8), bool)
    half[:, :4] = True
    frame = moved_picture(twelve[0], mv, 16, 4, sharp=half)

    class Shown:
        def result(self):
            return twelve[0]

    r = ic.encode(frame, twelve[0], q, ic.intra_context(i.latent, q), skip.ShownPicture(Shown(), twelve[0]), None,
                  copies=True, motion_only=True)
    assert r.frame_type == FRAME_PQ and ic.copies.read_filter(coder.new_decoder(r.payload), True, 4) == PER_BLOCK

    def sse(a):
        return int(((a.astype(np.int64) - frame) ** 2).sum())

    single = min(sse(moved_picture(twelve[0], mv, 16, 4, sharp=s)) for s in (False, True))
    assert sse(r.recon) < single / 4

    def decoder():
        dec = SequenceDecoder(model, 128, 64, "test")
        dec.decode(FrameUnit(0, 0, q, i.payload, 0))
        dec.picture = Shown()
        return dec

    assert np.array_equal(decoder().decode(FrameUnit(1, FRAME_PQ, q, r.payload, 0)), r.recon)
    with pytest.raises(BitstreamError, match="motion filter out of range"):
        decoder().decode(FrameUnit(1, 4, q, r.payload, 0))  # (FRAME_PM: filters 0 and 1 only)


def test_polishing_moves_quarters_a_step_onto_their_content():
    """A frame that is the reference moved by a quarter pixel (bilinearly, as copies are
    made): quarters and blocks starting at zero take that step, the only one whose copy
    is exact."""
    from lvc.codec.motion import phase_planes
    from lvc.codec.picture_motion import polish

    g = torch.Generator().manual_seed(1)
    ref = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 64, 64, generator=g) * 255, 3, 1, 1).round()
    cur = phase_planes(ref, 4)[:, 1:2]  # (x + 1/4, y) everywhere
    mv = torch.zeros(4, 4, 2, dtype=torch.long)
    fine = partition.polish_quarters(ref, cur, mv, torch.zeros(8, 8, 2, dtype=torch.long), 16, 4, rate_weight=0.0)
    assert (fine[..., 0] == 1).all() and (fine[..., 1] == 0).all()
    picture = ref[0, 0].numpy().astype(np.uint8)[..., None].repeat(3, 2)
    frame = cur[0, 0].round().clamp(0, 255).numpy().astype(np.uint8)[..., None].repeat(3, 2)
    new, quarters = polish(picture, frame, mv, torch.zeros(8, 8, 2, dtype=torch.long), 16, 4, rate_weight=0.0)
    assert (new[..., 0] == 1).all() and (new[..., 1] == 0).all()
    assert torch.equal(quarters, new.repeat_interleave(2, 0).repeat_interleave(2, 1))


def test_the_quarters_search_in_bands_gives_the_whole_search(twelve):
    """Bands of block rows searched apart, in any order, give the whole frame's vectors:
    the lookahead and the coding thread share a frame's search by bands."""
    from lvc.codec.frame import _pad
    from lvc.codec.motion import estimate_motion, frame_luma

    ref, cur = (_pad(frame_luma(f)) for f in (twelve[0], twelve[3]))
    mv = estimate_motion(ref, cur, 16, rate_weight=20.0, frac=4)[0]
    search = partition.QuarterSearch(ref, cur, mv, 16, 4, 20.0)
    hb = mv.shape[0]
    whole = search.rows(0, hb)
    for cuts in ([0, 1, hb], [0, hb - 1, hb], list(range(hb + 1))):
        bands = [search.rows(a, b) for a, b in reversed(list(zip(cuts[:-1], cuts[1:], strict=True)))]
        assert torch.equal(torch.cat(bands[::-1]), whole)
    assert whole.shape == (2 * hb, 2 * mv.shape[1], 2)


def test_block_errors_are_torch_means_pooled():
    """block_sse's channel mean (the sum over 3) is torch.mean's, bit for bit, for every
    possible sum of three squared 8-bit differences; then pooled per 16x16 block."""
    sums = torch.arange(0, 3 * 255 ** 2 + 1, dtype=torch.float32)
    assert torch.equal(torch.stack([sums, 0 * sums, 0 * sums], 1).mean(1), sums / 3)
    rng = np.random.default_rng(7)
    a, b = (rng.integers(0, 256, (37, 50, 3), dtype=np.uint8) for _ in range(2))
    d = torch.from_numpy((a.astype(np.float32) - b.astype(np.float32)) ** 2).mean(2)
    want = F.avg_pool2d(F.pad(d[None, None], (0, 14, 0, 11)), 16)[0, 0] * 256
    assert np.array_equal(block_sse(a, b, (3, 4)), want.numpy())
