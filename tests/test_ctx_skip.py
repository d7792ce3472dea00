"""``skip`` conditional models: the context update also adds a linear map of the latent.

Checks that the path is exact (the decoder shows the encoder's pictures), that model files
name it in their format tag, and that a checkpoint grows into a wider ``skip`` model that
shows exactly what it did (the new channels' readers and the map start at zero).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from conftest import assert_decodes_to_encoder

from lvc.errors import InputError
from lvc.models.conditional import ConditionalConfig, ConditionalP
from lvc.models.frozen import CTX_SKIP, freeze, from_bytes, save_frozen
from lvc.models.latent import LatentModel, ModelConfig
from lvc.train.inter import LATENT_PATH, fresh_parts, init_from

PLAIN = ConditionalConfig(M=8, C=8, N=8, Nh=8, intra_M=16, levels=3, pixel_ref=True)
SKIP = replace(PLAIN, M=12, skip=True)


@pytest.fixture(scope="module")
def skip_file(tmp_path_factory):
    torch.manual_seed(5)
    intra = LatentModel(ModelConfig(N=8, M=16, Nh=8, levels=3))
    inter = ConditionalP(SKIP)
    with torch.no_grad():  # a map that moves the context (it starts at zero)
        torch.nn.init.normal_(inter.g_c_skip[0].weight, std=0.1)
    path = tmp_path_factory.mktemp("skip") / "tiny-skip.lvcm"
    save_frozen(freeze(intra, "tiny-skip", inter=inter), path)
    return path


def test_skip_stream_decodes_to_the_encoders_pictures(skip_file, twelve, tmp_path):
    types = assert_decodes_to_encoder(skip_file, twelve, tmp_path)
    assert types[0] in ("I", "IL") and {"PC", "PS", "PM", "PQ"} & set(types)


def test_skip_model_files_carry_their_feature_in_the_format_tag(skip_file):
    state = torch.load(skip_file, weights_only=True)
    assert state["format"].endswith(CTX_SKIP)
    inter = from_bytes(skip_file.read_bytes(), "x").inter
    assert inter.config.skip and "g_c_skip" in inter.exact


def test_the_frozen_update_is_the_training_update():
    """The frozen update's float stand-in (what refinement differentiates) includes the map."""
    from lvc.models.inter_frozen import build_inter, freeze_inter

    torch.manual_seed(1)
    model = ConditionalP(SKIP).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.g_c_skip[0].weight, std=0.1)
        torch.nn.init.normal_(model.g_c[-1].weight, std=0.05)
    frozen = build_inter(freeze_inter(model, "x", torch.zeros(3, 16)))
    y, ctx = torch.randn(1, SKIP.M, 4, 4) * 3, torch.randn(1, SKIP.C, 8, 8)
    with torch.no_grad():
        want = model.update(y, ctx)
    got = frozen.update_float(y, ctx)
    assert torch.allclose(got, want, atol=1e-2)  # (the frozen weights are fixed point)
    assert not torch.allclose(got, ctx + model.g_c(torch.cat([torch.nn.functional.pixel_shuffle(
        model.g_c_up(y), 2), ctx], 1)).detach(), atol=0.1)  # (the map counts)


@pytest.mark.parametrize("q", [0.0, 0.5, 1.0])
def test_a_checkpoint_grows_into_a_wider_skip_model_that_shows_what_it_did(q):
    torch.manual_seed(0)
    plain = ConditionalP(PLAIN).eval()
    grown = ConditionalP(SKIP)
    init_from(grown, plain.state_dict())
    grown.eval()
    x, prev = torch.rand(1, 3, 64, 128), torch.rand(1, 3, 64, 128)
    ctx, mv = torch.randn(1, 8, 8, 16), torch.randint(-6, 7, (1, 4, 8, 2))
    with torch.no_grad():
        a = plain(x, ctx, mv, torch.tensor([q]), prev)
        b = grown(x, ctx, mv, torch.tensor([q]), prev)
    assert torch.equal(a["x_hat"], b["x_hat"]) and torch.equal(a["ctx"], b["ctx"])
    assert float(b["bpp"]) > float(a["bpp"])  # the new channels' symbols cost bits, read by nothing yet
    assert not grown.g_c_up[0].weight[:, 8:].any() and grown.g_a[-1].weight[8:].any()
    # the prior's halves landed in place: old means and log-scales in their rows, new ones quiet
    w_old, w_new = plain.prior[-1].weight, grown.prior[-1].weight
    assert torch.equal(w_new[:8], w_old[:8]) and torch.equal(w_new[12:20], w_old[8:])
    assert not w_new[8:12].any() and not w_new[20:].any()


def test_fresh_latent_path_keeps_the_context_space_and_relearns_the_rest():
    """``--fresh latent``: the I-frame context, its display and the prior's context reduction come
    from the checkpoint; everything on the P latent's path keeps the new model's weights."""
    torch.manual_seed(0)
    plain = ConditionalP(PLAIN)
    torch.manual_seed(1)
    wide = ConditionalP(SKIP)
    with torch.no_grad():  # gains that differ from the checkpoint's (both start at zero)
        wide.log_gain.normal_()
        wide.log_inv_gain.normal_()
    before = {k: v.clone() for k, v in wide.state_dict().items()}
    new = init_from(wide, plain.state_dict(), fresh_parts("latent", wide, PLAIN.M))
    after, old = wide.state_dict(), plain.state_dict()
    for k in after:
        if k.split(".")[0] in LATENT_PATH:
            assert torch.equal(after[k], before[k]), k
        else:
            assert torch.equal(after[k], old[k]), k
    assert any(k.startswith("g_a.") for k in new) and not any(k.startswith("g_d.") for k in new)


@pytest.mark.parametrize(("text", "old_m", "message"), [
    ("g_a,g_x", 8, "no part named g_x"),
    (",", 8, "no part named"),
    ("prior", 8, "above the checkpoint's 8"),  # growing: the old channels span the whole path
])
def test_fresh_refuses_what_it_cannot_do_clearly(text, old_m, message):
    with pytest.raises(InputError, match=message):
        fresh_parts(text, ConditionalP(SKIP), old_m)
    assert fresh_parts("prior", ConditionalP(SKIP), 12) == ("prior",)  # not growing: any part
