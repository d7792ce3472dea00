"""Block transforms of the residual layer (lvc.codec.transform) and luma blocks coded as four
4x4 transforms (format 1.8): exact inverses, the section's round trip, streams that decode to
the encoder's pictures, refusal of bad input."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from conftest import DATA, refused_under_minor, run_lvc, write_y4m

from lvc.bitstream import syntax
from lvc.bitstream.container import LvcReader, pack_frame
from lvc.bitstream.syntax import INTRA_FLAG, SMALL_FLAG
from lvc.codec import api, colour, intra, transform
from lvc.codec.residual import ResidualCoder
from lvc.codec.residual_rdo import ResidualEncoder
from lvc.errors import BitstreamError

MODEL = str(DATA / "tiny-inter.lvcm")


@pytest.mark.parametrize("four", [False, True])
def test_inverses_undo_the_forward_transforms_to_the_step(four):
    """Fine steps reconstruct any block to within the quantiser's error, for both sizes; the
    integer 4x4 basis is the float one rounded to 13 bits, and orthogonal."""
    rng = np.random.default_rng(1)
    x = rng.normal(0, 30, (3, 16, 24))
    coef = transform.forward4(transform.pixel_blocks(x)) if four else transform.forward(x)  # (3, 2, 3, 8, 8)
    d = transform.step_size(0) / 16
    q = np.round(coef / d).astype(np.int64).reshape(-1, 8, 8)
    rec = transform.inverse_blocks(q, 0, np.full(len(q), four)) / 4
    rec = rec.reshape(3, 2, 3, 8, 8).transpose(0, 1, 3, 2, 4).reshape(x.shape)
    assert np.abs(rec - x).max() < 8 * d  # (64 errors of at most d / 2 each, a loose bound)
    assert np.abs(rec - x).mean() < d
    g = transform.BASIS4 @ transform.BASIS4.T
    assert np.all(np.abs(g - np.diag(np.diag(g))) <= 1) and np.all(np.abs(np.diag(g) - (1 << 26)) < 2 ** 14)
    # a stored 4x4 block keeps sub-block (i, j)'s coefficient (u, v) at (2u + i, 2v + j)
    one = np.zeros((1, 8, 8), dtype=np.int64)
    one[0, 2 * 2 + 1, 2 * 3 + 0] = 100  # (i, j) = (1, 0): the bottom left quarter
    rec = transform.inverse_blocks(one, 10, np.array([True]))[0]
    assert rec[4:, :4].any() and not rec[:4].any() and not rec[:, 4:].any()


def _pair(h: int = 64, w: int = 96) -> tuple[np.ndarray, np.ndarray, tuple]:
    """A smooth picture, and a frame with 4x4 patches it lacks (a quarter of some blocks):
    four 4x4 transforms code such a patch in a few coefficients, one 8x8 in many."""
    yy, xx = np.mgrid[0:h, 0:w]
    picture = np.clip(np.stack([70 + xx, 90 + yy, 160 - xx / 2], -1), 0, 255).astype(np.uint8)
    frame = picture.astype(np.int16)
    for y in range(0, h - 8, 16):
        for x in range(0, w - 8, 16):
            frame[y + 4:y + 8, x:x + 4] += 60
    frame = np.clip(frame, 0, 255).astype(np.uint8)
    return frame, picture, colour.shown_planes(frame)


@pytest.mark.parametrize("size,search", [((64, 96), "estimate"), ((61, 93), "estimate"), ((61, 93), "search")])
def test_small_transforms_round_trip_through_the_section(size, search):
    """The decoder reads back the transform sizes and the same residual, also where the
    frame ends inside a block; they beat 8x8 transforms where the error is a 4x4 patch."""
    frame, picture, planes = _pair(*size)
    section, bits, r = ResidualEncoder(transform_search=search).encode(frame, picture, 0.05, planes=planes)
    assert r.has_small and r.small.any() and not (r.small & ~r.coded[0]).any()
    h, w = frame.shape[:2]
    back = ResidualCoder().decode(section, h, w, "test", r.colour_format, with_intra=r.has_intra, with_small=True)
    assert np.array_equal(back.small, r.small)
    assert all(np.array_equal(a, b) for a, b in zip(back.coeffs, r.coeffs, strict=True))
    base = colour.quarter_yuv(picture)
    assert all(np.array_equal(a, b) for a, b in zip(back.delta(base, h, w), r.delta(base, h, w), strict=True))
    assert bits - 1 <= 8 * len(section) <= bits + 64  # the range coder's bytes against the information
    plain_section, plain_bits, plain = ResidualEncoder(transform_search=None).encode(frame, picture, 0.05,
                                                                                    planes=planes)
    assert not plain.has_small

    def cost(x, b):
        shown = colour.rounded_planes(tuple(p + d for p, d in zip(base, x.delta(base, h, w), strict=True)))
        return 0.05 * sum(float(((s.astype(float) - p) ** 2).sum()) for s, p in zip(shown, planes, strict=True)) + b

    assert cost(r, bits) < cost(plain, plain_bits)


def _intra_pair(h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray, tuple]:
    """4x4 squares over a smooth frame; a picture without them whose copy failed in some
    macroblocks (their content flipped): intra macroblocks and 4x4 transforms inside and
    outside them."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = np.stack([60 + xx * 1.5, 80 + yy * 1.2 + 20 * np.sin(xx / 9), 200 - xx - yy / 2], -1)
    frame = smooth.copy()
    for _ in range(h * w // 128):
        y, x = rng.integers(0, h - 4), rng.integers(0, w - 4)
        frame[y:y + 4, x:x + 4] += rng.choice([-50, 50])
    frame = np.clip(frame, 0, 255).astype(np.uint8)
    picture = np.clip(smooth, 0, 255).astype(np.uint8)
    picture[16:48, 32:64] = np.flip(frame[16:48, 32:64], axis=(0, 1))
    picture[0:16, 0:16] = np.flip(frame[0:16, 0:16], axis=0)
    return frame, picture, colour.shown_planes(frame)


@pytest.mark.parametrize("size,seed", [((64, 96), 0), ((64, 96), 1), ((61, 93), 2)])
def test_intra_macroblocks_with_4x4_transforms_compose_as_the_decoder_does(size, seed):
    """The encoder's own sums (what its picture shows) equal the decoder's composition of
    the section it wrote, with 4x4 blocks in intra macroblocks and outside them."""
    frame, picture, planes = _intra_pair(*size, seed)
    section, _, r = ResidualEncoder().encode(frame, picture, 0.05, planes=planes)
    inside = intra.block_masks(r.intra, r.coded[0].shape, r.coded[1].shape)[0]
    assert (r.small & inside).any() and (r.small & ~inside).any()
    h, w = size
    back = ResidualCoder().decode(section, h, w, "test", r.colour_format, with_intra=True, with_small=True)
    assert np.array_equal(back.small, r.small) and np.array_equal(back.intra, r.intra)
    base = colour.quarter_yuv(picture)
    mine, theirs = r.unfiltered(base, h, w), back.unfiltered(base, h, w)
    assert all(np.array_equal(a, b) for a, b in zip(mine, theirs, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(r.delta(base, h, w), back.delta(base, h, w), strict=True))


def test_a_section_read_with_or_without_its_transform_sizes_fails_cleanly():
    frame, picture, planes = _pair()
    section, _, r = ResidualEncoder().encode(frame, picture, 0.05, planes=planes)
    assert r.has_small
    with pytest.raises(BitstreamError, match="residual layer does not decode"):
        ResidualCoder().decode(section, *frame.shape[:2], "test", r.colour_format, r.has_intra, with_small=False)
    with pytest.raises(BitstreamError, match="colour format 0"):
        ResidualCoder().decode(section, *frame.shape[:2], "test", 0, with_small=True)


def _clip(tmp_path, h: int = 64, w: int = 96):
    """A moving smooth background under small bright squares that appear and move."""
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for t in range(6):
        f = np.stack([80 + (xx + 2 * t) * 1.2, 90 + yy, 150 - (xx + 2 * t) / 2], -1)
        for k in range(t + 2):
            y, x = (7 * k + 3 * t) % (h - 4), (13 * k + 5 * t) % (w - 4)
            f[y:y + 4, x:x + 4] = 240 - 30 * (k % 3)
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    src = tmp_path / f"squares-{h}x{w}.y4m"
    write_y4m(src, frames)
    return src


@pytest.mark.parametrize("size", [(64, 96), (58, 90)])
def test_stream_with_small_transforms_decodes_to_the_encoders_pictures(tmp_path, size):
    src = _clip(tmp_path, *size)
    out = tmp_path / "a.lvc"
    r = api.encode(src, out, quality=0.8, model=MODEL, progress=False, ms_ssim=False, layer_intra=False)
    with LvcReader(out) as rd:
        assert rd.header.version == (1, 8)
        assert any(u.small for u in rd.units())
    assert api.decode(out, tmp_path / "a.y4m", model=MODEL, reference=src).sha256 == r.recon_sha256
    assert any(f["small_transforms"] for f in api.info(out)["frames"])
    shown = run_lvc("info", out)
    assert shown.returncode == 0 and "with 4x4 transforms" in shown.stdout
    plain = tmp_path / "plain.lvc"  # the CLI's switch, as a user writes a stream older decoders read
    r = run_lvc("encode", src, "-o", plain, "-q", "0.8", "--model", MODEL, "--no-small-transforms", "--learned-intra")
    assert r.returncode == 0, r.stderr
    with LvcReader(plain) as rd:
        assert rd.header.version < (1, 8) and not any(u.small for u in rd.units())


def test_small_transforms_need_format_1_8_and_a_residual_layer(tmp_path):
    src = _clip(tmp_path)
    out = tmp_path / "a.lvc"
    api.encode(src, out, quality=0.8, model=MODEL, progress=False, ms_ssim=False)
    head, bad = refused_under_minor(out, tmp_path, 7)
    payload = bytes(8)  # a frame type with the bit but no residual layer
    unit = syntax.pack(syntax.FRAME_HEADER, dict(frame_type=4 | SMALL_FLAG, quality=100, payload_length=len(payload),
                                                 payload_crc=zlib.crc32(payload)))
    bad.write_bytes(head + unit + payload)
    with LvcReader(bad) as rd, pytest.raises(BitstreamError, match="transform sizes without"):
        list(rd.units())
    assert SMALL_FLAG < INTRA_FLAG and SMALL_FLAG > 5  # above every frame type
    with pytest.raises(ValueError, match="without a residual layer"):
        pack_frame(4, 100, b"\0" * 8, small=True)


def test_inner_edges_of_4x4_blocks_are_deblocked():
    """A step 4 samples into a block is smoothed where the block is four 4x4 transforms (its
    own edge), and left alone where it is one 8x8 transform."""
    from lvc.codec import deblock

    plane = np.zeros((16, 16), dtype=np.int32)
    plane[:, 4:8] = 40
    plane[:, 12:] = 40
    coded, small = np.ones((2, 2), dtype=bool), np.array([[True, False], [True, False]])
    out = deblock.deblock(plane, coded, 8, 48, small)
    assert (out[:, 3] > 0).all() and (out[:, 4] < 40).all()  # block column 0's inner edge
    assert np.array_equal(out[:, 11:14], plane[:, 11:14])  # block column 1's: an 8x8 block
    plain = deblock.deblock(plane, coded, 8, 48)
    assert np.array_equal(plain[:, 2:6], plane[:, 2:6])


def test_fast_codes_no_4x4_transforms_and_searches_are_checked(tmp_path):
    from lvc.codec.presets import PRESETS

    out = tmp_path / "fast.lvc"
    api.encode(_clip(tmp_path), out, quality=0.8, model=MODEL, progress=False, ms_ssim=False, preset="fast")
    with LvcReader(out) as rd:
        assert not any(u.small for u in rd.units())
    assert [PRESETS[p].transform_search for p in ("fast", "medium", "slow")] == [None, "estimate", "search"]
    with pytest.raises(ValueError, match="transform_search"):
        ResidualEncoder(transform_search="exhaustive")
