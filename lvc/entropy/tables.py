"""Frozen coding tables: integer frequencies that encoder and decoder share exactly.

A table row covers the symbols ``offset .. offset + n - 2``; its last bin is an escape
for values outside that range (coded separately, see :mod:`lvc.entropy.coder`). Rows
are built once from the learned priors (floating point, machine dependent) and then
stored as integers with the model, so no machine ever recomputes them. Tables that are
constants of the format (the residual layer's) are built in integer arithmetic instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

PROB_BITS = 16
PROB_TOTAL = 1 << PROB_BITS

# Scale table for the Gaussian conditional, defined in fixed point so that the scale
# index is an exact integer function of the (integer) log-scale the prior predicts.
LOG_FRAC_BITS = 10  # fixed-point fraction bits of log-scales and means
SCALE_LOG0 = round(math.log(0.11) * (1 << LOG_FRAC_BITS))  # log(sigma_0) in fixed point
SCALE_LOG_STEP = 126  # log-ratio between neighbouring scales (about 0.123) in fixed point
SCALE_LEVELS = 64
TAIL_SIGMAS = 7.0  # table support in standard deviations; beyond it values escape


def table_scales() -> np.ndarray:
    k = np.arange(SCALE_LEVELS, dtype=np.float64)
    return np.exp((SCALE_LOG0 + k * SCALE_LOG_STEP) / (1 << LOG_FRAC_BITS))


def scale_index(log_scale_fixed: torch.Tensor) -> torch.Tensor:
    """Exact integer map from fixed-point log-scale to the nearest table index."""
    idx = torch.div(log_scale_fixed - SCALE_LOG0 + SCALE_LOG_STEP // 2, SCALE_LOG_STEP, rounding_mode="floor")
    return idx.clamp(0, SCALE_LEVELS - 1)


def quantize_pmf(pmf: np.ndarray, escape: float) -> np.ndarray:
    """Integer frequencies summing to ``PROB_TOTAL``, every bin (escape last) at least 1."""
    p = np.append(np.asarray(pmf, dtype=np.float64), max(escape, 0.0))
    p = np.maximum(p, 0.0) / p.sum()
    freq = np.maximum(1, np.round(p * (PROB_TOTAL - len(p))).astype(np.int64) + 0)
    freq[np.argmax(freq)] += PROB_TOTAL - freq.sum()
    if freq.min() < 1:
        raise ValueError("probability table cannot be quantized: too many bins")
    return freq


@dataclass(frozen=True)
class CdfTables:
    """Immutable integer tables: ``freqs[i, :lengths[i]]`` with offsets ``offsets[i]``."""

    freqs: np.ndarray  # (T, Lmax) int64, zero padded
    lengths: np.ndarray  # (T,) int64, including the escape bin
    offsets: np.ndarray  # (T,) int64, the symbol of bin 0

    @classmethod
    def from_rows(cls, rows: list[np.ndarray], offsets: list[int]) -> CdfTables:
        lmax = max(len(r) for r in rows)
        freqs = np.zeros((len(rows), lmax), dtype=np.int64)
        for i, r in enumerate(rows):
            freqs[i, : len(r)] = r
        return cls.from_arrays(freqs, np.array([len(r) for r in rows]), np.asarray(offsets))

    @classmethod
    def from_arrays(cls, freqs: np.ndarray, lengths: np.ndarray, offsets: np.ndarray) -> CdfTables:
        arrays = [np.array(a, dtype=np.int64, copy=True) for a in (freqs, lengths, offsets)]
        for a in arrays:
            a.setflags(write=False)
        t = cls(*arrays)
        t.validate()
        return t

    def validate(self) -> None:
        for i, n in enumerate(self.lengths):
            row = self.freqs[i, :n]
            if n < 2 or row.min() < 1 or row.sum() != PROB_TOTAL:
                raise ValueError(f"coding table {i} is invalid")

    def to_state(self) -> dict[str, torch.Tensor]:
        """Compact form for model files: rows concatenated, int32."""
        flat = np.concatenate([self.freqs[i, :n] for i, n in enumerate(self.lengths)])
        return {"flat": torch.from_numpy(flat.astype(np.int32)),
                "lengths": torch.from_numpy(self.lengths.astype(np.int32)),
                "offsets": torch.from_numpy(self.offsets.astype(np.int32))}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> CdfTables:
        flat = state["flat"].numpy().astype(np.int64)
        lengths = state["lengths"].numpy().astype(np.int64)
        ends = np.cumsum(lengths)
        rows = [flat[e - n: e] for n, e in zip(lengths, ends)]
        return cls.from_rows(rows, list(state["offsets"].numpy()))

    def min_bits(self) -> float:
        """The cheapest symbol of any row, in bits."""
        return float(PROB_BITS - np.log2(self.freqs.max()))

    def modes(self) -> np.ndarray:
        """Each row's most probable symbol (not the escape), the cheapest to code."""
        bins = np.where(np.arange(self.freqs.shape[1])[None, :] < (self.lengths - 1)[:, None], self.freqs, -1)
        return bins.argmax(1) + self.offsets

    def bits(self, table: np.ndarray, symbols: np.ndarray) -> float:
        """Information content in bits of ``symbols`` under rows ``table`` (escapes: +16 bits)."""
        return float(self.element_bits(table, symbols).sum())

    def row_bits(self, rows: np.ndarray, symbols: np.ndarray) -> np.ndarray:
        """:meth:`bits` of all of ``symbols`` under each row of ``rows`` (R,), to float
        rounding: priced once per distinct symbol, as the encoder's table choices ask it
        many times per frame."""
        values, counts = np.unique(symbols, return_counts=True)
        return (self.element_bits(np.asarray(rows)[:, None], values[None, :]) * counts).sum(1)

    def element_bits(self, table: np.ndarray, symbols: np.ndarray) -> np.ndarray:
        """:meth:`bits` of each symbol (same shape)."""
        n = self.lengths[table]
        b = symbols - self.offsets[table]
        esc = (b < 0) | (b >= n - 1)
        b = np.where(esc, n - 1, b)
        return PROB_BITS - np.log2(self.freqs[table, b]) + 16 * esc


