"""The encoder's banded pictures and its lookahead thread change no pixel and no byte."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from lvc.codec.synthesis import ENCODER_BANDS, Bands, Synthesizer, WorkerPool
from lvc.entropy.tables import LOG_FRAC_BITS
from lvc.models.registry import default_model, load_model


@pytest.mark.parametrize("size", [(240, 416), (100, 130)])
def test_banded_pictures_are_the_whole_pictures_bit_for_bit(size):
    """The encoder synthesises pictures in row bands (each with a halo of input rows), the
    decoder whole: the pictures must be the same bit for bit, or a pixel-reference chain
    would drift between them. Checked with the shipped video model's display (bf16 where the
    CPU has it) and intra synthesis, at a frame size the padding does not divide, against
    the whole padded latent; the encoder's own check on its first picture must pass here."""
    fm = load_model(default_model())
    h, w = size
    g = torch.Generator().manual_seed(h)
    for net, bf16, channels, scale in ((fm.inter.g_d, True, fm.inter.config.C, 8), (fm.g_s, False, 192, 16)):
        latent = torch.randint(-(2**17), 2**17, (1, channels, -(-h // 64) * 64 // scale, -(-w // 64) * 64 // scale),
                               generator=g)
        gain = torch.ones(1, 1, 1, 1)
        whole = Synthesizer(net, 1, bf16=bf16)
        try:
            want = whole.submit(latent, gain, h, w, raw=True).result()
            assert torch.equal(want, _every_row(whole, latent, h, w))  # rows below the frame skipped
            for bands in (ENCODER_BANDS, 3):
                banded = Synthesizer(net, bands, bf16=bf16, bands=bands)
                try:
                    # the first picture is whole, and checks the bands against itself
                    assert torch.equal(banded.submit(latent, gain, h, w, raw=True).result(), want)
                    assert banded._bands_exact
                    picture = banded.submit(latent, gain, h, w, raw=True)
                    assert isinstance(picture, Bands) and torch.equal(picture.result(), want)
                    assert np.array_equal(banded.submit(latent, gain, h, w).result(),
                                          whole.submit(latent, gain, h, w).result())
                finally:
                    banded.close()
        finally:
            whole.close()


def _every_row(synthesis: Synthesizer, latent: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The picture from the whole padded latent, as synthesis computed it before bands."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as on a synthesis worker
    try:
        with torch.no_grad():
            y = (latent.float() / (1 << LOG_FRAC_BITS)).contiguous(memory_format=torch.channels_last)
            if synthesis.bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    x = synthesis.g_s[:-1](y)
                x = synthesis.g_s[-1](x.float())
            else:
                x = synthesis.g_s(y)
        return x[0, :, :h, :w].contiguous()
    finally:
        torch.set_num_threads(before)


def test_the_lookahead_changes_no_byte(inter_model, twelve):
    """Given the next frame, the encoder searches its motion and analyses it ahead, on a
    thread of its own: the stream is the one coded without lookahead."""
    from lvc.bitstream.container import CONDITIONAL
    from lvc.codec.sequence import SequenceEncoder

    streams = []
    for ahead in (False, True):
        enc = SequenceEncoder(inter_model, 40000, 6)
        try:
            frames = [np.array(f) for f in twelve]
            streams.append([(c.frame_type, c.payload) for c in (
                enc.encode(f, frames[i + 1] if ahead and i + 1 < len(frames) else None)
                for i, f in enumerate(frames))])
        finally:
            enc.close()
    assert streams[0] == streams[1]
    assert sum(t in CONDITIONAL for t, _ in streams[0]) >= 4  # searched frames


def test_a_worker_keeps_one_thread_when_the_main_thread_sets_its_own_count_first():
    """A thread initialises its count lazily from the last count set anywhere: a worker whose
    first op came after the main thread changed its own count ran on that count (and the
    synthesis refused it, failing an encode at random)."""
    before = torch.get_num_threads()
    pool = WorkerPool(1, "lvc-test")
    started, go = threading.Event(), threading.Event()

    def job() -> int:
        started.set()
        go.wait(10)
        return torch.get_num_threads()

    try:
        future = pool.submit(job)
        assert started.wait(10)
        torch.set_num_threads(2)  # e.g. serial_main_thread restoring the caller's count
        go.set()
        assert future.result(timeout=10) == 1
    finally:
        go.set()
        pool.close()
        torch.set_num_threads(before)
