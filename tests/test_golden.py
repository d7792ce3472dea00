"""A committed .lvc keeps decoding to the committed frames (bitstream compatibility)."""

from __future__ import annotations

import json

import pytest
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
