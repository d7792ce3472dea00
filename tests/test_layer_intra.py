"""I-frames coded by the residual layer alone (frame type IL, format 1.9): streams decode to
the encoder's pictures, the choice against the learned I-frame is by the layer's cost, and
bad input is refused cleanly."""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np
import pytest
from conftest import DATA, refused_under_minor, run_lvc, write_y4m

from lvc.bitstream import syntax
from lvc.bitstream.container import FRAME_IL, FRAME_P, FrameUnit, LvcReader, LvcWriter, pack_frame
from lvc.bitstream.syntax import INTRA_FLAG, RESIDUAL_FLAG
from lvc.codec import api, colour, layer_intra
from lvc.codec.decoder import SequenceDecoder
from lvc.codec.residual_picture import FLAT, flat_picture
from lvc.codec.residual_rdo import ResidualEncoder
from lvc.errors import BitstreamError
from lvc.models.registry import load_model

MODEL = str(DATA / "tiny-inter.lvcm")


def _frames(h: int = 64, w: int = 96, n: int = 6) -> list[np.ndarray]:
    """Textured frames moving slowly: the learned I-frame of a tiny model predicts them
    poorly, the layer's spatial prediction well."""
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for t in range(n):
        x = xx + 2 * t
        g = 128 + 60 * np.sin(x / 5) * np.cos(yy / 7) + 30 * ((x // 12 + yy // 12) % 2)
        frames.append(np.clip(np.stack([g, 0.8 * g + 30, 200 - 0.5 * g], -1), 0, 255).astype(np.uint8))
    return frames


def _clip(tmp_path, h: int = 64, w: int = 96, n: int = 6):
    src = tmp_path / f"texture-{h}x{w}.y4m"
    write_y4m(src, _frames(h, w, n))
    return src


def _types(path) -> list[int]:
    with LvcReader(path) as rd:
        return [u.frame_type for u in rd.units()]


@pytest.mark.parametrize("size", [(64, 96), (58, 90)])
def test_stream_with_il_frames_decodes_to_the_encoders_pictures(tmp_path, size):
    """Forced I-frames coded by the layer alone, the frames of copies after them predicting
    from their pictures; also where the frame ends inside macroblocks."""
    src, out = _clip(tmp_path, *size), tmp_path / "il.lvc"
    r = api.encode(src, out, quality=0.8, model=MODEL, intra_period=3, progress=False, ms_ssim=False)
    types = _types(out)
    assert types.count(FRAME_IL) == 2 and types[0] == FRAME_IL
    with LvcReader(out) as rd:
        assert rd.header.version == (1, 9)
    assert api.decode(out, tmp_path / "il.y4m", model=MODEL, reference=src).sha256 == r.recon_sha256
    frames = api.info(out)["frames"]
    assert frames[0]["type"] == "IL" and frames[0]["payload_bytes"] == 0 and frames[0]["residual_bytes"] > 0


def test_learned_intra_writes_no_il_frames_and_info_names_them(tmp_path):
    src = _clip(tmp_path)
    plain = tmp_path / "plain.lvc"
    r = run_lvc("encode", src, "-o", plain, "-q", "0.8", "--model", MODEL, "--learned-intra")
    assert r.returncode == 0, r.stderr
    assert FRAME_IL not in _types(plain)
    with LvcReader(plain) as rd:
        assert rd.header.version <= (1, 8)
    out = tmp_path / "il.lvc"
    assert run_lvc("encode", src, "-o", out, "-q", "0.8", "--model", MODEL).returncode == 0
    shown = run_lvc("info", out)
    assert shown.returncode == 0 and "L = I by the residual layer alone" in shown.stdout
    assert "): L" in shown.stdout  # the first frame's letter


def test_the_encoder_keeps_the_cheaper_i_frame_by_the_layers_cost(tmp_path, monkeypatch):
    """An IL frame is written only where its cost is below the learned I-frame's: made
    dearer than any learned frame, it is never chosen."""
    src = _clip(tmp_path)
    real = layer_intra.code

    def dear(*args, **kwargs):
        f = real(*args, **kwargs)
        return f if f is None else layer_intra.LayerFrame(f.pending, f.layer, f.section, f.bits, f.tools,
                                                          float("inf"))

    monkeypatch.setattr(layer_intra, "code", dear)
    out = tmp_path / "dear.lvc"
    api.encode(src, out, quality=0.8, model=MODEL, intra_period=3, progress=False, ms_ssim=False)
    assert FRAME_IL not in _types(out)


def test_layer_cost_weighs_planes_as_the_layer_does():
    """The decision's cost is lambda_r / 3 * weighted SSE + bits, chroma samples weighed as
    the layer's choices weigh them (a chroma error costs more than the same luma error)."""
    frame = np.full((16, 16, 3), 100, dtype=np.uint8)
    planes = colour.shown_planes(frame)
    assert layer_intra.layer_cost(planes, planes, 3.0, 7.0) == 7.0
    off = [p.copy() for p in planes]
    off[0][0, 0] += 2
    luma = layer_intra.layer_cost(planes, tuple(off), 3.0, 0.0)
    off = [p.copy() for p in planes]
    off[1][0, 0] += 2
    assert layer_intra.layer_cost(planes, tuple(off), 3.0, 0.0) > luma > 0


def test_il_frames_need_format_1_9_a_layer_and_no_payload(tmp_path):
    src, out = _clip(tmp_path), tmp_path / "il.lvc"
    api.encode(src, out, quality=0.8, model=MODEL, progress=False, ms_ssim=False)
    head, bad = refused_under_minor(out, tmp_path, 8)
    with LvcReader(out) as rd:
        first = next(iter(rd.units()))
    with pytest.raises(ValueError, match="without a residual layer"):
        pack_frame(FRAME_IL, 100, b"")
    with pytest.raises(ValueError, match="no payload of its own"):
        pack_frame(FRAME_IL, 100, b"\0" * 4, residual=first.residual)
    with LvcReader(out) as rd:  # the writer refuses what the reader would: IL in colour format 0
        rgb = dataclasses.replace(rd.header, colour_format=0, version=(1, 0))
    with LvcWriter(tmp_path / "rgb.lvc", rgb) as w, pytest.raises(ValueError, match="only in colour format 1"):
        w.write_frame(FRAME_IL, 100, b"", residual=first.residual)
    assert not (tmp_path / "rgb.lvc").exists()

    def refused(frame_type: int, payload: bytes, match: str) -> None:
        unit = syntax.pack(syntax.FRAME_HEADER, dict(frame_type=frame_type, quality=100,
                                                     payload_length=len(payload), payload_crc=zlib.crc32(payload)))
        bad.write_bytes(head + unit + payload)
        with LvcReader(bad) as rd, pytest.raises(BitstreamError, match=match):
            list(rd.units())

    refused(FRAME_IL, bytes(8), "IL frame without a colour format 1 residual layer")
    # a layer followed by a payload of its own
    refused(FRAME_IL | RESIDUAL_FLAG | INTRA_FLAG, first.residual + bytes(4), "residual layer length is invalid")


def test_no_latent_residual_p_frame_follows_an_il_frame(tmp_path):
    """An IL frame leaves no latent: a P-frame after it is refused, naming the frame; the
    context it leaves is the one a zero latent starts."""
    src, out = _clip(tmp_path), tmp_path / "il.lvc"
    api.encode(src, out, quality=0.8, model=MODEL, progress=False, ms_ssim=False)
    model = load_model(MODEL)
    with LvcReader(out) as rd:
        first = next(iter(rd.units()))
        dec = SequenceDecoder(model, rd.header.width, rd.header.height, "test", colour_format=rd.header.colour_format)
    assert first.frame_type == FRAME_IL
    dec.decode(first)
    assert dec.reference is None
    zero = dec.inter.intra_context(dec.inter.zero_latent(dec.height, dec.width), first.quality)
    assert np.array_equal(dec.context.numpy(), zero.numpy())
    with pytest.raises(BitstreamError, match="without a preceding frame"):
        dec.decode(FrameUnit(1, FRAME_P, first.quality, bytes(8), 0))
    dec.close()


def test_an_il_stream_is_analysed_from_its_decoded_pictures(tmp_path):
    from lvc.analysis.cli import analyse

    src, out = _clip(tmp_path), tmp_path / "il.lvc"
    api.encode(src, out, quality=0.8, model=MODEL, progress=False, ms_ssim=False)
    assert "IL" in {f["type"] for f in api.info(out)["frames"]}
    sig, _ = analyse(out, MODEL, progress=False)
    assert sig.source == "pixels" and len(sig) == 6


def test_code_returns_none_where_the_layer_codes_nothing():
    """A flat grey frame is its own IL picture: nothing to code."""
    frame = np.full((32, 48, 3), FLAT, dtype=np.uint8)
    enc = ResidualEncoder()
    assert layer_intra.code(enc, frame, colour.shown_planes(frame), 0.05, 1000) is None


@pytest.mark.parametrize("size,seed", [((64, 96), 0), ((61, 93), 1), ((35, 50), 2)])
def test_wavefront_coding_gives_the_decoders_composition(size, seed):
    """Every macroblock coded intra a diagonal of blocks at a time (lvc.codec.intra_wavefront)
    shows what the decoder composes in raster order from the section, bit for bit: modes of
    every kind, 4x4 blocks, and frames ending inside blocks."""
    from lvc.codec.residual import ResidualCoder

    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    frame = np.stack([60 + xx * 1.5, 80 + yy * 1.2 + 20 * np.sin(xx / 9), 200 - xx - yy / 2], -1)
    for _ in range(h * w // 96):
        y, x = rng.integers(0, h - 4), rng.integers(0, w - 4)
        frame[y:y + 4, x:x + 4] += rng.choice([-60, 60])
    frame = np.clip(frame, 0, 255).astype(np.uint8)
    planes = colour.shown_planes(frame)
    f = layer_intra.code(ResidualEncoder(), frame, planes, 0.05, 1000)
    back = ResidualCoder().decode(f.section, h, w, "test", 1, with_intra=True, with_small=f.tools["small"])
    assert back.intra.all() and f.tools["small"] and back.small.any() and len(set(back.modes.ravel())) >= 3
    base = colour.quarter_yuv(flat_picture(h, w).result())
    mine = f.layer.unfiltered(base, h, w)  # the encoder's own sums
    assert all(np.array_equal(a, b) for a, b in zip(mine, back.unfiltered(base, h, w), strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(f.pending.planes(), colour.rounded_planes(
        tuple(q + d for q, d in zip(base, back.delta(base, h, w), strict=True))), strict=True))


def test_grey_frames_keep_learned_i_frames(tmp_path):
    """A grey frame's layer codes no chroma, so no intra macroblocks: its I-frames stay
    learned; the stream decodes to the encoder's pictures."""
    frames = [np.repeat(f.mean(-1, keepdims=True), 3, -1).astype(np.uint8) for f in _frames()]
    src, out = tmp_path / "grey.y4m", tmp_path / "grey.lvc"
    write_y4m(src, frames)
    r = api.encode(src, out, quality=0.8, model=MODEL, intra_period=3, progress=False, ms_ssim=False)
    assert FRAME_IL not in _types(out)
    assert api.decode(out, tmp_path / "grey-out.y4m", model=MODEL, reference=src).sha256 == r.recon_sha256
