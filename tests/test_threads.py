"""Decoding in fresh processes with 1 and 2 threads gives identical output."""

from __future__ import annotations

import hashlib

from conftest import run_lvc


def test_decode_identical_across_processes_and_threads(tmp_path, clip):
    lvc = tmp_path / "a.lvc"
    r = run_lvc("encode", clip, "-o", lvc, "--quality", "0.7", "--threads", "2")
    assert r.returncode == 0, r.stderr
    digests = set()
    for threads in ("1", "2"):
        out = tmp_path / f"t{threads}.y4m"
        r = run_lvc("decode", lvc, "-o", out, "--threads", threads)
        assert r.returncode == 0, r.stderr
        digests.add(hashlib.sha256(out.read_bytes()).hexdigest())
    assert len(digests) == 1


def test_encode_identical_across_thread_counts(tmp_path, clip, tiny_model):
    outs = []
    for threads in ("1", "2"):
        out = tmp_path / f"e{threads}.lvc"
        r = run_lvc("encode", clip, "-o", out, "--threads", threads, "--model", tiny_model)
        assert r.returncode == 0, r.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
