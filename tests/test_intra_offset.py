"""Quality offsets (format 1.2): a video model's forced I-frames above its conditional P-frames."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from conftest import encoder_recons, same_picture, write_y4m

from lvc.bitstream.container import FRAME_I, FRAME_P, FRAME_PC, FRAME_PS, LvcReader, LvcWriter, SequenceHeader
from lvc.codec import api
from lvc.codec.frame import FrameCodec
from lvc.codec.inter import InterCodec
from lvc.errors import BitstreamError


@pytest.fixture(scope="module")
def offset_stream(inter_model, twelve, tmp_path_factory):
    """An I-frame at quality 50000, then conditional P-frames at 30000 (what the encoder
    writes after a forced I-frame with an offset): the file, and the encoder's pictures."""
    fc, ic = FrameCodec(inter_model), InterCodec(inter_model)
    i = fc.encode(twelve[0], 50000)
    ctx, recons = ic.intra_context(i.latent, 50000), [i.recon]
    units = [(FRAME_I, 50000, i.payload)]
    for t in range(1, 5):
        p = ic.encode(twelve[t], twelve[t - 1], 30000, ctx)
        ctx = p.context
        units.append((FRAME_PC, 30000, p.payload))
        recons.append(p.recon)
    out = tmp_path_factory.mktemp("offset") / "a.lvc"
    header = SequenceHeader(inter_model.name, inter_model.weights_hash, 128, 64, 25, 5, 32)
    with LvcWriter(out, header) as w:
        for unit in units:
            w.write_frame(*unit)
        w.commit()
    return out, recons


def test_conditional_frames_below_their_i_frame_decode_to_the_encoders_pictures(offset_stream, inter_model_file):
    out, recons = offset_stream
    assert api.info(out)["version"] == "1.2"
    decoded = list(api.iter_decode(out, model=str(inter_model_file)))
    assert all(np.array_equal(a, b) for a, b in zip(decoded, recons, strict=True))


def test_the_encoder_codes_forced_i_frames_above_the_rest(inter_model_file, inter_model, twelve, tmp_path):
    """Forced I-frames take the offset, a share of the headroom (0.4 + 0.25 * 0.6), and so do
    the I- and residual P-frames that continue their latent chain; conditional frames, and
    I-frames after them, keep --quality. The file decodes to the encoder's pictures."""
    src, out = tmp_path / "twelve.y4m", tmp_path / "a.lvc"
    write_y4m(src, twelve)
    api.encode(src, out, quality=0.4, model=str(inter_model_file), intra_period=6, intra_offset=0.25,
               progress=False)
    frames = api.info(out)["frames"]
    chain = None  # the quality of the open latent chain (I / P), None after a conditional frame
    for f in frames:
        if f["type"] in ("PC", "PS", "PM", "PQ"):
            expected, chain = 0.4, None
        else:
            expected = 0.55 if f["index"] % 6 == 0 else chain or 0.4
            chain = expected
        assert round(f["quality"], 4) == expected, f
    expected = encoder_recons(inter_model, src, 0.4, intra_period=6, intra_offset=0.25)
    decoded = list(api.iter_decode(out, model=str(inter_model_file), planes=None))
    assert len(decoded) == 12 and all(same_picture(a, b) for a, b in zip(decoded, expected, strict=True))


