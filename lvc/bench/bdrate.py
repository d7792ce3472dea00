"""BD-rate between RD curves (the bjontegaard package, piecewise cubic interpolation)."""

from __future__ import annotations

import warnings
from collections import defaultdict

import numpy as np

METRICS = ("psnr_rgb", "psnr_y", "psnr_yuv", "ssim", "ms_ssim")
MIN_OVERLAP = 0.5
BOOTSTRAP_MIN_SEQUENCES = 5  # fewer inputs than this: no interval (it would mean little)


def _curve(rows: list[dict], metric: str) -> tuple[np.ndarray, np.ndarray]:
    pts = sorted((r["bpp"], r[metric]) for r in rows if metric in r)
    rate, dist = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    if metric in ("ssim", "ms_ssim"):  # in dB, as usual for BD computations on (MS-)SSIM
        dist = -10 * np.log10(np.clip(1 - dist, 1e-10, None))
    return rate, dist


def bd_rate(anchor: list[dict], test: list[dict], metric: str) -> float | None:
    """Percent rate change of ``test`` against ``anchor`` at equal quality (negative: fewer bits)."""
    import bjontegaard

    ra, da = _curve(anchor, metric)
    rt, dt = _curve(test, metric)
    if len(ra) < 4 or len(rt) < 4:
        return None
    # Keep the monotone part of each curve; interpolation needs strictly increasing quality.
    ra, da = _monotone(ra, da)
    rt, dt = _monotone(rt, dt)
    if len(ra) < 4 or len(rt) < 4:
        return None
    # Only where the quality ranges overlap by at least half the shorter one: no extrapolation.
    overlap = min(da.max(), dt.max()) - max(da.min(), dt.min())
    if overlap <= MIN_OVERLAP * min(da.max() - da.min(), dt.max() - dt.min()):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return float(bjontegaard.bd_rate(ra, da, rt, dt, method="pchip", require_matching_points=False,
                                             min_overlap=0.0))
        except (ValueError, ZeroDivisionError):
            return None


def _monotone(rate: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep, best = [], -np.inf
    for i in range(len(rate)):
        if dist[i] > best:
            keep.append(i)
            best = dist[i]
    return rate[keep], dist[keep]


def average_curves(rows: list[dict]) -> dict[tuple[str, object], dict]:
    """Per (codec, param): bpp and metrics averaged over sequences (dataset curve)."""
    groups: dict = defaultdict(list)
    for r in rows:
        groups[(r["codec"], r["param"])].append(r)
    out = {}
    for key, rs in groups.items():
        out[key] = {"codec": key[0], "param": key[1], "bpp": float(np.mean([r["bpp"] for r in rs])),
                    "n": len(rs), **{m: float(np.mean([r[m] for r in rs])) for m in METRICS if m in rs[0]}}
    return out


def bd_table(rows: list[dict], pairs: list[tuple[str, str]]) -> list[dict]:
    """BD-rate rows per sequence, for the dataset-average curve ("AVERAGE"), and their mean
    over sequences ("MEAN", the common-test-conditions convention; only where every sequence
    has a value). The two differ when clips sit at very different rates: the average curve
    weighs the clips with the most bits most."""
    table = []
    by_seq: dict = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by_seq[r["sequence"]][r["codec"]].append(r)
    avg: dict = defaultdict(list)
    for r in average_curves(rows).values():
        avg[r["codec"]].append(r)
    for seq, codecs in [*by_seq.items(), ("AVERAGE", avg)]:
        for test, anchor in pairs:
            if test not in codecs or anchor not in codecs:
                continue
            for m in METRICS:
                v = bd_rate(codecs[anchor], codecs[test], m)
                if v is not None:
                    table.append({"sequence": seq, "test": test, "anchor": anchor, "metric": m, "percent": v})
    if len(by_seq) > 1:
        for test, anchor in pairs:
            for m in METRICS:
                vals = [r["percent"] for r in table if r["sequence"] in by_seq
                        and (r["test"], r["anchor"], r["metric"]) == (test, anchor, m)]
                if vals and len(vals) == len(by_seq):
                    table.append({"sequence": "MEAN", "test": test, "anchor": anchor, "metric": m,
                                  "percent": float(np.mean(vals))})
    return table


def bootstrap_interval(rows: list[dict], test: str, anchor: str, metric: str, resamples: int = 200,
                       seed: int = 0) -> tuple[float, float] | None:
    """95% percentile interval of the average-curve BD-rate when the inputs are drawn again
    with replacement: how much the figure depends on which images or clips were measured
    (sampling error only; the codecs themselves are deterministic). None with fewer than
    ``BOOTSTRAP_MIN_SEQUENCES`` inputs or where most resamples give no BD-rate."""
    by_seq: dict = defaultdict(dict)
    for r in rows:
        if r["codec"] in (test, anchor) and metric in r:
            by_seq[r["sequence"]][(r["codec"], r["param"])] = (r["bpp"], r[metric])
    keys = sorted({k for pts in by_seq.values() for k in pts}, key=str)
    seqs = [s for s, pts in by_seq.items() if len(pts) == len(keys)]  # only inputs with every point
    if len(seqs) < BOOTSTRAP_MIN_SEQUENCES:
        return None
    values = np.array([[by_seq[s][k] for k in keys] for s in seqs])  # (sequences, points, 2)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(resamples):
        mean = values[rng.integers(0, len(seqs), len(seqs))].mean(axis=0)
        curves = {c: [{"bpp": b, metric: d} for (codec, _), (b, d) in zip(keys, mean, strict=True) if codec == c]
                  for c in (test, anchor)}
        v = bd_rate(curves[anchor], curves[test], metric)
        if v is not None:
            out.append(v)
    if len(out) < resamples // 2:
        return None
    lo, hi = np.percentile(out, [2.5, 97.5])
    return float(lo), float(hi)
