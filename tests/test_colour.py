"""Colour format 1 (lvc.codec.colour): exact conversions, the residual layer in Y, Cb, Cr, and
streams shown as yuv420p planes that decode to the encoder's pictures bit for bit."""

from __future__ import annotations

import av
import numpy as np
import pytest
from conftest import DATA, motion_only_version

from lvc.bitstream.container import LvcReader, LvcWriter, SequenceHeader
from lvc.bitstream.syntax import COLOUR_RGB, COLOUR_YUV420
from lvc.codec import api, colour
from lvc.codec.residual import ResidualCoder
from lvc.codec.residual_picture import ResidualPicture
from lvc.codec.residual_rdo import ResidualEncoder
from lvc.errors import BitstreamError, InputError
from lvc.io.convert import frame_planes, rgb_to_planes
from lvc.io.reader import open_video
from lvc.metrics import MetricAccumulator, plane_metrics

MODEL = str(DATA / "tiny-inter.lvcm")


def _clip():
    """(RGB frames, their yuv420p planes) of the test clip."""
    with open_video(DATA / "clip.y4m") as v:
        return list(v.frames_with_planes())


def test_conversion_inverts_swscale_in_gamut():
    """The RGB view of real yuv420p planes converts back to them within rounding: the
    shown planes of an uncoded picture lose nothing the RGB cube kept."""
    for rgb, planes in _clip():
        m = plane_metrics(planes, colour.shown_planes(rgb), with_ms_ssim=False)
        assert m["psnr_y"] > 45 and m["psnr_u"] > 45 and m["psnr_v"] > 45


def test_conversions_are_integer_and_consistent():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    y, cb, cr = colour.quarter_yuv(rgb)
    assert y.shape == (7, 9) and cb.shape == cr.shape == (4, 5) and y.dtype == np.int32
    grey = np.full((4, 4, 3), 100, np.uint8)  # grey is chroma 128 exactly
    assert np.all(colour.quarter_yuv(grey)[1] == 512) and np.all(colour.quarter_yuv(grey)[2] == 512)
    # a luma step of 8 quarter levels (2 levels) is 2 * 298 / 256 = 2.33 in R, G and B
    d = colour.rgb_delta(np.full((4, 4), 8), np.zeros((2, 2), np.int32), np.zeros((2, 2), np.int32))
    assert d.dtype == np.int16 and np.all(d == 2)


@pytest.mark.parametrize("lmbda", [0.005, 0.2])
def test_yuv_layer_round_trip_is_exact_and_helps(lmbda):
    """The decoded layer gives the encoder's RGB picture and planes bit for bit, brings the
    planes closer to the source, and costs what the encoder estimated."""
    rgb, planes = _clip()[2]
    rng = np.random.default_rng(1)
    picture = np.clip(rgb + rng.normal(0, 6, rgb.shape), 0, 255).astype(np.uint8)
    section, bits, r = ResidualEncoder().encode(rgb, picture, lmbda, planes=planes)
    h, w = rgb.shape[:2]
    back = ResidualCoder().decode(section, h, w, "test", COLOUR_YUV420, with_intra=r.has_intra, with_small=r.has_small)
    assert len(back.coded) == 2 and back.coded[1].shape == (3, 4)  # chroma 24x32: 3x4 blocks

    class Ready:
        def result(self):
            return picture

    a, b = ResidualPicture(Ready(), r, h, w), ResidualPicture(Ready(), back, h, w)
    assert np.array_equal(a.result(), b.result())
    assert all(np.array_equal(x, y) for x, y in zip(a.planes(), b.planes(), strict=True))
    before = plane_metrics(planes, colour.shown_planes(picture), False)["psnr_yuv"]
    assert plane_metrics(planes, b.planes(), False)["psnr_yuv"] > before + (1 if lmbda > 0.1 else 0)
    assert bits - 1 <= 8 * len(section) <= bits + 64


def _encode(tmp_path, **kw):
    out = tmp_path / "yuv.lvc"
    r = api.encode(DATA / "clip.y4m", out, quality=0.8, model=MODEL, intra_period=4, progress=False,
                   ms_ssim=False, **kw)
    return out, r


def test_video_defaults_to_colour_format_1_and_decodes_to_the_encoders_planes(tmp_path):
    out, r = _encode(tmp_path)
    with LvcReader(out) as rd:
        assert rd.header.colour_format == COLOUR_YUV420
        assert rd.header.version == motion_only_version(out, (1, 5))  # deblocked (1.5)
    acc = MetricAccumulator(with_ms_ssim=False)
    shown = list(api.iter_decode(out, model=MODEL, planes=True))
    for (rgb, planes), test in zip(_clip(), shown, strict=True):
        acc.add(rgb, test, planes)
    assert acc.mean() == pytest.approx(r.metrics, abs=1e-12)  # the encoder scored the same planes
    dec = api.decode(out, reference=DATA / "clip.y4m", model=MODEL)
    assert {k: dec.metrics[k] for k in r.metrics} == pytest.approx(r.metrics, abs=1e-12)
    assert dec.sha256 == r.recon_sha256 == acc.digest  # the shown planes, bit for bit
    # the RGB view is swscale's of those planes
    rgb = list(api.iter_decode(out, model=MODEL))
    assert rgb[0].shape == (48, 64, 3) and np.array_equal(rgb_to_planes(rgb[0])[0].shape, (48, 64))


