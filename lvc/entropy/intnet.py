"""Integer hyper-synthesis: the decoder's probability path in exact integer arithmetic.

A float network can give different results across processes, thread counts or CPUs,
and one flipped scale index desynchronises the range decoder. Following Ballé et al.,
"Integer networks for data compression with latent-variable models" (2019), the
trained float hyper-synthesis is converted to fixed point: integer weights, activations
clamped to 2**30 (so the int8 path passes them between layers as int32), sums in int64, floor-division
rescaling, ReLU. Integer sums are exact in any order, so the outputs (mean and log-scale
in fixed point, int64) are identical everywhere.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from lvc.entropy.tables import LOG_FRAC_BITS
from lvc.models.layers import SUBPIXEL_GEOMETRY, subpixel_kernel

WEIGHT_FRAC_BITS = 12
ACT_FRAC_BITS = LOG_FRAC_BITS
ACT_LIMIT = 1 << 30  # activations are clamped here; keeps every sum far below 2**63


EXACT_F64 = 1 << 53  # integers below this add and multiply exactly in float64, in any order
DIGIT_BITS = 7  # digits in [-64, 63]: see _int_mm_exact
DIGIT_HALF = 1 << (DIGIT_BITS - 1)
DENSE_DIGITS = 2  # input digits every channel gets; larger values get a sparse extra product
INT32_SAFE_FAN_IN = (1 << 31) >> (2 * DIGIT_BITS - 2)  # K * 64 * 64 < 2**31: no int32 overflow
# Two weight digits' products joined as p0 + 128 p1 stay below 2**31 in int32 for K under this.
INT32_JOIN_FAN_IN = (1 << 31) // ((1 << (2 * DIGIT_BITS - 2)) * ((1 << DIGIT_BITS) + 1))
SPARSE_SHARE = 0.6  # run_fixed_at picks rows only below this share of the whole frame's work
# |x| up to this needs no more than the DENSE_DIGITS digits (as _digit_count counts them)
DENSE_PEAK = (DIGIT_HALF - 1) * ((1 << (DIGIT_BITS * DENSE_DIGITS)) - 1) // ((1 << DIGIT_BITS) - 1)


def _digit_count(peak: int) -> int:
    """Balanced base-128 digits (each in [-64, 63]) needed for integers up to ``peak``."""
    n = 1
    while peak > (DIGIT_HALF - 1) * ((1 << (DIGIT_BITS * n)) - 1) // ((1 << DIGIT_BITS) - 1):
        n += 1
    return n


def _low_digit(x: torch.Tensor) -> torch.Tensor:
    """The balanced lowest base-128 digit of ``x``, in [-64, 63]."""
    return ((x + DIGIT_HALF) & ((1 << DIGIT_BITS) - 1)) - DIGIT_HALF


def _digits(x: torch.Tensor, n: int) -> list[torch.Tensor]:
    """The integer weights ``x`` (int64) as ``n`` int8 tensors ``d_i`` with
    ``x = sum(d_i * 128**i)``, all but the last balanced."""
    out = []
    for _ in range(n - 1):
        d = _low_digit(x)
        out.append(d.to(torch.int8))
        x = (x - d) >> DIGIT_BITS
    out.append(x.to(torch.int8))
    return out


def _padded_digits(x: torch.Tensor, n: int, reduce_last: bool, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_digits` of channels-last int32 ``x`` written into one zero-padded int8 tensor
    (digit ``i`` at batch rows ``i * B ...``), and what they leave. With ``reduce_last`` the
    last digit is balanced too, and the rest (``(x - sum(d_i * 128**i)) / 128**n``, exact)
    is zero unless ``x`` needs more than ``n`` balanced digits; without, the rest is empty."""
    b, h, w, c = x.shape
    out = x.new_zeros((n * b, h + 2 * pad, w + 2 * pad, c), dtype=torch.int8)
    for i in range(n):
        dst = out[i * b:(i + 1) * b, pad:pad + h, pad:pad + w]
        if i == n - 1 and not reduce_last:
            dst.copy_(x)
            return out, x[..., :0]
        # the rest first: (x - d) / 128 with d the balanced low digit is floor((x + 64) / 128)
        rest = (x + DIGIT_HALF).bitwise_right_shift_(DIGIT_BITS)
        dst.copy_(x - (rest << DIGIT_BITS))
        x = rest
    return out, x


