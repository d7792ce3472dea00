"""The integer networks' fast paths equal plain int64 convolution bit for bit."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from lvc.entropy.intnet import ACT_LIMIT, IntLayer, IntSynthesis, _digit_count, _digits, _int_mm_exact


@pytest.mark.parametrize("peak", [0, 1, 127, 128, 255, 32767, 32768, 2**30, 2**40])
def test_digits_recompose_exactly(peak):
    x = torch.randint(-peak, peak + 1, (4096,))
    x[:2] = torch.tensor([peak, -peak])
    digits = _digits(x, _digit_count(peak))
    assert all(d.dtype == torch.int8 for d in digits)
    assert all(int(d.min()) >= -64 and int(d.max()) <= 63 for d in digits)
    assert torch.equal(sum(d.long() * 128**i for i, d in enumerate(digits)), x)


@pytest.mark.parametrize("shape", [(8, 24, 3, 1, 1), (5, 3, 3, 2, 1), (4, 6, 5, 1, 2)])
@pytest.mark.parametrize("w_peak", [3, 2**14, 2**20])
@pytest.mark.parametrize("x_peak", [1, 2**15, ACT_LIMIT])
def test_int8_path_equals_int64_convolution(shape, w_peak, x_peak):
    """Worst cases included: the activation limit and weights far beyond trained ones."""
    cout, cin, k, stride, pad = shape
    g = torch.Generator().manual_seed(cout * k + stride)
    w = torch.randint(-w_peak, w_peak + 1, (cout, cin, k, k), generator=g)
    b = torch.randint(-(2**20), 2**20, (cout,), generator=g)
    layer = IntLayer(w, b, False, stride, pad, 0, relu=False)
    assert layer._weight_digits is not None, "torch._int_mm is missing: the int8 path is not exercised"
    x = torch.randint(-x_peak, x_peak + 1, (2, cin, 9, 13), generator=g)
    x[0, 0, 0, 0] = x_peak
    want = (F.conv2d(x, w, None, stride, pad) + b[None, :, None, None]) >> 12
    assert torch.equal(layer(x).long(), want.clamp(-ACT_LIMIT, ACT_LIMIT))


def test_int8_products_are_checked_before_use():
    """The int8 path is only taken where the self-check passed (oneDNN without VNNI saturates
    full-range int8 pair sums; 7-bit digits avoid that). On this machine it must pass, or the
    fast path would silently never run."""
    assert _int_mm_exact()


def test_wide_fan_in_sums_each_place_in_int64():
    """Fan-ins so wide that the products of one place could overflow int32 if added there
    stay exact with every digit at its extreme (each product is added to the int64 sum)."""
    cin, k = 20000, 3  # K = 180,000: 3 places of 5 x 3 digits could reach 2**31
    w = torch.full((2, cin, k, k), -(2**20))
    w[1] = 2**20 - 1
    layer = IntLayer(w, torch.zeros(2, dtype=torch.int64), False, 1, 0, 0, relu=False)
    assert layer._weight_digits is not None
    x = torch.full((1, cin, k, k), -ACT_LIMIT)
    want = F.conv2d(x, w) >> 12
    assert torch.equal(layer(x).long(), want.clamp(-ACT_LIMIT, ACT_LIMIT))


@pytest.mark.parametrize("large", [[], [0], [2, 5], list(range(7))])
@pytest.mark.parametrize("edge", [8127, -8256, 2**20, -ACT_LIMIT])
def test_sparse_top_digits_cover_the_channels_that_need_them(large, edge):
    """Only channels holding values beyond two digits get further digits; channels at the
    two-digit range's edges (8127 and -8256; the latter's magnitude counts as three digits,
    so it takes the sparse branch without needing a third) and mixtures of small and large
    channels stay exact."""
    g = torch.Generator().manual_seed(len(large))
    cin, cout = 7, 5
    w = torch.randint(-(2**14), 2**14, (cout, cin, 3, 3), generator=g)
    b = torch.randint(-(2**20), 2**20, (cout,), generator=g)
    layer = IntLayer(w, b, False, 1, 1, 0, relu=True)
    x = torch.randint(-8000, 8000, (2, cin, 6, 11), generator=g)
    x[1, 3, 2, 4] = edge
    for c in large:
        x[:, c] = torch.randint(-ACT_LIMIT, ACT_LIMIT + 1, (2, 6, 11), generator=g)
    want = ((F.conv2d(x, w, None, 1, 1) + b[None, :, None, None]) >> 12).clamp(0, ACT_LIMIT)
    assert torch.equal(layer(x).long(), want)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("x_peak", [1, 2**15, ACT_LIMIT])
def test_transposed_layers_take_the_int8_path_as_subpixel_convolutions(relu, x_peak):
    """5x5 stride-2 transposed layers (the hyper-syntheses') run as a 3x3 convolution to four
    phases and a pixel shuffle: still the int64 transposed convolution bit for bit, odd sizes
    and the activation limit included. Other transposed geometries keep the float64/int64 path."""
    g = torch.Generator().manual_seed(x_peak % 97 + relu)
    cin, cout = 6, 5
    w = torch.randint(-(2**14), 2**14, (cin, cout, 5, 5), generator=g)
    b = torch.randint(-(2**20), 2**20, (cout,), generator=g)
    layer = IntLayer(w, b, True, 2, 2, 1, relu=relu)
    assert layer._weight_digits is not None
    x = torch.randint(-x_peak, x_peak + 1, (2, cin, 5, 7), generator=g)
    x[1, 2, 4, 6] = -x_peak
    want = (F.conv_transpose2d(x, w, None, 2, 2, 1) + b[None, :, None, None]) >> 12
    assert torch.equal(layer(x).long(), want.clamp(0 if relu else -ACT_LIMIT, ACT_LIMIT))
    other = IntLayer(torch.randint(-99, 99, (cin, cout, 4, 4), generator=g), b, True, 2, 1, 0, relu=relu)
    assert other._weight_digits is None
    want = (F.conv_transpose2d(x, other.weight, None, 2, 1, 0) + b[None, :, None, None]) >> 12
    assert torch.equal(other(x).long(), want.clamp(0 if relu else -ACT_LIMIT, ACT_LIMIT))


@pytest.mark.parametrize("peak", [1, 63, 64, 5000, 2**14 + 7])
def test_integer_input_skips_its_zero_fraction_bits_exactly(peak):
    """``IntSynthesis(z)`` runs its first layer on ``z`` itself and shifts the sum: the same
    as the fixed-point path on ``z << ACT_FRAC_BITS`` (clamping included)."""
    from torch import nn

    from lvc.entropy.intnet import ACT_FRAC_BITS, IntSynthesis

    torch.manual_seed(peak % 11)
    net = IntSynthesis.from_float(nn.Sequential(nn.ConvTranspose2d(4, 6, 5, 2, 2, 1), nn.ReLU(),
                                                nn.Conv2d(6, 8, 3, 1, 1)))
    z = torch.randint(-peak, peak + 1, (2, 4, 3, 5))
    z[0, 1, 2, 3] = peak
    assert torch.equal(net(z), net.run_fixed(z << ACT_FRAC_BITS))


def test_two_weight_digits_join_in_int32_up_to_its_fan_in_bound():
    """Two weight digits' products are joined (p0 + 128 p1) in int32 only below
    ``INT32_JOIN_FAN_IN``; at its edge, with the largest join that two-digit weights and
    two-digit inputs allow (|w| = 8127, x = -8256: 520,128 per term), it equals int64."""
    from lvc.entropy.intnet import INT32_JOIN_FAN_IN

    cin = INT32_JOIN_FAN_IN - 1
    w = torch.full((2, cin, 1, 1), 8127)
    w[1] = -8127
    layer = IntLayer(w, torch.zeros(2, dtype=torch.int64), False, 1, 0, 0, relu=False)
    assert layer._weight_digits.shape[1] == 2 * 2  # two weight digits: the join is taken
    x = torch.full((1, cin, 3, 2), -8256)  # dense digits (-64, -64)
    x[..., 1, :] = 8127
    want = F.conv2d(x, w) >> 12
    assert torch.equal(layer(x).long(), want.clamp(-ACT_LIMIT, ACT_LIMIT))


@pytest.mark.parametrize("size", [(4, 1), (1, 4), (1, 1), (5, 3)])
@pytest.mark.parametrize("peak", [60, 8000])
def test_inputs_as_narrow_as_the_kernel_stay_exact(size, peak):
    """A one-pixel-wide input padded to the kernel's width (a frame up to 64 pixels wide
    has one such column of side information): its unfolded rows must be copied, not viewed
    (an overlapping view gave torch._int_mm's garbage, and such videos did not decode)."""
    g = torch.Generator().manual_seed(peak + size[1])
    w = torch.randint(-8000, 8000, (8, 64, 3, 3), generator=g)
    layer = IntLayer(w, torch.zeros(8, dtype=torch.int64), False, 1, 1, 0, relu=False)
    x = torch.randint(-peak, peak + 1, (1, 64, *size), generator=g)
    assert torch.equal(layer(x).long(), F.conv2d(x, w, padding=1) >> 12)


def _stack(widths: list[int], seed: int, x_bits: int) -> tuple[IntSynthesis, torch.Tensor]:
    """Three 3x3 'same' layers with ReLUs between, as the context update, and an input."""
    g = torch.Generator().manual_seed(seed)
    layers = [IntLayer(torch.randint(-3000, 3001, (o, i, 3, 3), generator=g),
                       torch.randint(-(2**24), 2**24, (o,), generator=g), False, 1, 1, 0, relu=n + 2 < len(widths))
              for n, (i, o) in enumerate(zip(widths, widths[1:]))]
    return IntSynthesis(layers), torch.randint(-(2**x_bits), 2**x_bits, (1, widths[0], 11, 17), generator=g)


@pytest.mark.parametrize("share", [0.0, 0.03, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("x_bits", [10, 26])
def test_rows_picked_where_needed_equal_the_whole_frame_there(share, x_bits):
    """``run_fixed_at`` (rows of the unfolded input picked per layer, the region read by the
    next layer grown by one) gives the whole-frame integers wherever ``need`` is set, at the
    frame's edges too, for sparse maps and for ones where it falls back to the whole frame;
    input large enough to take the extra digits' product."""
    net, x = _stack([12, 8, 8, 8], int(share * 100) + x_bits, x_bits)
    need = torch.rand(11, 17, generator=torch.Generator().manual_seed(x_bits)) < share
    need[0, 0] = need[-1, -1] = share > 0
    whole = net.run_fixed(x)
    picked = net.run_fixed_at(x, need)
    assert picked.shape == whole.shape and picked.dtype == whole.dtype
    assert torch.equal(picked[..., need], whole[..., need])


def test_the_context_update_of_a_ps_frame_equals_the_whole_frame_one_masked():
    """The shipped video model's update with skipped blocks (the codec's path since session 36)
    equals the whole-frame update with the skipped positions given the warped context back."""
    from lvc.models.frozen import QUALITY_MAX
    from lvc.models.registry import load_model

    inter = load_model("lvc-hl192dr").inter
    g = torch.Generator().manual_seed(1)
    y = torch.randint(-20, 21, (1, inter.config.M, 8, 13), generator=g)
    ctx_w = torch.randint(-(2**22), 2**22, (1, inter.config.C, 16, 26), generator=g)
    skipped = torch.rand(8, 13, generator=g) > 0.1
    keep = skipped.repeat_interleave(2, 0).repeat_interleave(2, 1)
    whole = torch.where(keep, ctx_w, inter.update(y, ctx_w, 5, QUALITY_MAX))
    assert torch.equal(inter.update(y, ctx_w, 5, QUALITY_MAX, keep), whole)
