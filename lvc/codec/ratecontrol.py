"""Rate control: the one quality that lands a sequence on a target bitrate.

One model covers the quality range continuously and a sequence's rate rises
monotonically with quality, close to exponentially (``log rate`` is nearly linear in
``q``). So the encoder searches ``q`` with a safeguarded secant on ``log rate``: each
probe is a full encoding pass (file bytes counted exactly, nothing written), and the
bracket keeps the search from leaving the range where the answer lies. Three to five
passes usually land within 2% of the target; the encoder then writes the chosen
probe's units (``lvc.codec.api.encode``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from lvc.models.frozen import QUALITY_MAX

TOLERANCE = 0.02  # relative rate error accepted by the search (the contract is 5%)
MAX_PASSES = 7
START_Q = QUALITY_MAX // 2
LOG_RATE_SLOPE = 1.6  # typical d(log rate)/dq of the shipped model: the first step's guess


@dataclass
class RateSearch:
    """Outcome of :func:`search_quality`: the chosen quality and every probe made."""

    quality: int
    bits: float
    probes: list[tuple[int, float]] = field(default_factory=list)
    reachable: bool = True  # False: target outside [rate(q=0), rate(q=1)]; the nearest end is used


def search_quality(measure: Callable[[int], float], target_bits: float, tolerance: float = TOLERANCE,
                   max_passes: int = MAX_PASSES) -> RateSearch:
    """Quality (0..QUALITY_MAX) whose ``measure(q)`` (total bits) is closest to ``target_bits``."""
    if target_bits <= 0:
        raise ValueError("target rate must be positive")
    probes: list[tuple[int, float]] = []

    def probe(q: int) -> float:
        for pq, pb in probes:
            if pq == q:
                return pb
        bits = measure(q)
        probes.append((q, bits))
        return bits

    lo: tuple[int, float] | None = None  # highest probe below the target
    hi: tuple[int, float] | None = None  # lowest probe above it
    q = START_Q
    for _ in range(max_passes):
        bits = probe(q)
        err = math.log(bits / target_bits)
        if abs(err) <= math.log1p(tolerance):
            break
        if err < 0:
            lo = (q, bits) if lo is None or q > lo[0] else lo
        else:
            hi = (q, bits) if hi is None or q < hi[0] else hi
        if lo is not None and lo[0] == QUALITY_MAX and err < 0:
            break  # the best quality is still too small
        if hi is not None and hi[0] == 0 and err > 0:
            break  # the lowest quality is still too large
        if lo is not None and hi is not None:
            if hi[0] - lo[0] <= 1:
                break
            # secant on log rate inside the bracket, kept away from its ends
            f_lo, f_hi = math.log(lo[1] / target_bits), math.log(hi[1] / target_bits)
            t = -f_lo / (f_hi - f_lo) if f_hi != f_lo else 0.5
            q = min(hi[0] - 1, max(lo[0] + 1, round(lo[0] + min(0.9, max(0.1, t)) * (hi[0] - lo[0]))))
        else:
            q = round(q - err / LOG_RATE_SLOPE * QUALITY_MAX)
            q = min(QUALITY_MAX, max(0, q))
    best_q, best_bits = min(probes, key=lambda p: abs(math.log(p[1] / target_bits)))
    reachable = not ((best_q == QUALITY_MAX and best_bits < target_bits) or (best_q == 0 and best_bits > target_bits))
    return RateSearch(best_q, best_bits, probes, reachable)
