"""Bad input: one clear line, non-zero exit, no traceback, no (partial) output file."""

from __future__ import annotations

import struct
import zlib

import pytest
from conftest import DATA, run_lvc

from lvc.bitstream import syntax
from lvc.bitstream.container import SequenceHeader


def _assert_clean_failure(r, *needles: str) -> None:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def _no_output_left(folder) -> None:
    assert sorted(p.name for p in folder.iterdir() if p.name != "in") == []


@pytest.fixture
def work(tmp_path):
    (tmp_path / "in").mkdir()
    return tmp_path


def test_missing_input(work):
    _assert_clean_failure(run_lvc("encode", work / "nope.mp4", "-o", work / "a.lvc"), "no such file")
    _no_output_left(work)


def test_not_a_video(work):
    bad = work / "in" / "bad.mp4"
    bad.write_bytes(b"this is not a video" * 50)
    _assert_clean_failure(run_lvc("encode", bad, "-o", work / "a.lvc"), "bad.mp4")
    _no_output_left(work)


def test_zero_frames(work):
    empty = work / "in" / "empty.y4m"
    empty.write_bytes(b"YUV4MPEG2 W64 H48 F25:1 Ip A1:1 C420jpeg\n")
    _assert_clean_failure(run_lvc("encode", empty, "-o", work / "a.lvc"), "frame")
    _no_output_left(work)


def test_empty_folder(work):
    _assert_clean_failure(run_lvc("encode", work / "in", "-o", work / "a.lvc"), "no PNG frames")
    _no_output_left(work)


def test_unwritable_output(work, clip, tiny_model):
    r = run_lvc("encode", clip, "-o", work / "missing-dir" / "a.lvc", "--model", tiny_model)
    _assert_clean_failure(r, "cannot write")


def test_unknown_model(work, clip):
    _assert_clean_failure(run_lvc("encode", clip, "-o", work / "a.lvc", "--model", "no-such-model"),
                          "unknown model")
    _no_output_left(work)


def test_stream_needs_missing_model(work):
    r = run_lvc("decode", DATA / "golden.lvc", "-o", work / "a.y4m")
    _assert_clean_failure(r, "lvc-test-tiny")
    _no_output_left(work)


def _decode_fails(work, data: bytes, tiny_model, *needles: str, info_fails: bool = True) -> None:
    src = work / "in" / "x.lvc"
    src.write_bytes(data)
    _assert_clean_failure(run_lvc("decode", src, "-o", work / "out.y4m", "--model", tiny_model), *needles)
    _no_output_left(work)
    r = run_lvc("info", src)
    assert (r.returncode != 0) == info_fails and "Traceback" not in r.stderr


def test_wrong_magic(work, tiny_model):
    _decode_fails(work, b"RIFF" + (DATA / "golden.lvc").read_bytes()[4:], tiny_model, "not an .lvc file")


def test_wrong_version(work, tiny_model):
    data = bytearray((DATA / "golden.lvc").read_bytes())
    data[4] = 9
    _decode_fails(work, bytes(data), tiny_model, "version 9")


def test_truncated_stream(work, tiny_model):
    data = (DATA / "golden.lvc").read_bytes()
    _decode_fails(work, data[: len(data) - 40], tiny_model, "frame 5", "truncated")


def test_truncated_header(work, tiny_model):
    _decode_fails(work, (DATA / "golden.lvc").read_bytes()[:20], tiny_model, "truncated")


def test_corrupted_payload_names_frame(work, tiny_model):
    data = bytearray((DATA / "golden.lvc").read_bytes())
    data[-10] ^= 0xFF
    _decode_fails(work, bytes(data), tiny_model, "frame 5", "CRC")


def test_corrupted_header(work, tiny_model):
    data = bytearray((DATA / "golden.lvc").read_bytes())
    data[30] ^= 0x01
    _decode_fails(work, bytes(data), tiny_model)


def _header_with(**changes) -> bytes:
    import hashlib

    tiny_hash = hashlib.sha256((DATA / "tiny.lvcm").read_bytes()).digest()[:8]
    base = dict(model_name="lvc-test-tiny", weights_hash=tiny_hash, width=64, height=48,
                fps=__import__("fractions").Fraction(25), frame_count=1, intra_period=0, version_minor=0)
    base.update(changes)
    values = dict(magic=syntax.MAGIC, version_major=1, version_minor=base["version_minor"],
                  model_name=base["model_name"], weights_hash=base["weights_hash"], width=base["width"],
                  height=base["height"], fps_num=25,
                  fps_den=1, frame_count=base["frame_count"], colour_format=0, intra_period=0,
                  extension_length=0, extensions=b"")
    body = b"".join(_field(f, values[f.name]) for f in syntax.SEQUENCE_HEADER[:-1])
    return body + struct.pack("<I", zlib.crc32(body))


