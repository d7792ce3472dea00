"""The residual layer (lvc.codec.residual): exact integer inverse, coding round trip, rates,
stream semantics and refusal of bad input."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DATA, claiming_minor

from lvc.bitstream.container import LvcReader, SequenceHeader, pack_frame
from lvc.bitstream.syntax import RESIDUAL_FLAG
from lvc.codec import api
from lvc.codec.residual import Residual, ResidualCoder, add_residual
from lvc.codec.residual_rdo import ResidualEncoder, step_indices
from lvc.codec.transform import BASIS, BLOCK
from lvc.entropy.tables import LAPLACE_THETAS, laplace_tables
from lvc.errors import BitstreamError


def _pair(h: int = 45, w: int = 70, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A textured frame and a damaged picture of it (noise, a shifted patch)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    frame = np.stack([128 + 60 * np.sin(xx / 5 + yy / 7), 100 + 50 * np.cos(yy / 4),
                      90 + 40 * np.sin((xx + yy) / 6)], -1)
    frame = np.clip(frame + rng.normal(0, 2, frame.shape), 0, 255).astype(np.uint8)
    picture = frame.astype(np.float64) + rng.normal(0, 5, frame.shape)
    picture[10:30, 20:50] = frame[12:32, 17:47]
    return frame, np.clip(picture, 0, 255).astype(np.uint8)


def test_tables_are_valid_and_symmetric():
    t = laplace_tables()
    assert len(t.lengths) == len(LAPLACE_THETAS)
    for i, n in enumerate(t.lengths):
        body = t.freqs[i, : n - 1]
        assert body[0] <= body[(n - 2) // 2] and np.array_equal(body, body[::-1])
    # flatter rows for larger thetas: zero costs more, large values less
    assert np.all(np.diff(t.freqs[np.arange(len(t.lengths)), (t.lengths - 2) // 2]) <= 0)


def test_basis_is_orthogonal_to_its_rounding():
    g = BASIS @ BASIS.T
    assert np.all(np.abs(g - (1 << 26) * np.eye(8)) < 5e-4 * (1 << 26))


def test_dc_coefficient_is_a_flat_block():
    """One luma DC coefficient q at step s is a flat q * s / 8 pixels in R, G and B."""
    coded = np.zeros((2, 2), bool)
    coded[1, 0] = True
    coeffs = np.zeros((3, 1, BLOCK, BLOCK), np.int64)
    coeffs[0, 0, 0, 0] = 5
    px = Residual((24, 30), (coded,), (coeffs,)).pixels(16, 16)  # step 24: 10 << 4 sixteenths = 10 pixels
    assert np.all(px[8:, :8] == 6) and np.all(px[:8] == 0) and np.all(px[8:, 8:] == 0)  # 5 * 10 / 8 = 6.25


@pytest.mark.parametrize("lmbda", [0.002, 0.02, 0.2])
def test_round_trip_is_exact_and_helps(lmbda):
    frame, picture = _pair()
    coded = ResidualEncoder().encode(frame, picture, lmbda)
    assert coded is not None
    section, bits, r = coded
    back = ResidualCoder().decode(section, *frame.shape[:2], "test")
    assert back.steps == r.steps and len(back.coded) == len(back.coeffs) == 1
    assert np.array_equal(back.coded[0], r.coded[0]) and np.array_equal(back.coeffs[0], r.coeffs[0])
    h, w = frame.shape[:2]
    assert np.array_equal(back.pixels(h, w), r.pixels(h, w))
    before = np.mean((picture.astype(float) - frame) ** 2)
    after = np.mean((add_residual(picture, r.pixels(h, w)).astype(float) - frame) ** 2)
    assert after < before
    # the range coder's bytes: at least the information content, at most a few words more
    assert bits - 1 <= 8 * len(section) <= bits + 64


def test_higher_rate_weight_codes_more():
    frame, picture = _pair()
    sizes = [len(ResidualEncoder(w).encode(frame, picture, 0.01)[0]) for w in (4, 16, 64)]
    assert sizes[0] < sizes[1] < sizes[2]
    assert step_indices(1.0)[0] < step_indices(0.01)[0]


def test_nothing_to_code_gives_no_layer():
    frame, _ = _pair()
    assert ResidualEncoder().encode(frame, frame, 0.01) is None


def _video(work, residual: float):
    """Colour format 0 (RGB pictures); format 1 is tests/test_colour.py's."""
    out = work / f"r{residual}.lvc"
    r = api.encode(DATA / "clip.y4m", out, quality=0.9, model=str(DATA / "tiny-inter.lvcm"), intra_period=4,
                   progress=False, ms_ssim=False, residual=residual, colour="rgb")
    return out, r


