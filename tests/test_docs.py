"""docs/bitstream.md shows exactly the syntax declared in code."""

from __future__ import annotations

from pathlib import Path

from lvc.bitstream.syntax import FRAME_HEADER, RESIDUAL_HEADER, SEQUENCE_HEADER, markdown_table

DOC = Path(__file__).parents[1] / "docs" / "bitstream.md"


def test_bitstream_doc_matches_syntax():
    text = DOC.read_text()
    assert markdown_table(SEQUENCE_HEADER) in text
    assert markdown_table(FRAME_HEADER) in text
    assert markdown_table(RESIDUAL_HEADER) in text
