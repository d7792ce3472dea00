"""A committed .lvc keeps decoding to the committed frames (bitstream compatibility)."""

from __future__ import annotations

import json

from conftest import DATA, frames_hash

from lvc.codec import api


def test_golden_stream_decodes_to_committed_checksum(tiny_model):
    expected = json.loads((DATA / "golden.json").read_text())["frames_sha256"]
    assert frames_hash(api.iter_decode(DATA / "golden.lvc", model=tiny_model)) == expected


def test_golden_stream_header():
    info = api.info(DATA / "golden.lvc")
    assert (info["width"], info["height"], info["frame_count"], info["model"]) == (64, 48, 6, "lvc-test-tiny")