def test_stream_with_residual_layers_decodes_to_the_encoders_pictures(tmp_path):
    """decode(encode(x)) equals the encoder's pictures, and later frames predict from the
    pictures with their layers (a stream at format 1.3 whose frames carry them)."""
    out, r = _video(tmp_path, 64.0)
    with LvcReader(out) as rd:
        assert rd.header.version >= (1, 3)
        assert sum(u.residual is not None for u in rd.units()) >= 3
    from lvc.io.reader import open_video
    from lvc.metrics import MetricAccumulator

    acc = MetricAccumulator(with_ms_ssim=False)
    with open_video(DATA / "clip.y4m") as s:
        for f, rec in zip(s.frames(), api.iter_decode(out, model=str(DATA / "tiny-inter.lvcm")), strict=True):
            acc.add(f, rec)
    assert acc.mean()["psnr_rgb"] == pytest.approx(r.metrics["psnr_rgb"], abs=1e-9)
    _, plain = _video(tmp_path, 0.0)
    assert r.metrics["psnr_rgb"] > plain.metrics["psnr_rgb"] + 1


def _units(path):
    with LvcReader(path) as rd:
        return rd.header, list(rd.units())


def test_residual_flag_in_a_1_2_stream_is_refused(tmp_path):
    out, _ = _video(tmp_path, 64.0)
    bad = claiming_minor(out, tmp_path / "old.lvc", 2)
    with LvcReader(bad) as rd, pytest.raises(BitstreamError, match="not valid in a format 1.2 stream"):
        list(rd.units())


@pytest.mark.parametrize("damage", ["length", "extra", "garbage"])
def test_damaged_residual_layer_fails_cleanly(tmp_path, damage):
    """A length past the payload, words after the last symbol, random words: each a clean
    BitstreamError. (A section cut short and given a matching length can decode to another
    residual: the range coder reads zeros past its end, as the frame payloads do.)"""
    out, _ = _video(tmp_path, 64.0)
    header, units = _units(out)
    u = units[0]  # an I-frame with a layer: decoding can start there
    assert u.frame_type == 0 and u.residual is not None
    res = bytearray(u.residual)
    if damage == "length":
        res[0:4] = (1 << 20).to_bytes(4, "little")
    elif damage == "extra":
        res += b"\x5a\xa5\x5a\xa5" * 4
        res[0:4] = (len(res) - 8).to_bytes(4, "little")
    else:
        res[8:] = bytes(np.random.default_rng(1).integers(0, 256, len(res) - 8, dtype=np.uint8))
    head = SequenceHeader(header.model_name, header.weights_hash, header.width, header.height, header.fps, 1,
                          header.intra_period, (1, 3))
    bad = tmp_path / "bad.lvc"
    bad.write_bytes(head.pack() + pack_frame(u.frame_type, u.quality, u.payload, False, bytes(res)))
    with pytest.raises(BitstreamError):
        list(api.iter_decode(bad, model=str(DATA / "tiny-inter.lvcm")))


def test_flag_bits_are_distinct():
    assert RESIDUAL_FLAG == 0x40 and not RESIDUAL_FLAG & 0x3F


def test_a_section_read_for_another_frame_size_fails_cleanly():
    """A CRC-valid section that does not fit the frame (the range decoder runs dry or
    overflows) is a BitstreamError, whatever the entropy coder raises inside."""
    frame, picture = _pair()
    section, _, _ = ResidualEncoder().encode(frame, picture, 0.05)
    with pytest.raises(BitstreamError, match="residual layer does not decode"):
        ResidualCoder().decode(section, 4 * frame.shape[0], 4 * frame.shape[1], "test")


def test_info_reports_the_layers(tmp_path, capsys):
    from lvc.cli import main

    out, _ = _video(tmp_path, 64.0)
    info = api.info(out)
    assert sum(f["residual_bytes"] > 0 for f in info["frames"]) >= 3
    assert main(["info", str(out)]) == 0
    assert "residual layers:" in capsys.readouterr().out