def uniform_row(k: int) -> np.ndarray:
    """Frequencies of a uniform row over ``0..k-1``: ``(PROB_TOTAL - 1) // k`` each, the
    remainder to symbol 0, and an escape of 1 (never used)."""
    row = np.full(k + 1, (PROB_TOTAL - 1) // k, dtype=np.int64)
    row[-1] = 1
    row[0] += PROB_TOTAL - row.sum()
    return row


def binary_row(n64: int) -> np.ndarray:
    """A binary row with P(1) = ``n64`` / 64 (exactly ``n64 * 1024 - 1`` of 2**16), escape 1."""
    one = n64 * (PROB_TOTAL // 64) - 1
    return np.array([PROB_TOTAL - one - 1, one, 1], dtype=np.int64)


def cheapest_rows(tables: CdfTables, rows: np.ndarray, ctx: np.ndarray, symbols: np.ndarray,
                  contexts: int) -> np.ndarray:
    """For each context 0..contexts-1, the index into ``rows`` of the row that codes that
    context's ``symbols`` in the fewest bits (0 for a context without symbols)."""
    out = np.zeros(contexts, dtype=np.int64)
    for c in range(contexts):
        s = symbols[ctx == c]
        if s.size:
            out[c] = int(np.argmin(tables.row_bits(rows, s)))
    return out


def gaussian_tables() -> CdfTables:
    """One row per table scale: zero-mean discretised Gaussian on [-K, K] plus escape."""
    rows, offsets = [], []
    for s in table_scales():
        k = max(1, math.ceil(TAIL_SIGMAS * s))
        v = torch.arange(-k, k + 1, dtype=torch.float64)
        inv = 1.0 / (s * math.sqrt(2.0))
        pmf = 0.5 * (torch.erfc((v.abs() - 0.5) * inv) - torch.erfc((v.abs() + 0.5) * inv))
        tail = float(torch.erfc(torch.tensor((k + 0.5) * inv, dtype=torch.float64)))
        rows.append(quantize_pmf(pmf.numpy(), tail))
        offsets.append(-k)
    return CdfTables.from_rows(rows, offsets)


def factorized_tables(density, tail_mass: float = 1e-6) -> CdfTables:
    """Per-channel rows of a learned :class:`FactorizedDensity`.

    The range starts from the fitted quantiles, widened, and is then trimmed to where the
    density has mass, so an under-trained quantile estimate cannot force many escapes.
    """
    q = density.quantiles.detach()[:, 0, :]
    r = max(64, math.ceil(float(q.abs().max())) + 16)
    pmf_all = density.pmf(-r, r).numpy()
    rows, offsets = [], []
    for c in range(density.channels):
        pmf = pmf_all[c]
        cdf = np.cumsum(pmf)
        lo = int(np.searchsorted(cdf, tail_mass / 2))
        hi = int(np.searchsorted(cdf, cdf[-1] - tail_mass / 2))
        lo, hi = min(lo, r - 1), max(hi, r + 1)
        body = pmf[lo: hi + 1]
        rows.append(quantize_pmf(body, max(tail_mass, 1.0 - body.sum())))
        offsets.append(lo - r)
    return CdfTables.from_rows(rows, offsets)


# Two-sided geometric ("discrete Laplacian") rows of the residual layer (lvc.codec.residual):
# P(n) proportional to theta ** |n|, theta in 1/65536: theta = 1 (almost surely zero), then
# round(65536 exp(-1 / b)) for mean magnitudes b from about 0.1 to 370 (ratio 1.45). Built
# in integers only, so every machine derives the same tables (part of the bitstream: do not
# change).
LAPLACE_THETAS = (1, 5, 93, 711, 2893, 7619, 14858, 23549, 32354, 40278, 46846, 51991, 55864, 58702, 60743,
                  62192, 63211, 63924, 64420, 64764, 65003, 65168, 65282, 65361)
LAPLACE_SUPPORT = 255  # |n| above this escapes


def laplace_tables() -> CdfTables:
    """One row per ``LAPLACE_THETAS`` entry on [-N, N] plus escape, N at most
    ``LAPLACE_SUPPORT`` (where the weight has fallen below 2**-24 of the centre's)."""
    rows, offsets = [], []
    for theta in LAPLACE_THETAS:
        w = [1 << 40]
        while len(w) <= LAPLACE_SUPPORT and w[-1] >= 1 << 16:
            w.append(w[-1] * theta >> 16)
        n = len(w) - 1
        weights = w[:0:-1] + w  # -n .. n
        tail = 2 * (w[-1] * theta // (65536 - theta)) + 1
        total = sum(weights) + tail
        bins = len(weights) + 1
        freq = [max(1, x * (PROB_TOTAL - bins) // total) for x in [*weights, tail]]
        freq[n] += PROB_TOTAL - sum(freq)
        rows.append(np.array(freq, dtype=np.int64))
        offsets.append(-n)
    return CdfTables.from_rows(rows, offsets)
