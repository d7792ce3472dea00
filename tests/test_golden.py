"""A committed .lvc keeps decoding to the committed frames (bitstream compatibility)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import DATA
from make_golden import GOLDEN, digests

from lvc.codec import api


@pytest.mark.parametrize("stem", sorted(GOLDEN))
def test_golden_stream_decodes_to_committed_checksums(stem):
    """Latents pin the format (exact on any machine); frames pin this machine type's synthesis.
    ``golden-ctx`` pins the checkerboard (context prior) and P-frame correction semantics."""
    expected = json.loads((DATA / f"{stem}.json").read_text())
    assert digests(DATA / f"{stem}.lvc", DATA / GOLDEN[stem]) == expected


def test_golden_stream_header():
    info = api.info(DATA / "golden.lvc")
    assert (info["width"], info["height"], info["frame_count"], info["model"]) == (64, 48, 6, "lvc-test-tiny")


def test_golden_grey_stream_pins_grey_frames_on_any_machine():
    """The grey fixture's flags, version and shown pictures hold whatever the synthesis rounds
    to: format 1.1, four grey frames then two colour ones, and the grey ones shown R = G = B."""
    from lvc.bitstream.container import LvcReader
    from lvc.codec.grey import is_grey

    stream, model = DATA / "golden-grey.lvc", str(DATA / GOLDEN["golden-grey"])
    with LvcReader(stream) as r:
        assert r.header.version == (1, 1)
        assert [u.grey for u in r.units()] == [True] * 4 + [False] * 2
    shown = list(api.iter_decode(stream, model=model))
    assert [is_grey(f) for f in shown] == [True] * 4 + [False] * 2


def test_grey_flag_in_a_1_0_stream_is_refused(tmp_path):
    """A 1.0 stream cannot carry grey frames: a set bit 7 there is corruption, not a grey frame."""
    from lvc.bitstream.container import LvcReader
    from lvc.errors import BitstreamError

    data = bytearray((DATA / "golden.lvc").read_bytes())
    with LvcReader(DATA / "golden.lvc") as r:
        assert r.header.version == (1, 0)
        start = len(data) - sum(u.size for u in r.units())  # the first frame unit's first byte
    data[start] |= 0x80
    bad = tmp_path / "bad.lvc"
    bad.write_bytes(bytes(data))
    with LvcReader(bad) as r, pytest.raises(BitstreamError, match="not valid in a format 1.0 stream"):
        list(r.units())


def test_fast_synthesis_stays_close_to_the_reference():
    """Where bfloat16 is native, conditional frames' displays take it: within 40 dB of the
    float32 reference pictures (the golden frames), and decoding still equals encoding (the
    round-trip tests run on that path); I-frame pictures stay float32."""
    from make_golden import reference_synthesis

    from lvc.codec.synthesis import bf16_synthesis

    stream, model = DATA / "golden-skip.lvc", str(DATA / GOLDEN["golden-skip"])
    fast = list(api.iter_decode(stream, model=model))
    active = bf16_synthesis()
    with reference_synthesis():
        assert not bf16_synthesis()
        ref = list(api.iter_decode(stream, model=model))
    mse = [float(np.mean((a.astype(np.float64) - b) ** 2)) for a, b in zip(fast, ref, strict=True)]
    assert all(m == 0 or 10 * np.log10(255**2 / m) > 40 for m in mse)
    assert mse[0] == 0
    assert any(m > 0 for m in mse) == active  # the fast path is taken exactly where it is on


def test_golden_residual_stream_pins_its_layers():
    """The residual fixture is format 1.3 and every frame carries a layer; its pictures are
    pinned by the digests above (the layers' pixels exactly, in the latent digest)."""
    from lvc.bitstream.container import LvcReader

    with LvcReader(DATA / "golden-residual.lvc") as r:
        assert r.header.version == (1, 3)
        assert [u.residual is not None for u in r.units()] == [True] * 6


def test_golden_yuv_stream_is_colour_format_1():
    """The colour format 1 fixture: format 1.4, shown as planes (grey frames with chroma at
    128), layers on most frames; its planes are pinned by the digests above."""
    from lvc.bitstream.container import LvcReader

    stream = DATA / "golden-yuv.lvc"
    with LvcReader(stream) as r:
        assert r.header.version == (1, 4) and r.header.colour_format == 1
        units = list(r.units())
    assert [u.grey for u in units] == [True] * 2 + [False] * 4
    assert sum(u.residual is not None for u in units) >= 4
    from lvc.codec.residual import ResidualCoder

    for u in units[:2]:  # grey frames: the encoder codes no chroma residual (none is shown)
        if u.residual is not None:
            assert not ResidualCoder().decode(u.residual, 48, 64, "golden", 1).coded[1].any()
    shown = list(api.iter_decode(stream, model=str(DATA / GOLDEN["golden-yuv"]), planes=None))
    assert all(isinstance(f, tuple) and f[0].shape == (48, 64) and f[1].shape == (24, 32) for f in shown)
    assert all((f[1] == 128).all() and (f[2] == 128).all() for f in shown[:2])
    assert not all((f[1] == 128).all() for f in shown[2:])


def test_golden_deblock_stream_filters_luma_and_chroma():
    """The deblocking fixture: format 1.5, nonzero luma and chroma strengths; the shown planes
    (pinned by its digests) differ from the same layers unfiltered."""
    from dataclasses import replace

    from lvc.bitstream.container import LvcReader
    from lvc.codec.residual import ResidualCoder

    stream = DATA / "golden-deblock.lvc"
    with LvcReader(stream) as r:
        assert r.header.version == (1, 5) and r.header.colour_format == 1
        layers = [ResidualCoder().decode(u.residual, 48, 64, "golden", 1) for u in r.units() if u.residual]
    assert any(layer.deblock[0] for layer in layers) and any(layer.deblock[1] for layer in layers)
    base = tuple(np.full(s, 512, dtype=np.int32) for s in ((48, 64), (24, 32), (24, 32)))
    assert any(not np.array_equal(a, b) for layer in layers if any(layer.deblock)
               for a, b in zip(layer.delta(base, 48, 64), replace(layer, deblock=(0, 0)).delta(base, 48, 64),
                               strict=True))


def _copies(stem: str) -> list:
    """The decoded copies (lvc.codec.copies.Copies) of a fixture's PQ frames (64x48)."""
    from lvc.bitstream.container import FRAME_PQ, LvcReader
    from lvc.codec.inter import InterCodec, mv_from_residuals
    from lvc.entropy import coder
    from lvc.models.registry import load_model

    ic = InterCodec(load_model(str(DATA / GOLDEN[stem])))
    out = []
    with LvcReader(DATA / f"{stem}.lvc") as r:
        assert r.header.version == (1, 6)
        for u in r.units():
            if u.frame_type == FRAME_PQ:
                dec = coder.new_decoder(u.payload)
                f = ic.copies.read_filter(dec, True, ic.subpel)
                row = int(ic.mv_coder.decode(dec, np.array([ic.copies.choice_row]))[0])
                shape = ic._shapes(48, 64)[2]  # (the padded frame's blocks)
                res = ic.mv_coder.decode(dec, np.full(np.prod(shape), row)).reshape(shape)
                out.append(ic.copies.read_rest(dec, mv_from_residuals(torch.from_numpy(res)), f, True))
    return out


def test_golden_quarters_stream_quarters_blocks():
    """The quartered-blocks fixture (whole pixels): format 1.6, PQ frames with quartered
    blocks whose quarters' vectors differ from their block's (the copies its digests pin)."""
    copies = _copies("golden-quarters")
    assert len(copies) >= 2
    for c in copies:
        assert c.split.any() and (c.quarters != c.mv.numpy()[c.split][:, None, None]).any()


def test_golden_sharp_stream_copies_fractional_quarters_through_filters_per_block():
    """The quarter-pixel fixture: PQ frames with fractional quarters, and frames whose
    filter is chosen per block (some blocks sharp, some bilinear)."""
    from lvc.codec.copies import PER_BLOCK

    copies = _copies("golden-sharp")
    assert any(c.split.any() and (c.quarters % 4).any() for c in copies)
    per_block = [c for c in copies if c.filter == PER_BLOCK]
    assert per_block and all(c.sharp_blocks.any() and not c.sharp_blocks.all() for c in per_block)


def test_golden_intra_stream_predicts_macroblocks_in_every_mode():
    """The intra fixture: format 1.7, layers with intra macroblocks, every mode used (the
    shown planes its digests pin come from each prediction)."""
    from lvc.bitstream.container import LvcReader
    from lvc.codec.intra import MODES
    from lvc.codec.residual import ResidualCoder

    with LvcReader(DATA / "golden-intra.lvc") as r:
        assert r.header.version == (1, 7) and r.header.colour_format == 1
        layers = [ResidualCoder().decode(u.residual, 48, 64, "golden", 1, u.intra) for u in r.units() if u.residual]
    modes = np.concatenate([x.modes.ravel() for x in layers if x.has_intra])
    assert set(modes.tolist()) == set(range(MODES))


def test_golden_small_stream_codes_luma_blocks_as_4x4_transforms():
    """The 4x4 transforms fixture: format 1.8, layers with some coded luma blocks as four 4x4
    transforms and others as one 8x8 (the shown planes its digests pin come from both)."""
    from lvc.bitstream.container import LvcReader
    from lvc.codec.residual import ResidualCoder

    with LvcReader(DATA / "golden-small.lvc") as r:
        assert r.header.version == (1, 8) and r.header.colour_format == 1
        layers = [ResidualCoder().decode(u.residual, 48, 64, "golden", 1, u.intra, u.small)
                  for u in r.units() if u.residual]
    small = [x for x in layers if x.has_small]
    assert len(small) >= 2 and all((x.coded[0] & ~x.small).any() for x in small)