def test_y4m_output_holds_the_shown_planes_exactly(tmp_path):
    out, _ = _encode(tmp_path)
    y4m = tmp_path / "out.y4m"
    api.decode(out, y4m, model=MODEL)
    with av.open(str(y4m)) as c:
        written = [frame_planes(f) for f in c.decode(video=0)]
    shown = list(api.iter_decode(out, model=MODEL, planes=True))
    assert len(written) == len(shown) == 6
    assert all(np.array_equal(a, b) for w, s in zip(written, shown, strict=True) for a, b in zip(w, s, strict=True))


def test_rgb_stays_available_and_stills_stay_rgb(tmp_path):
    out, _ = _encode(tmp_path, colour="rgb")
    with LvcReader(out) as rd:
        assert rd.header.colour_format == COLOUR_RGB
        assert rd.header.version == motion_only_version(out, (1, 5))  # (frames of copies: PM)
    png = tmp_path / "f.png"
    from PIL import Image

    Image.fromarray(_clip()[0][0]).save(png)
    still = tmp_path / "still.lvc"
    api.encode(png, still, quality=0.5, model=MODEL, progress=False, ms_ssim=False)
    assert api.info(still)["colour_format"] == "rgb"
    with pytest.raises(InputError, match="unknown colour format"):
        _encode(tmp_path, colour="yuv444")


def test_colour_format_1_in_a_1_3_header_is_refused(tmp_path):
    h = SequenceHeader("m", bytes(8), 64, 48, 25, 1, 4, (1, 3), COLOUR_YUV420)
    bad = tmp_path / "bad.lvc"
    bad.write_bytes(h.pack())
    with pytest.raises(BitstreamError, match="colour format 1 is not valid in a format 1.3 stream"):
        LvcReader(bad)


def test_writer_starts_colour_format_1_at_1_4(tmp_path):
    h = SequenceHeader("m", bytes(8), 64, 48, 25, 1, 4, colour_format=COLOUR_YUV420)
    with LvcWriter(tmp_path / "a.lvc", h) as w:
        assert w.minor == 4
        w.abort()


def test_an_unknown_colour_format_of_a_newer_stream_asks_for_a_newer_lvc(tmp_path):
    """colour_format 2 is corrupt in a 1.4 stream, but a later minor version may define it."""
    from lvc.bitstream.syntax import VERSION_MINOR

    for minor, hint in ((4, "corrupted"), (VERSION_MINOR + 1, "newer lvc")):
        h = SequenceHeader("m", bytes(8), 64, 48, 25, 1, 4, (1, minor), COLOUR_YUV420)
        raw = bytearray(h.pack())
        raw[_colour_offset(h)] = 2
        import zlib

        raw[-4:] = zlib.crc32(bytes(raw[:-4])).to_bytes(4, "little")
        bad = tmp_path / f"c{minor}.lvc"
        bad.write_bytes(bytes(raw))
        with pytest.raises(BitstreamError, match=hint):
            LvcReader(bad)


def _colour_offset(h: SequenceHeader) -> int:
    """Byte offset of ``colour_format`` in ``h``'s packed header."""
    from lvc.bitstream import syntax

    names = [f.name for f in syntax.SEQUENCE_HEADER]
    return len(syntax.pack(syntax.SEQUENCE_HEADER[:names.index("colour_format")], {
        "magic": syntax.MAGIC, "version_major": 1, "version_minor": h.version[1], "model_name": h.model_name,
        "weights_hash": h.weights_hash, "width": h.width, "height": h.height, "fps_num": 25, "fps_den": 1,
        "frame_count": h.frame_count}))


def test_a_damaged_layer_stops_decoding_at_its_own_frame(tmp_path):
    """The frames before a damaged residual layer come out as they are, then its error,
    naming its frame: none of the later frames is shown in its place."""
    stream, model = DATA / "golden-yuv.lvc", MODEL
    with LvcReader(stream) as r:
        header, units = r.header, list(r.units())
    bad = tmp_path / "bad.lvc"
    with LvcWriter(bad, header) as w:
        for u in units:
            layer = u.residual
            if u.index == 2:
                noise = np.random.default_rng(3).integers(0, 256, len(layer) - 8, dtype=np.uint8)
                layer = layer[:8] + bytes(noise)
            w.write_frame(u.frame_type, u.quality, u.payload, u.grey, layer)
        w.commit()
    good = list(api.iter_decode(stream, model=model, planes=None))
    shown = []
    with pytest.raises(BitstreamError, match="frame 2"):
        for f in api.iter_decode(bad, model=model, planes=None):
            shown.append(f)
    assert len(shown) == 2
    assert all(np.array_equal(a, b) for s, g in zip(shown, good) for a, b in zip(s, g, strict=True))
