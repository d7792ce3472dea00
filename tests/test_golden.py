"""A committed .lvc keeps decoding to the committed frames (bitstream compatibility)."""

from __future__ import annotations

import json

from conftest import DATA
from make_golden import digests

from lvc.codec import api


def test_golden_stream_decodes_to_committed_checksums(tiny_model):
    """Latents pin the format (exact on any machine); frames pin this machine type's synthesis."""
    expected = json.loads((DATA / "golden.json").read_text())
    assert digests(DATA / "golden.lvc", tiny_model) == expected


def test_golden_stream_header():
    info = api.info(DATA / "golden.lvc")
    assert (info["width"], info["height"], info["frame_count"], info["model"]) == (64, 48, 6, "lvc-test-tiny")