@functools.lru_cache(maxsize=1)
def _int_mm_exact() -> bool:
    """Whether ``torch._int_mm`` is exact here for 7-bit digits, checked once per process.

    oneDNN's int8 kernels without AVX-512 VNNI add pairs of products in saturating int16, so
    full 8-bit operands come out wrong on such CPUs (measured with ONEDNN_MAX_CPU_ISA=AVX2,
    AVX512_CORE, SSE41); digits in [-64, 63] are exact on all of them. Worst cases and random
    digits are compared with int64 products; on any mismatch the float64 path is used.
    """
    try:
        g = torch.Generator().manual_seed(0)
        cases = [(torch.full((17, 1024), a, dtype=torch.int8), torch.full((1024, 24), b, dtype=torch.int8))
                 for a, b in ((63, -64), (-64, -64), (63, 63), (-64, 63))]
        cases.append((torch.randint(-64, 64, (33, 864), generator=g, dtype=torch.int8),
                      torch.randint(-64, 64, (864, 40), generator=g, dtype=torch.int8)))
        return all(torch.equal(torch._int_mm(a, b).long(), a.long() @ b.long()) for a, b in cases)
    except (AttributeError, RuntimeError):
        return False


@dataclass(frozen=True)
class IntLayer:
    weight: torch.Tensor  # int64
    bias: torch.Tensor  # int64, scaled by 2**(ACT_FRAC_BITS + WEIGHT_FRAC_BITS)
    transposed: bool
    stride: int
    padding: int
    output_padding: int
    relu: bool

    def __post_init__(self) -> None:
        w = self.weight.abs()
        fan = (w.transpose(0, 1) if self.transposed else w).flatten(1).sum(1)
        object.__setattr__(self, "_fan", int(fan.max()))
        object.__setattr__(self, "_weight_f64", self.weight.double())
        # Integer matrix-multiply path: the weight as int8 digit matrices (K, C_out),
        # multiplied with the int8 digits of the unfolded input. A 5x5 stride-2 transposed
        # layer takes it as its sub-pixel 3x3 convolution (4 C_out channels, then a pixel
        # shuffle), which is still integer arithmetic, so still exact: 4-6x faster here than
        # its float64 transposed convolution (the hyper-syntheses' 5x5 layers).
        geometry = ((self.weight.shape[2], self.weight.shape[3]), (self.stride,) * 2, (self.padding,) * 2,
                    (self.output_padding,) * 2)
        shuffle = self.transposed and geometry == SUBPIXEL_GEOMETRY
        weight, bias = self.weight, self.bias
        if shuffle:
            weight, bias = subpixel_kernel(weight), bias.repeat_interleave(4)
        digits = None
        if (not self.transposed or shuffle) and weight[0].numel() < INT32_SAFE_FAN_IN and _int_mm_exact():
            w = weight.permute(0, 2, 3, 1).flatten(1).t()  # K ordered (row, col, channel)
            # All digit matrices side by side, (K, n_digits * C_out): one product per call.
            digits = torch.cat(_digits(w, _digit_count(int(weight.abs().max()))), 1).contiguous()
        object.__setattr__(self, "_weight_digits", digits)
        # The convolution the digit path runs: kernel size, stride, padding, bias, shuffle.
        object.__setattr__(self, "_mm", (weight.shape[2], 1 if shuffle else self.stride, 1 if shuffle else self.padding,
                                         bias, shuffle))

    def _conv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if self.transposed:
            return F.conv_transpose2d(x, weight, None, self.stride, self.padding, self.output_padding)
        return F.conv2d(x, weight, None, self.stride, self.padding)

    def _int8_conv(self, x: torch.Tensor, scale_bits: int = 0, at: torch.Tensor | None = None) -> torch.Tensor:
        """The convolution plus bias, channels last (int64), as int8 matrix products of
        input digits (stacked as rows) with every weight digit (side by side as columns).

        Every input gets ``DENSE_DIGITS`` digits; the few channels with larger values get
        their further digits in a second, narrow product over those channels only (in the
        trained networks 1-13% of channels), so exactness costs about two digits, not three.
        Each digit product is exact in int32. Two weight digits are joined in int32 where
        that is exact too (``INT32_JOIN_FAN_IN``), then everything in int64. ``at`` (flat
        output positions, batch 1, no pixel shuffle): only those rows are unfolded and
        multiplied; every other output is zero."""
        b, cin, h, w = x.shape
        kh, s, p, bias, shuffle = self._mm
        if at is not None and (b != 1 or shuffle):
            raise ValueError("output positions are picked for one picture of an unshuffled layer only")
        kw, cout = kh, len(bias)
        ho, wo = (h + 2 * p - kh) // s + 1, (w + 2 * p - kw) // s + 1
        nw = self._weight_digits.shape[1] // cout
        x = x.permute(0, 2, 3, 1).to(torch.int32)  # channels last: unfolded rows are concatenations
        lo, hi = x.aminmax()
        nx = _digit_count(max(-int(lo), int(hi)))

        def product(digits: torch.Tensor, weight_digits: torch.Tensor, first: int) -> list[tuple[int, torch.Tensor]]:
            """(place exponent, int32 (B * ho * wo, C_out)) terms; input digit i is ``first + i``."""
            n, c = digits.shape[0], digits.shape[3]
            sn, sh, sw, sc = digits.stride()
            # unfolded rows (row, column, channel) as one strided view, copied once. (Where
            # the padded input is as narrow as the kernel, a single digit's rows would come
            # out as an overlapping view, which torch._int_mm misreads: contiguous() copies.)
            cols = digits.as_strided((n, ho, wo, kh, kw, c), (sn, sh * s, sw * s, sh, sw, sc))
            if at is None:
                cols = cols.reshape(n * ho * wo, -1).contiguous()
            else:  # the chosen rows only (advanced indexing copies them)
                cols = cols[:, at // wo, at % wo].reshape(n * len(at), -1)
            out = torch._int_mm(cols, weight_digits).view(n // b, -1, nw, cout)
            if nw == 2 and cols.shape[1] < INT32_JOIN_FAN_IN:  # d0 + 128 d1 in one int32 pass
                joined = torch.add(out[:, :, 0], out[:, :, 1], alpha=1 << DIGIT_BITS)
                return [(first + i, t) for i, t in enumerate(joined.unbind(0))]
            return [(first + i + j, t[:, j]) for i, t in enumerate(out.unbind(0)) for j in range(nw)]

        dense = min(nx, DENSE_DIGITS)
        digits, rest = _padded_digits(x, dense, nx > dense, p)
        terms = product(digits, self._weight_digits, 0)
        if nx > dense:  # rest is zero except in the channels holding values beyond two digits
            lo, hi = torch.aminmax(x.reshape(-1, cin), dim=0)  # per channel
            wide = ((hi > DENSE_PEAK) | (lo < -DENSE_PEAK)).nonzero().squeeze(1)
            if len(wide):
                rows = (torch.arange(kh * kw)[:, None] * cin + wide[None, :]).flatten()
                top, _ = _padded_digits(rest[..., wide], nx - dense, False, p)
                terms += product(top, self._weight_digits[rows], dense)
        # Horner over place values 128**e, highest first: acc = acc * 128**gap + term, in int64.
        terms.sort(key=lambda t: -t[0])
        place, acc = terms[0][0], terms[0][1].to(torch.int64)
        for e, t in terms[1:]:
            if e == place:
                acc += t
            else:
                acc, place = torch.add(t, acc, alpha=1 << (DIGIT_BITS * (place - e))), e
        if place + scale_bits:
            acc.bitwise_left_shift_(DIGIT_BITS * place + scale_bits)
        acc += bias
        if at is not None:
            full = acc.new_zeros((ho * wo, cout))
            full[at] = acc
            acc = full
        if shuffle:  # channel (c, row phase, column phase) -> pixel (2 row + phase, 2 column + phase)
            c = cout // 4
            return acc.view(b, ho, wo, c, 2, 2).permute(0, 1, 4, 2, 5, 3).reshape(b, 2 * ho, 2 * wo, c)
        return acc.view(b, ho, wo, cout)

    def __call__(self, x: torch.Tensor, scale_bits: int = 0, at: torch.Tensor | None = None) -> torch.Tensor:
        """The layer on the fixed-point input ``x << scale_bits``; with ``at`` (see
        :meth:`_int8_conv`), where the int8 path runs, only at those output positions. A hyper-synthesis' input is
        an integer latent with ``ACT_FRAC_BITS`` zero fraction bits: its digits all sit above
        the two dense ones, so the int8 path takes ``x`` itself (one digit) and shifts the sum."""
        # Fast paths, both bit-exact: int8 digit products, each exact in int32 (the fan-in is
        # below INT32_SAFE_FAN_IN), recombined in int64; or, when |x| * sum|w|
        # stays below 2**53, a float64 convolution (every partial sum is an integer float64
        # holds exactly). Both equal the int64 convolution, several times faster.
        if self._weight_digits is not None:
            acc = self._int8_conv(x, scale_bits, at)
            acc.bitwise_right_shift_(WEIGHT_FRAC_BITS)  # floor division by 2**WEIGHT_FRAC_BITS
            acc.clamp_(0 if self.relu else -ACT_LIMIT, ACT_LIMIT)
            return acc.to(torch.int32).permute(0, 3, 1, 2)
        x = x.long() << scale_bits
        peak = int(x.abs().max())
        if peak * self._fan < EXACT_F64:
            acc = self._conv(x.double(), self._weight_f64).long()
        else:
            acc = self._conv(x.long(), self.weight)
        acc = acc + self.bias[None, :, None, None]
        out = acc >> WEIGHT_FRAC_BITS  # arithmetic shift: floor division by 2**WEIGHT_FRAC_BITS
        if self.relu:
            out = out.clamp_min(0)
        return out.clamp(-ACT_LIMIT, ACT_LIMIT)


class IntSynthesis:
    """Frozen integer version of a ``Sequential`` of convs / transposed convs and ReLUs."""

    def __init__(self, layers: list[IntLayer]) -> None:
        self.layers = tuple(layers)
        # run_fixed_at can pick rows only in a stack of stride-1 3x3 layers on the int8 path
        self._pickable = all(not la.transposed and la.stride == 1 and la.padding == 1 and la.weight.shape[-1] == 3
                             and la._weight_digits is not None for la in self.layers)

    @classmethod
    def from_float(cls, seq: nn.Sequential) -> IntSynthesis:
        mods = list(seq)
        layers = []
        for i, m in enumerate(mods):
            if not isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                continue
            relu = i + 1 < len(mods) and isinstance(mods[i + 1], nn.ReLU)
            w = torch.round(m.weight.detach().double() * (1 << WEIGHT_FRAC_BITS)).long()
            b = torch.round(m.bias.detach().double() * (1 << (WEIGHT_FRAC_BITS + ACT_FRAC_BITS))).long()
            transposed = isinstance(m, nn.ConvTranspose2d)
            # Worst case |sum| must stay below 2**62: then int64 cannot overflow for any input.
            fan = w.abs().flatten(1).sum(1) if not transposed else w.abs().transpose(0, 1).flatten(1).sum(1)
            if int((fan * ACT_LIMIT + b.abs()).max()) >= 1 << 62:
                raise ValueError("hyper-synthesis weights too large for exact int64 arithmetic")
            layers.append(IntLayer(w, b, transposed, m.stride[0], m.padding[0],
                                   m.output_padding[0] if transposed else 0, relu))
        return cls(layers)

    def __call__(self, z_hat: torch.Tensor) -> torch.Tensor:
        """Fixed-point output (``ACT_FRAC_BITS`` fraction bits) for integer input ``z_hat``:
        :meth:`run_fixed` of ``z_hat << ACT_FRAC_BITS``, clamped alike, without its zero bits."""
        top = ACT_LIMIT >> ACT_FRAC_BITS
        x = self.layers[0](z_hat.long().clamp(-top, top), scale_bits=ACT_FRAC_BITS)
        for layer in self.layers[1:]:
            x = layer(x)
        return x.long()

    def run_fixed(self, x: torch.Tensor) -> torch.Tensor:
        """Fixed-point output for fixed-point input (both ``ACT_FRAC_BITS`` fraction bits)."""
        x = x.clamp(-ACT_LIMIT, ACT_LIMIT)
        for layer in self.layers:
            x = layer(x)
        return x.long()

    def run_fixed_at(self, x: torch.Tensor, need: torch.Tensor) -> torch.Tensor:
        """:meth:`run_fixed` of one picture where ``need`` (H, W bool) is set: the same
        integers there; elsewhere zero, or whatever the whole-frame run gives. Why: a P-frame
        whose blocks are mostly skipped keeps the old context there, so a whole-frame update
        spends most of its work on values thrown away, and the skipped blocks lie scattered
        (tiles with halos cost more than the frame, docs/models.md "Session 36"). In a stack
        of stride-1 3x3 convolutions each layer runs only where the layers after it read:
        the last at ``need``, each earlier one at that grown by one position more."""
        if x.shape[0] != 1 or not self._pickable:
            return self.run_fixed(x)
        masks = [need]
        for _ in self.layers[1:]:
            masks.append(F.max_pool2d(masks[-1][None, None].float(), 3, 1, 1)[0, 0] > 0)
        masks.reverse()
        work = sum(float(m.float().mean()) * la.weight[0].numel() for m, la in zip(masks, self.layers, strict=True))
        if work > SPARSE_SHARE * sum(la.weight[0].numel() for la in self.layers):
            return self.run_fixed(x)  # picking rows costs more than it saves
        x = x.clamp(-ACT_LIMIT, ACT_LIMIT)
        for layer, mask in zip(self.layers, masks, strict=True):
            at = mask.flatten().nonzero().squeeze(1)
            if len(at) == 0:
                return torch.zeros((1, self.layers[-1].weight.shape[0], *need.shape), dtype=torch.int64)
            x = layer(x, at=at)
        return x.long()

    def run_float(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable float stand-in for :meth:`run_fixed` (real-valued input and output,
        the same rounded weights, no flooring or clamping): encoder-side searches
        differentiate through it; coding always runs the exact path."""
        for layer in self.layers:
            w = layer.weight.float() / (1 << WEIGHT_FRAC_BITS)
            b = layer.bias.float() / (1 << (WEIGHT_FRAC_BITS + ACT_FRAC_BITS))
            if layer.transposed:
                x = F.conv_transpose2d(x, w, b, layer.stride, layer.padding, layer.output_padding)
            else:
                x = F.conv2d(x, w, b, layer.stride, layer.padding)
            if layer.relu:
                x = F.relu(x)
        return x

    def to_state(self) -> list[dict]:
        """Compact form for model files: int16 weights where they fit (they usually do:
        |w| < 8 at 12 fraction bits), else int32; loading widens either to int64."""
        out = []
        for layer in self.layers:
            peak = int(layer.weight.abs().max())
            if peak >= 2**31:
                raise ValueError("integer weight does not fit in int32")
            weight = layer.weight.short() if peak < 2**15 else layer.weight.int()
            out.append(dict(weight=weight, bias=layer.bias, transposed=layer.transposed,
                            stride=layer.stride, padding=layer.padding, output_padding=layer.output_padding,
                            relu=layer.relu))
        return out

    @classmethod
    def from_state(cls, state: list[dict]) -> IntSynthesis:
        return cls([IntLayer(**{k: (v.long() if isinstance(v, torch.Tensor) else v) for k, v in d.items()})
                    for d in state])