def test_residual_p_frames_continue_a_raised_chain(inter_model_file, inter_model, twelve, tmp_path, monkeypatch):
    """With conditional frames ruled out, a forced I-frame's group is I- and residual
    P-frames at the I-frame's quality, and decodes bit for bit."""
    import dataclasses

    estimate, pc = FrameCodec.estimate_bits, InterCodec.encode
    # every non-forced frame's decision: I and PC priced out, so P wins
    monkeypatch.setattr(FrameCodec, "estimate_bits", lambda self, y, q, reference=None, **k:
                        estimate(self, y, q, reference, **k) + (1e9 if reference is None else 0))
    monkeypatch.setattr(InterCodec, "encode", lambda self, *a, **k:
                        dataclasses.replace(pc(self, *a, **k), estimated_bits=1e9))
    src, out = tmp_path / "still.y4m", tmp_path / "a.lvc"
    write_y4m(src, twelve[:6])
    api.encode(src, out, quality=0.4, model=str(inter_model_file), intra_offset=0.25, progress=False,
               layer_intra=False)  # (an IL frame leaves no latent chain)
    frames = api.info(out)["frames"]
    assert [f["type"] for f in frames] == ["I"] + ["P"] * 5
    assert {round(f["quality"], 4) for f in frames if f["type"] in ("I", "P")} == {0.55}
    expected = encoder_recons(inter_model, src, 0.4, intra_offset=0.25, layer_intra=False)
    decoded = list(api.iter_decode(out, model=str(inter_model_file), planes=None))
    assert all(same_picture(a, b) for a, b in zip(decoded, expected, strict=True))


def test_without_an_offset_the_stream_keeps_its_old_format(inter_model_file, twelve, tmp_path):
    """One quality throughout (and no residual layer) needs nothing of 1.2 or 1.3: older
    decoders keep reading such streams."""
    src, out = tmp_path / "twelve.y4m", tmp_path / "a.lvc"
    write_y4m(src, twelve[:4])
    api.encode(src, out, quality=0.4, model=str(inter_model_file), intra_offset=0.0, progress=False, residual=0,
               colour="rgb")
    info = api.info(out)
    assert info["version"] == "1.0" and {round(f["quality"], 4) for f in info["frames"]} == {0.4}


@pytest.mark.parametrize("intra_period", [1, None])  # intra only; a one-frame video
def test_no_offset_where_no_conditional_frame_follows(inter_model_file, twelve, tmp_path, intra_period):
    src, out = tmp_path / "in.y4m", tmp_path / "a.lvc"
    write_y4m(src, twelve[:3] if intra_period else twelve[:1])
    api.encode(src, out, quality=0.4, model=str(inter_model_file), intra_period=intra_period or 32,
               intra_offset=0.25, progress=False)
    assert {round(f["quality"], 4) for f in api.info(out)["frames"]} == {0.4}


def test_writer_raises_the_minor_version_only_for_conditional_frames_at_another_quality(tmp_path):
    header = SequenceHeader("m", bytes(8), 16, 16, 25, 1, 32)
    cases = {"same": [(FRAME_I, 9), (FRAME_PC, 9), (FRAME_PS, 9), (FRAME_I, 7), (FRAME_P, 7), (FRAME_PC, 7)],
             "mixed": [(FRAME_I, 9), (FRAME_PS, 7)]}
    for name, units in cases.items():
        with LvcWriter(tmp_path / f"{name}.lvc", header) as w:
            for ft, q in units:
                w.write_frame(ft, q, b"\0" * 4)
            w.commit()
        with LvcReader(tmp_path / f"{name}.lvc") as r:
            assert r.header.version == (1, 0 if name == "same" else 2)
            assert [(u.frame_type, u.quality) for u in r.units()] == units


def test_an_older_stream_with_mixed_qualities_is_refused_as_corrupt(offset_stream, tmp_path):
    """Before 1.2 a chain had one quality: such a stream claiming 1.1 is damaged."""
    out, _ = offset_stream
    data = bytearray(out.read_bytes())
    with LvcReader(out) as r:
        size = r.header_size
    data[5] = 1  # version_minor
    data[size - 4:size] = zlib.crc32(bytes(data[:size - 4])).to_bytes(4, "little")
    bad = tmp_path / "old.lvc"
    bad.write_bytes(bytes(data))
    with LvcReader(bad) as r:
        assert r.header.version == (1, 1)
        with pytest.raises(BitstreamError, match="frame 1: .*quality differs"):
            list(r.units())
