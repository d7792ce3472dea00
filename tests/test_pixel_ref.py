"""``pixel_ref`` conditional models: P-frame pictures blend in the previous picture, moved.

The blend makes each picture depend on the one before, so these check that the decoder
still shows exactly the encoder's pictures (across thread counts, with skipped blocks), that
the blend is what it says, and that a plain model's checkpoint grows into one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_decodes_to_encoder, write_y4m

from lvc.codec.decoder import SequenceDecoder
from lvc.codec.frame import FrameCodec
from lvc.codec.inter import InterCodec
from lvc.models.conditional import ConditionalConfig, ConditionalP
from lvc.models.frozen import freeze, load_frozen, save_frozen
from lvc.models.latent import LatentModel, ModelConfig
from lvc.models.registry import load_model
from lvc.train.inter import InterTrainConfig, init_from, train_inter

PIXEL = ConditionalConfig(M=8, C=8, N=8, Nh=8, intra_M=16, levels=3, pixel_ref=True)


def _model(tmp_path_factory, name: str, mask_bias: float, correction: bool):
    torch.manual_seed(3)
    intra = LatentModel(ModelConfig(N=8, M=16, Nh=8, levels=3))
    inter = ConditionalP(PIXEL)
    with torch.no_grad():
        last = inter.g_d[-1]
        last.bias[3] = mask_bias
        if correction:  # a correction and a weight that vary over the picture
            torch.nn.init.normal_(last.weight, std=0.05)
        else:
            last.weight.zero_()
            last.bias[:3] = last.bias[4:] = 0.0
    path = tmp_path_factory.mktemp("pixel") / f"{name}.lvcm"
    save_frozen(freeze(intra, name, inter=inter), path)
    return path


@pytest.fixture(scope="module")
def blending_file(tmp_path_factory):
    return _model(tmp_path_factory, "tiny-pixel", 0.0, True)


def test_pixel_ref_stream_decodes_to_the_encoders_pictures(blending_file, twelve, tmp_path):
    types = assert_decodes_to_encoder(blending_file, twelve, tmp_path)
    assert types[0] in ("I", "IL") and {"PC", "PS", "PM", "PQ"} & set(types)


def test_a_full_weight_and_no_correction_show_the_previous_picture_moved(tmp_path_factory, twelve):
    """Weight sigmoid(30) = 1 and no correction: a still frame's P picture is the I-frame's
    picture itself, and the decoder shows it too."""
    model = load_frozen(_model(tmp_path_factory, "tiny-copy", 30.0, False))
    fc, ic = FrameCodec(model), InterCodec(model)
    q = 40000
    i = fc.encode(twelve[0], q)
    p = ic.encode(twelve[0], twelve[0], q, ic.intra_context(i.latent, q), picture=i.pending)
    assert np.array_equal(p.recon, i.recon)
    dec = SequenceDecoder(model, 128, 64, "test")
    from lvc.bitstream.container import FRAME_I, FRAME_PC, FrameUnit

    dec.decode(FrameUnit(0, FRAME_I, q, i.payload, 0))
    assert np.array_equal(dec.decode(FrameUnit(1, FRAME_PC, q, p.payload, 0)), i.recon)
    with pytest.raises(ValueError, match="previous picture"):
        ic.encode(twelve[1], twelve[0], q, ic.intra_context(i.latent, q))


def test_a_plain_checkpoint_grows_into_a_pixel_ref_model():
    """``--init`` with ``--pixel-ref``: every old tensor is kept where it fits; the new inputs
    (the moved picture, to the analysis) start at zero and the new outputs at zero (weight
    1/2, no correction): the grown model shows the plain one's picture where the moved
    picture agrees with it, and that picture alone for a context shown without one."""
    torch.manual_seed(0)
    plain = ConditionalP(ConditionalConfig(M=8, C=8, N=8, Nh=8, intra_M=16, levels=3))
    grown = ConditionalP(PIXEL)
    partial = init_from(grown, plain.state_dict())
    assert partial == ["g_a_pix.0.weight", "g_d.4.bias", "g_d.4.weight"]
    g = grown.state_dict()
    assert torch.equal(g["g_a_pix.0.weight"][:, :3], plain.g_a_pix[0].weight)
    assert not g["g_a_pix.0.weight"][:, 3:].any() and not g["g_d.4.weight"][:, 3:].any()
    ctx = torch.randn(1, 8, 8, 8)
    plain_picture = plain.g_d(ctx)
    assert torch.allclose(grown.show(ctx, plain_picture), plain_picture, atol=1e-6)
    assert torch.allclose(grown.show(ctx), plain_picture, atol=1e-6)
    other = torch.rand_like(plain_picture)
    assert torch.allclose(grown.show(ctx, other), (plain_picture + other) / 2, atol=1e-6)


def test_train_inter_trains_and_resumes_a_pixel_ref_model(tiny_model, twelve, tmp_path):
    src = tmp_path / "five.y4m"
    write_y4m(src, twelve[:5])
    intra = load_model(tiny_model)
    shape = ConditionalConfig(M=8, C=8, N=8, Nh=8, intra_M=intra.config.M, levels=intra.log_gain.shape[0],
                              pixel_ref=True)

    def cfg(out, steps):
        return InterTrainConfig([str(src)], str(out), steps=steps, batch=2, crop=64, length=3, per_clip=3,
                                ckpt_every=1, keep=5, threads=1)

    straight = train_inter(cfg(tmp_path / "a", 2), intra, shape, progress=False)
    train_inter(cfg(tmp_path / "b", 1), intra, shape, progress=False)
    resumed = train_inter(cfg(tmp_path / "b", 2), intra, resume=True, progress=False)
    a, b = (torch.load(p, weights_only=False) for p in (straight, resumed))
    assert a["inter_config"]["pixel_ref"] is True
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_pixel_ref_model_files_carry_their_feature_in_the_format_tag(blending_file, tmp_path):
    """Readers without the blend must refuse such a file (its tag is not one they know), and
    a tag naming a feature this reader lacks is refused with advice, not as damage."""
    import io

    from lvc.errors import ModelError
    from lvc.models.frozen import PIXEL_REF, from_bytes

    state = torch.load(blending_file, weights_only=True)
    assert state["format"] == "lvc-model/4" + PIXEL_REF
    assert from_bytes(blending_file.read_bytes(), "x").inter.config.pixel_ref
    for tag, match in (("lvc-model/4+motion-blur", "upgrade lvc"), ("lvc-model/4", "damaged")):
        buf = io.BytesIO()
        torch.save({**state, "format": tag}, buf)
        with pytest.raises(ModelError, match=match):
            from_bytes(buf.getvalue(), "x")


@pytest.mark.parametrize("frac", [1, 4])  # whole pixels; quarter pixels (lvc.models.conditional subpel)
@pytest.mark.parametrize("shape", [(64, 128), (50, 90)])
def test_the_codecs_moved_picture_is_the_training_warp(shape, frac):
    """The codec moves pictures by slicing blocks out of an edge-padded copy (whole pixels)
    or by weighing every block's gathered source region in integers (quarter pixels);
    training moves them with :func:`warp` at full resolution, rounded to 8 bits. Both must
    agree pixel for pixel, frame sizes that are not whole blocks included; a quarter-pixel
    field of whole-pixel vectors is the block copy."""
    from lvc.codec.motion import warp
    from lvc.codec.skip import moved_picture

    g = torch.Generator().manual_seed(5)
    picture = torch.randint(0, 256, (*shape, 3), generator=g, dtype=torch.uint8).numpy()
    hb, wb = -(-shape[0] // 16), -(-shape[1] // 16)
    mv = torch.randint(-20 * frac, 20 * frac + 1, (hb, wb, 2), generator=g)
    mv[0, 0] = 0
    as_tensor = torch.from_numpy(picture).permute(2, 0, 1)[None].double()
    expected = torch.floor(warp(as_tensor, mv[None], 16, 1, frac) + 0.5)[0].permute(1, 2, 0).numpy()
    assert np.array_equal(moved_picture(picture, mv, 16, frac), expected)
    whole = mv - mv % frac
    assert np.array_equal(moved_picture(picture, whole, 16, frac), moved_picture(picture, whole // frac, 16))


def test_a_blended_picture_is_composed_once_whichever_threads_ask(monkeypatch):
    """The decoder composes pictures on a thread of its own while the decoding thread may
    resolve a long chain: both get the one picture, composed once."""
    import threading
    import time
    from concurrent.futures import Future

    from lvc.codec import blend

    calls = []
    real = blend.moved_picture

    def slow_moved(*a, **k):
        calls.append(1)
        time.sleep(0.05)
        return real(*a, **k)

    monkeypatch.setattr(blend, "moved_picture", slow_moved)
    raw, previous = Future(), Future()
    raw.set_result(torch.zeros(7, 32, 48))
    previous.set_result(np.full((32, 48, 3), 100, np.uint8))
    mv = torch.tensor([4, -2]).expand(2, 3, 2)
    picture = blend.BlendedPicture(raw, previous, mv, 16)
    out = [None] * 4

    def ask(i):
        out[i] = picture.result()

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and all(o is out[0] for o in out)
    assert np.array_equal(out[0], np.full((32, 48, 3), 50, np.uint8))  # weight 1/2 of 0 and 100
