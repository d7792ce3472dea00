"""decode(encode(x)) is the encoder's own reconstruction, bit for bit; encoding is deterministic."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from conftest import DATA, frames_hash

import lvc.codec.frame as frame_module
from lvc.codec import api
from lvc.codec.frame import FrameCodec, quality_lambda
from lvc.codec.refine import refine_latent
from lvc.codec.sequence import PRESETS, SequenceEncoder
from lvc.entropy import coder
from lvc.entropy.tables import LOG_FRAC_BITS
from lvc.io.reader import open_video
from lvc.io.writer import FrameWriter
from lvc.models.registry import load_model


def _recons(model: str, clip, q: int, intra_period: int = 32) -> list[np.ndarray]:
    """The encoder's own reconstructions, frame by frame (I- and P-frames as it decides)."""
    with open_video(clip) as v:
        frames = list(v.frames())
    still = PRESETS["medium"].still_steps(frames[0].shape[0] * frames[0].shape[1]) if len(frames) == 1 else None
    enc = SequenceEncoder(load_model(model), q, intra_period, still, residual=0.0 if still else None)
    return [enc.encode(f).recon for f in frames]


def test_decode_equals_encoder_reconstruction(tmp_path, tiny_model, clip):
    out = tmp_path / "a.lvc"
    api.encode(clip, out, quality=0.5, model=tiny_model, progress=False, colour="rgb")
    decoded = list(api.iter_decode(out, model=tiny_model))
    expected = _recons(tiny_model, clip, round(0.5 * 65535))
    assert len(decoded) == len(expected) == 6
    for d, e in zip(decoded, expected):
        assert d.dtype == np.uint8 and np.array_equal(d, e)


def test_two_encodes_give_identical_bytes(tmp_path, tiny_model, clip):
    a, b = tmp_path / "a.lvc", tmp_path / "b.lvc"
    api.encode(clip, a, quality=0.3, model=tiny_model, progress=False)
    api.encode(clip, b, quality=0.3, model=tiny_model, progress=False)
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize("quality", [0.0, 0.5, 1.0])
def test_actual_bits_cover_estimate_with_small_overhead(tmp_path, tiny_model, clip, quality):
    out = tmp_path / "a.lvc"
    res = api.encode(clip, out, quality=quality, model=tiny_model, progress=False)
    info = api.info(out)
    payload_bits = 8 * sum(u["payload_bytes"] + u["residual_bytes"] for u in info["frames"])
    assert payload_bits >= res.estimated_bits
    # range coder termination costs at most a few 32-bit words per frame
    assert payload_bits - res.estimated_bits <= 6 * 32 * res.frames


def test_container_overhead_is_small_at_416x240(tmp_path):
    """The shipped model at 416x240, 12 frames: the range coder adds at most two 32-bit words
    per frame to the entropy estimate, the headers about 9 bytes per frame, and the file
    exceeds the estimate by < 3% (the skip P-frames here are 350-600 bytes, so 9 bytes are
    1.5-2.5%)."""
    from PIL import Image

    from lvc.codec.cli import sample_clip

    with open_video(sample_clip()) as v:
        frames = [np.asarray(Image.fromarray(f).resize((416, 240), Image.Resampling.BICUBIC))
                  for _, f in zip(range(12), v.frames())]
    src = tmp_path / "in"
    w = FrameWriter(str(src) + "/", 416, 240, Fraction(25))
    for f in frames:
        w.write(f)
    w.commit()
    res = api.encode(src, tmp_path / "a.lvc", quality=0.5, progress=False)
    info = api.info(tmp_path / "a.lvc")
    payload_bits = 8 * sum(f["payload_bytes"] + f["residual_bytes"] for f in info["frames"])
    assert 0 <= payload_bits - res.estimated_bits <= 64 * res.frames
    assert res.bytes - payload_bits // 8 <= 128 + 12 * res.frames
    overhead = res.bytes * 8 / res.estimated_bits - 1
    assert 0 <= overhead < 0.03, overhead


@pytest.mark.parametrize("size", [(17, 33), (16, 16), (33, 17)])
def test_odd_sizes_and_one_frame(tmp_path, tiny_model, size):
    w_, h_ = size
    rng = np.random.default_rng(1)
    img = (rng.random((h_, w_, 3)) * 255).astype(np.uint8)
    img = np.cumsum(img, axis=1).astype(np.uint8)  # some structure, not just noise
    src = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(img).save(src)
    out = tmp_path / "x.lvc"
    res = api.encode(src, out, model=tiny_model, progress=False)
    assert res.frames == 1 and (res.width, res.height) == (w_, h_)
    dec = tmp_path / "x_dec.png"
    api.decode(out, dec, model=tiny_model, progress=False)
    got = np.asarray(Image.open(dec))
    assert got.shape == (h_, w_, 3)
    assert np.array_equal(got, _recons(tiny_model, src, round(0.5 * 65535))[0])


def test_y4m_output_keeps_exact_size_and_frames(tmp_path, tiny_model, clip):
    out = tmp_path / "a.lvc"
    api.encode(clip, out, model=tiny_model, progress=False)
    y4m = tmp_path / "a.y4m"
    api.decode(out, y4m, model=tiny_model, progress=False)
    with open_video(y4m) as v:
        assert (v.info.width, v.info.height, v.info.fps) == (64, 48, Fraction(25))
        assert sum(1 for _ in v.frames()) == 6