def _field(f, v) -> bytes:
    fmt = {"u8": "<B", "u16": "<H", "u32": "<I"}.get(f.kind)
    if fmt:
        return struct.pack(fmt, v)
    if f.kind == "str8":
        return bytes([len(v)]) + v.encode()
    return v


def test_absurd_dimensions_refused_before_allocating(work, tiny_model):
    _decode_fails(work, _header_with(width=16384, height=16384), tiny_model, "exceeds the limit")


def test_absurd_frame_count_refused(work, tiny_model):
    _decode_fails(work, _header_with(frame_count=(1 << 24) + 1), tiny_model, "frame_count")


def test_huge_frame_with_tiny_payload_refused(work, tiny_model):
    from lvc.bitstream.container import pack_frame

    _decode_fails(work, _header_with(width=8192, height=8192) + pack_frame(0, 100, b"\0" * 8), tiny_model,
                  "frame 0", "too short", info_fails=False)


def test_unknown_frame_type_is_unsupported(work, tiny_model):
    from lvc.bitstream.container import pack_frame

    _decode_fails(work, _header_with() + pack_frame(7, 100, b"\0" * 8), tiny_model, "frame type 7",
                  "not supported", info_fails=False)


def test_a_newer_minor_version_names_the_likelier_cause(work, tiny_model):
    """A frame this lvc cannot decode in a stream of a newer minor version is most likely a
    feature added since, not corruption: the error says so."""
    from lvc.bitstream.container import pack_frame

    minor = syntax.VERSION_MINOR + 1
    _decode_fails(work, _header_with(version_minor=minor) + pack_frame(7, 100, b"\0" * 8), tiny_model,
                  "frame type 7", f"format 1.{minor}, newer than this lvc's 1.{syntax.VERSION_MINOR}",
                  "newer lvc", info_fails=False)
    damaged = bytearray(_header_with(version_minor=minor) + pack_frame(0, 100, b"\0" * 8))
    damaged[-1] ^= 1  # a payload that fails its CRC is damage, whatever the version
    _decode_fails(work, bytes(damaged), tiny_model, "CRC", "corrupted")


def test_header_pack_roundtrip():
    from fractions import Fraction

    h = SequenceHeader("m", b"12345678", 17, 33, Fraction(30000, 1001), 3, 32)
    vals, pos = syntax.unpack(syntax.SEQUENCE_HEADER, h.pack(), 0, "x")
    assert pos == len(h.pack()) and vals["width"] == 17 and vals["fps_num"] == 30000


def test_bad_quality_argument(work, clip):
    r = run_lvc("encode", clip, "-o", work / "a.lvc", "--quality", "1.5")
    assert r.returncode == 2 and "outside [0, 1]" in r.stderr and "Traceback" not in r.stderr
    _no_output_left(work)


def test_garbage_payload_with_valid_crc_is_refused(work, tiny_model):
    import numpy as np

    from lvc.bitstream.container import LvcReader, pack_frame

    with LvcReader(DATA / "golden.lvc") as r:
        head = (DATA / "golden.lvc").read_bytes()[: r.header_size]
    rng = np.random.default_rng(0)
    units = b"".join(pack_frame(0, 30000, rng.integers(0, 256, 64, dtype=np.uint8).tobytes()) for _ in range(6))
    # `info` reads only the container, which is valid here; decoding must refuse the payload.
    _decode_fails(work, head + units, tiny_model, "frame 0", "does not decode", info_fails=False)


def test_unrepresentable_frame_rate_leaves_nothing(work, clip, tiny_model):
    r = run_lvc("encode", clip, "-o", work / "a.lvc", "--fps", "2000000", "--model", tiny_model)
    _assert_clean_failure(r, "fps_num")
    _no_output_left(work)


def test_a_closed_output_pipe_ends_quietly(tmp_path, tiny_model, clip, monkeypatch, capsys):
    """`lvc info X | head -1`: when the reader goes away, exit 141 without a traceback."""
    import io
    import os

    from lvc.cli import main

    out = tmp_path / "a.lvc"
    assert main(["encode", str(clip), "-o", str(out), "--model", tiny_model]) == 0

    class ClosedPipe(io.StringIO):
        def write(self, s):
            raise BrokenPipeError(32, "Broken pipe")

        def fileno(self):
            return os.open(os.devnull, os.O_WRONLY)

    monkeypatch.setattr("sys.stdout", ClosedPipe())
    assert main(["info", str(out)]) == 141
