"""Rate terms of the motion search: what a vector's residual costs in bits, and choosing
each block's vector by distortion plus weighted bits, in the order the codec predicts
vectors (row 0 from the left neighbour, later rows from the block above; ``lvc.codec.inter``).
The arrays here are a block row's, too small for torch's per-operation overhead: NumPy."""

from __future__ import annotations

import numpy as np
import torch


def _vector_bits(d: np.ndarray) -> np.ndarray:
    """A rate proxy for integer vector residuals (..., 2): Exp-Golomb-like lengths per
    component, ``2 * bit_length(|c|) + 1``, summed (float32, exact). Looked up in a table of
    the lengths up to the largest component: a few times faster than logarithms of the arrays,
    which are a block row's, small."""
    a = np.abs(d)
    lengths = (2 * np.frexp(np.arange(a.max(initial=0) + 1, dtype=np.float32))[1] + 1).astype(np.float32)
    return lengths[a[..., 0]] + lengths[a[..., 1]]


def _bits_of(v: tuple[int, int], pred: tuple[int, int]) -> float:
    """:func:`_vector_bits` of one residual ``v - pred``, on plain integers."""
    return float(sum(2 * (abs(a - p).bit_length() - 1) + 3 if a != p else 1 for a, p in zip(v, pred)))


def _cheapest(cands: np.ndarray, cost: np.ndarray, pred: np.ndarray, rate_weight: float) -> np.ndarray:
    """Each block's candidate (B, K, ..., 2) of least ``cost`` (B, K, ...) plus
    ``rate_weight`` times the bits of its residual against ``pred`` (B, ..., 2). On NumPy:
    these arrays are a block row's, too small for torch's per-operation overhead."""
    total = cost + np.float32(rate_weight) * _vector_bits(cands - pred[:, None])
    return np.take_along_axis(cands, total.argmin(1)[:, None, ..., None], 1)[:, 0]


def _first_row(cands: np.ndarray, cost: np.ndarray, rate_weight: float, pred_cost=None) -> np.ndarray:
    """Row 0's vectors (wb, 2), decided in order (each block against its left neighbour's
    choice) among its candidates (K, wb, 2) of ``cost`` (K, wb) plus ``rate_weight`` times
    the residual bits; with ``pred_cost(pred, col)`` the predictor itself is a candidate too.
    Sequential, so on plain numbers."""
    weight, pred = np.float32(rate_weight), (0, 0)
    out = np.zeros((cands.shape[1], 2), np.int64)
    for col in range(cands.shape[1]):
        options, costs = [tuple(v) for v in cands[:, col].tolist()], cost[:, col]
        if pred_cost is not None:
            options, costs = options + [pred], np.append(costs, pred_cost(pred, col))
        costs = costs + weight * np.array([_bits_of(v, pred) for v in options], np.float32)
        pred = options[int(costs.argmin())]
        out[col] = pred
    return out


def _pick_rows(cands: torch.Tensor, cost: torch.Tensor, rate_weight: float) -> torch.Tensor:
    """Each block's candidate (B, K, hb, wb, 2) of least ``cost`` plus ``rate_weight`` times
    the bits of its residual: row 0 against the left block (in order), later rows against
    the block above (a row at a time)."""
    cands, cost = cands.numpy(), cost.numpy()
    b, _, hb, wb, _ = cands.shape
    out = np.zeros((b, hb, wb, 2), np.int64)
    for i in range(b):
        out[i, 0] = _first_row(cands[i, :, 0], cost[i, :, 0], rate_weight)
    for row in range(1, hb):
        out[:, row] = _cheapest(cands[:, :, row], cost[:, :, row], out[:, row - 1], rate_weight)
    return torch.from_numpy(out)