def test_png_folder_input(tmp_path, tiny_model, clip):
    folder = tmp_path / "frames"
    api.decode(tmp_path / "a.lvc" if False else _encode(tmp_path, tiny_model, clip), str(folder) + "/",
               model=tiny_model, progress=False)
    assert len(list(folder.glob("*.png"))) == 6
    res = api.encode(folder, tmp_path / "b.lvc", model=tiny_model, fps=Fraction(30000, 1001), progress=False)
    assert res.frames == 6 and api.info(tmp_path / "b.lvc")["fps"] == "30000/1001"


def _encode(tmp_path, model, clip):
    out = tmp_path / "a.lvc"
    api.encode(clip, out, model=model, progress=False)
    return out


def test_quality_is_monotonic_for_shipped_model(tmp_path, clip):
    sizes, psnrs = [], []
    for q in (0.0, 0.25, 0.5, 0.75, 1.0):
        r = api.encode(clip, tmp_path / f"{q}.lvc", quality=q, progress=False)
        sizes.append(r.bytes)
        psnrs.append(r.metrics["psnr_rgb"])
    assert sizes == sorted(sizes) and psnrs == sorted(psnrs), (sizes, psnrs)


def test_streaming_decode_yields_before_reading_everything(tmp_path, tiny_model, clip):
    out = _encode(tmp_path, tiny_model, clip)
    data = out.read_bytes()
    # Truncate inside the last frame: earlier frames still come out before the error.
    cut = tmp_path / "cut.lvc"
    cut.write_bytes(data[:-3])
    it = api.iter_decode(cut, model=tiny_model)
    first = next(it)
    assert first.shape == (48, 64, 3)
    assert frames_hash([first]) == frames_hash(list(api.iter_decode(out, model=tiny_model))[:1])


@pytest.mark.parametrize("bf16", [False, True])  # the relaxed steps' synthesis (scoring stays float32)
@pytest.mark.parametrize("model_file", ["tiny.lvcm", "tiny-ctx.lvcm"])  # without / with the checkerboard
def test_latent_refinement_stays_bit_exact_and_lowers_rd_cost(model_file, bf16, clip, monkeypatch):
    monkeypatch.setattr(frame_module, "bf16_synthesis", lambda: bf16)
    model = load_model(str(DATA / model_file))
    with open_video(clip) as v:
        frame = next(v.frames())
    q = 40000
    lmbda = quality_lambda(model, q)

    def cost(r):
        mse = np.mean((r.recon.astype(np.float64) - frame) ** 2) / 255**2
        return lmbda * 255**2 * mse + r.estimated_bits / (frame.shape[0] * frame.shape[1])

    plain = FrameCodec(model).encode(frame, q)
    refined_codec = FrameCodec(model, refine_steps=8)
    refined = refined_codec.encode(frame, q)
    assert np.array_equal(refined_codec.decode(refined.payload, 48, 64, q)[0], refined.recon)
    assert cost(refined) <= cost(plain) * 1.01
    # The annealing is stochastic but seeded: the same input gives the same stream.
    assert FrameCodec(model, refine_steps=8).encode(frame, q).payload == refined.payload


def test_roundtrip_command_with_model_path(tmp_path, clip, tiny_model):
    from conftest import run_lvc

    r = run_lvc("roundtrip", clip, "--out", tmp_path, "--model", tiny_model, "--frames", "2")
    assert r.returncode == 0, r.stderr
    assert "decoder output equals the encoder's reconstruction" in r.stdout
    assert "MS-SSIM" in r.stdout


def test_encode_scores_ms_ssim_only_when_asked(tmp_path, clip, tiny_model):
    """``lvc encode`` reports PSNR by default (MS-SSIM costs a third of the encode time);
    ``--ms-ssim`` adds it, and the stream is the same either way."""
    import json

    from conftest import run_lvc

    out = {}
    for extra in ([], ["--ms-ssim"]):
        path = tmp_path / f"{len(extra)}.lvc"
        r = run_lvc("encode", clip, "-o", path, "--model", tiny_model, "--frames", "2", "--json", *extra)
        assert r.returncode == 0, r.stderr
        out[len(extra)] = (json.loads(r.stdout)["metrics"], path.read_bytes())
    assert "psnr_rgb" in out[0][0] and "ms_ssim" not in out[0][0]
    assert 0 < out[1][0]["ms_ssim"] <= 1 and out[1][0]["psnr_rgb"] == out[0][0]["psnr_rgb"]
    assert out[0][1] == out[1][1]


def test_refined_side_information_is_what_the_stream_carries(clip, monkeypatch):
    """The I-frame search moves ``z_hat`` too: the stream carries the searched ``z_hat`` and
    ``y`` exactly (coded symbols, the bits reported), and decodes to the encoder's pictures."""
    found = []

    def spy(*args, **kwargs):
        found.append(refine_latent(*args, **kwargs))
        return found[-1]

    monkeypatch.setattr(frame_module, "refine_latent", spy)
    model = load_model(str(DATA / "tiny-ctx.lvcm"))
    with open_video(clip) as v:
        frame = next(v.frames())
    q, (h, w) = 40000, frame.shape[:2]
    codec = FrameCodec(model, refine_steps=30)
    r = codec.encode(frame, q)
    (y, z_hat), = found
    side = codec._side
    plain_z = FrameCodec(model).plan(codec.analyse(frame, q)[0], q).z_hat
    coded_z = side.coder.decode(coder.new_decoder(r.payload), side.index(tuple(z_hat.shape)))
    assert not torch.equal(z_hat, plain_z) and np.array_equal(coded_z.reshape(z_hat.shape), z_hat.numpy())
    assert torch.equal(r.latent, torch.round(y * 2**LOG_FRAC_BITS).long())
    assert np.array_equal(codec.decode(r.payload, h, w, q)[0], r.recon)
