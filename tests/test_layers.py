"""The picture layer's sub-pixel form computes the trained transposed convolution."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lvc.codec.synthesis import Synthesizer
from lvc.models.layers import SubpixelDeconv, deconv, subpixel_tail
from lvc.models.registry import load_model


@pytest.mark.parametrize("size", [(1, 1), (5, 7), (15, 26)])
def test_subpixel_deconv_equals_the_transposed_convolution(size):
    torch.manual_seed(size[0])
    layer = deconv(16, 3)
    x = torch.randn(2, 16, *size)
    with torch.no_grad():
        want, got = layer(x), SubpixelDeconv(layer)(x)
    assert got.shape == want.shape == (2, 3, 2 * size[0], 2 * size[1])
    assert torch.allclose(got, want, atol=1e-5, rtol=0)


def test_only_picture_layers_of_the_deconv_geometry_are_recast():
    wide = nn.Sequential(deconv(8, 8), nn.ReLU(), deconv(8, 16))
    assert subpixel_tail(wide) is wide
    other = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(8, 3, 4, stride=2, padding=1))
    assert subpixel_tail(other) is other
    with pytest.raises(ValueError, match="5x5 stride-2"):
        SubpixelDeconv(other[1])


def test_the_shipped_synthesis_and_display_run_recast():
    """Decoders take the fast form; the trained modules keep their shape (``lvc train-inter``
    initialises its display from them)."""
    m = load_model()
    for seq in (m.g_s, m.inter.g_d):
        assert isinstance(seq[-1], nn.ConvTranspose2d)
        fast = Synthesizer(seq, workers=1).g_s
        assert isinstance(fast[-1], SubpixelDeconv) and fast[0] is seq[0]
