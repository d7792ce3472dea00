"""Intra macroblocks in the residual layer (lvc.codec.intra, format 1.7): predictions, the
section's round trip, streams that decode to the encoder's pictures, refusal of bad input."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from conftest import DATA, claiming_minor, write_y4m

from lvc.bitstream import syntax
from lvc.bitstream.container import LvcReader, pack_frame
from lvc.bitstream.syntax import GREY_FLAG, INTRA_FLAG, RESIDUAL_FLAG
from lvc.codec import api, colour, intra
from lvc.codec.residual import ResidualCoder
from lvc.codec.residual_rdo import ResidualEncoder
from lvc.errors import BitstreamError

MODEL = str(DATA / "tiny-inter.lvcm")


def test_predictions_follow_their_neighbours():
    rng = np.random.default_rng(0)
    top, left = rng.integers(0, 1024, 8), rng.integers(0, 1024, 8)
    p = intra.predictions(top, left)
    assert p.shape == (intra.MODES, 8, 8) and p.dtype == np.int64
    assert np.all(p[intra.VERTICAL] == top[None, :]) and np.all(p[intra.HORIZONTAL] == left[:, None])
    assert np.all(p[intra.DC] == (top.sum() + left.sum() + 8) >> 4)
    flat = intra.predictions(np.full(8, 300), np.full(8, 300))
    assert np.all(flat == 300)  # every mode keeps a flat area flat
    # planar blends toward the top row's last sample on the right and the column's on the bottom
    ramp = intra.predict(np.arange(8) * 16, np.zeros(8, np.int64), intra.PLANAR)
    assert np.all(np.diff(ramp, axis=1) >= 0)
    batch = intra.predictions(np.stack([top, left]), np.stack([left, top]))
    assert np.array_equal(batch[0], p)  # batched as single


def _pair(h: int = 64, w: int = 96) -> tuple[np.ndarray, np.ndarray, tuple]:
    """A smooth frame and a picture of it whose copy failed in a 32x32 patch (filled with
    a neighbour's content): spatial prediction from the patch's edges beats the copy."""
    yy, xx = np.mgrid[0:h, 0:w]
    frame = np.stack([60 + xx * 1.5, 80 + yy * 1.2 + 20 * np.sin(xx / 9), 200 - xx - yy / 2], -1)
    frame = np.clip(frame, 0, 255).astype(np.uint8)
    picture = frame.copy()
    picture[16:48, 32:64] = np.flip(frame[16:48, 32:64], axis=(0, 1))
    return frame, picture, colour.shown_planes(frame)


@pytest.mark.parametrize("size", [(64, 96), (61, 93)])
def test_intra_macroblocks_round_trip_through_the_section(size):
    """The decoder's composition equals the encoder's sums, also where the frame ends inside
    a macroblock (61x93: luma blocks past the picture, macroblocks past the luma blocks)."""
    frame, picture, planes = _pair(*size)
    section, bits, r = ResidualEncoder().encode(frame, picture, 0.05, planes=planes)
    assert r.has_intra and r.modes.shape == (int(r.intra.sum()), intra.LUMA_MODES + 1)
    h, w = frame.shape[:2]
    back = ResidualCoder().decode(section, h, w, "test", r.colour_format, with_intra=True, with_small=r.has_small)
    assert np.array_equal(back.intra, r.intra) and np.array_equal(back.modes, r.modes)
    assert all(np.array_equal(a, b) for a, b in zip(back.coeffs, r.coeffs, strict=True))
    base = colour.quarter_yuv(picture)
    assert all(np.array_equal(a, b) for a, b in zip(back.delta(base, h, w), r.delta(base, h, w), strict=True))
    # the intra layer brings the picture nearer the frame than the layer without intra blocks
    plain = ResidualEncoder(intra_penalty=None).encode(frame, picture, 0.05, planes=planes)
    err = [np.mean((colour.rounded_planes(tuple(b + d for b, d in zip(base, x.delta(base, h, w), strict=True)))[0]
                    .astype(float) - planes[0]) ** 2) for x in (r, plain[2])]
    assert err[0] < err[1] or len(section) < len(plain[0])
    assert bits - 1 <= 8 * len(section) <= bits + 64  # the range coder's bytes against the information


def test_a_section_read_with_or_without_its_intra_part_fails_cleanly():
    frame, picture, planes = _pair()
    with_intra, _, r = ResidualEncoder().encode(frame, picture, 0.05, planes=planes)
    assert r.has_intra
    with pytest.raises(BitstreamError, match="residual layer does not decode"):
        ResidualCoder().decode(with_intra, *frame.shape[:2], "test", r.colour_format, with_intra=False)
    with pytest.raises(BitstreamError, match="colour format 0"):
        ResidualCoder().decode(with_intra, *frame.shape[:2], "test", 0, with_intra=True)


def _clip(tmp_path, h: int = 64, w: int = 96):
    """Frames where a patterned object appears over a smooth moving background: its
    first picture cannot be copied from anywhere."""
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for t in range(6):
        f = np.stack([80 + (xx + 2 * t) * 1.2, 90 + yy, 150 - (xx + 2 * t) / 2], -1)
        if t >= 3:
            f[20:52, 30:70] = np.stack([128 + 100 * np.sin(yy[20:52, 30:70] / 3)] * 3, -1)
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    src = tmp_path / f"appear-{h}x{w}.y4m"
    write_y4m(src, frames)
    return src


def test_stream_with_intra_macroblocks_decodes_to_the_encoders_pictures(tmp_path):
    src = _clip(tmp_path)
    odd = tmp_path / "odd.lvc"  # a frame size that ends inside macroblocks
    r = api.encode(_clip(tmp_path, 58, 90), odd, quality=0.8, model=MODEL, progress=False, ms_ssim=False)
    with LvcReader(odd) as rd:
        assert any(u.intra for u in rd.units())
    assert api.decode(odd, tmp_path / "odd.y4m", model=MODEL, reference=tmp_path / "appear-58x90.y4m").sha256 \
        == r.recon_sha256
    out = tmp_path / "a.lvc"
    r = api.encode(src, out, quality=0.8, model=MODEL, progress=False, ms_ssim=False, small_transforms=False,
                   layer_intra=False)
    with LvcReader(out) as rd:
        assert rd.header.version == (1, 7)
        assert any(u.intra for u in rd.units())
    d = api.decode(out, tmp_path / "a.y4m", model=MODEL, reference=src)
    assert d.sha256 == r.recon_sha256
    assert any(f["intra_blocks"] for f in api.info(out)["frames"])
    # corrupt: the same frames under a header claiming format 1.6
    bad = claiming_minor(out, tmp_path / "old.lvc", 6)
    with LvcReader(bad) as rd, pytest.raises(BitstreamError, match="not valid in a format 1.6 stream"):
        list(rd.units())
    # corrupt: a frame type with the intra bit but no residual layer
    with LvcReader(out) as rd:
        head = out.read_bytes()[:rd.header_size]
    payload = bytes(8)
    unit = syntax.pack(syntax.FRAME_HEADER, dict(frame_type=4 | INTRA_FLAG, quality=100, payload_length=len(payload),
                                                 payload_crc=zlib.crc32(payload)))
    bad.write_bytes(head + unit + payload)
    with LvcReader(bad) as rd, pytest.raises(BitstreamError, match="intra macroblocks or transform sizes without"):
        list(rd.units())


def test_intra_flag_needs_a_residual_layer():
    assert INTRA_FLAG not in (RESIDUAL_FLAG, GREY_FLAG) and INTRA_FLAG > 5  # above every frame type
    with pytest.raises(ValueError, match="without a residual layer"):
        pack_frame(4, 100, b"\0" * 8, intra=True)


def test_fast_codes_no_intra_macroblocks_slow_finds_at_least_mediums(tmp_path):
    """Presets trade encode time for bits: fast looks for no intra macroblocks, slow at a
    lower penalty than medium (more candidates, each still checked by its coded cost)."""
    from lvc.codec.intra_rdo import candidates
    from lvc.codec.presets import PRESETS

    src = _clip(tmp_path)
    out = tmp_path / "fast.lvc"
    api.encode(src, out, quality=0.8, model=MODEL, progress=False, ms_ssim=False, preset="fast")
    with LvcReader(out) as rd:
        assert not any(u.intra for u in rd.units())
    assert PRESETS["slow"].intra_penalty < PRESETS["medium"].intra_penalty
    frame, picture, planes = _pair()
    r = ResidualEncoder(intra_penalty=None).encode(frame, picture, 0.05, planes=planes)[2]
    base = colour.quarter_yuv(picture)
    total = r.unfiltered(base, *frame.shape[:2])
    found = [candidates(planes, base, total, r.coded, 2.0, PRESETS[p].intra_penalty)[0] for p in ("medium", "slow")]
    assert found[0].any() and np.all(found[1] >= found[0])
