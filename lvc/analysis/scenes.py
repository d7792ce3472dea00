"""Shot boundaries from latent change signals: hard cuts, dissolves and fades.

* **change** ``c_t``: cosine distance between consecutive frames' pooled latent descriptors
  (global channel statistics: content, not layout, so camera and object motion move it
  little). A hard cut is a frame whose change towers over its neighbourhood's (ratio to the
  local mean, as PySceneDetect's adaptive detector does with HSV differences) and is
  large in itself.
* **span change** ``s_t``: the same distance between frames ``t - k`` and ``t + k``. A
  dissolve changes the content completely over ``2k`` frames without any single big
  step: ``s_t`` has a clear local peak while the ``c_t`` around it stay small.
* **fades**: the mean level dips to near black; the boundary is the darkest frame.

(The coarse latent *grid* distance, layout-sensitive, measured motion as much as content
on a fast-moving clip: a 1 s dissolve barely rose above it, so it feeds only the
activity curve.)

Detections closer than ``MIN_SCENE`` seconds to a stronger one are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lvc.analysis.signals import Signals

CUT_RATIO = 3.0  # change / local mean change
CUT_PEAK = 2.0  # change / largest other change within +-PEAK_SECONDS: a cut is a lone spike
PEAK_SECONDS = 0.25
CUT_MIN = 0.03  # absolute floor of a cut's change (cosine distance; unrelated shots: ~0.03-0.3)
SPAN_SECONDS = 0.4  # k in frames = SPAN_SECONDS * fps (the half-width of a dissolve)
SPAN_RATIO = 2.0  # span change / its local median
SPAN_MIN = 0.04
DARK = 0.06  # mean level of a faded-out frame
MIN_SCENE = 0.5  # seconds


@dataclass(frozen=True)
class Boundary:
    frame: int  # first frame of the new scene
    kind: str  # "cut", "dissolve" or "fade"
    strength: float


def change_curve(grid: np.ndarray, lag: int = 1) -> np.ndarray:
    """Normalised L1 distance between frames ``t - lag`` and ``t`` (0 for the first ``lag``)."""
    g = grid.astype(np.float32)
    out = np.zeros(len(g), np.float32)
    if len(g) > lag:
        a, b = g[lag:], g[:-lag]
        out[lag:] = np.abs(a - b).sum(1) / np.maximum(np.abs(a).sum(1) + np.abs(b).sum(1), 1e-6)
    return out


def descriptor_change(desc: np.ndarray, lag: int = 1) -> np.ndarray:
    """Cosine distance between the (L2-normalised) descriptors of frames ``t - lag`` and ``t``."""
    out = np.zeros(len(desc), np.float32)
    if len(desc) > lag:
        out[lag:] = 1.0 - (desc[lag:] * desc[:-lag]).sum(1)
    return out


def _local_mean(x: np.ndarray, half: int, exclude: int = 1) -> np.ndarray:
    n = len(x)
    out = np.empty(n, np.float32)
    for t in range(n):
        lo, hi = max(0, t - half), min(n, t + half + 1)
        window = np.concatenate([x[lo:max(lo, t - exclude)], x[min(hi, t + exclude + 1):hi]])
        out[t] = window.mean() if len(window) else 0.0
    return out


def detect(sig: Signals) -> list[Boundary]:
    n, fps = len(sig), max(sig.fps, 1e-3)
    if n < 2:
        return []
    c = descriptor_change(sig.descriptors)
    found: list[Boundary] = []
    mean_c = _local_mean(c, max(2, round(fps)))
    w = max(2, round(PEAK_SECONDS * fps))
    for t in range(1, n):
        others = np.concatenate([c[max(1, t - w):t], c[t + 1:t + w + 1]])
        if others.size and c[t] < CUT_PEAK * others.max():  # periodic jumps (dropped frames), shaking
            continue
        if c[t] >= CUT_MIN and c[t] >= CUT_RATIO * max(mean_c[t], 1e-3):
            found.append(Boundary(t, "cut", float(c[t] / max(mean_c[t], 1e-3))))
    k = max(2, round(SPAN_SECONDS * fps))
    if n > 2 * k:
        s = np.zeros(n, np.float32)
        span = descriptor_change(sig.descriptors, 2 * k)
        s[k:n - k] = span[2 * k:]  # centred: s[t] compares t - k with t + k
        med = np.array([np.median(s[max(k, t - 4 * k):min(n - k, t + 4 * k + 1)]) for t in range(n)])
        cuts = [b.frame for b in found]
        for t in range(k, n - k):
            if s[t] < SPAN_MIN or s[t] < SPAN_RATIO * max(med[t], 1e-3):
                continue
            if s[t] < s[max(0, t - k):t + k + 1].max() or any(abs(t - f) <= 2 * k for f in cuts):
                continue
            if c[t - k + 1:t + k + 1].max() >= 0.6 * s[t]:  # one step does most of it: a cut or motion
                continue
            found.append(Boundary(t, "dissolve", float(s[t] / max(med[t], 1e-3))))
    dark = sig.luma < DARK
    t = 0
    while t < n:
        if dark[t]:
            end = t
            while end + 1 < n and dark[end + 1]:
                end += 1
            if t > 0 and end < n - 1:  # dark between two lit stretches: a fade out / in
                mid = t + int(np.argmin(sig.luma[t:end + 1]))
                found = [b for b in found if not (t - k <= b.frame <= end + k)]
                found.append(Boundary(mid, "fade", float(1.0 - sig.luma[mid] / DARK)))
            t = end + 1
        else:
            t += 1
    return _thin(sorted(found, key=lambda b: b.frame), round(MIN_SCENE * fps))


def _thin(found: list[Boundary], gap: int) -> list[Boundary]:
    """Keep the strongest of detections closer than ``gap`` frames (cuts win over gradual ones)."""
    out: list[Boundary] = []
    for b in found:
        if out and b.frame - out[-1].frame < gap:
            rank = {"cut": 2, "fade": 1, "dissolve": 0}
            if (rank[b.kind], b.strength) > (rank[out[-1].kind], out[-1].strength):
                out[-1] = b
            continue
        out.append(b)
    return out


def scenes_of(boundaries: list[Boundary], n: int, fps: float) -> list[dict]:
    starts = [0] + [b.frame for b in boundaries if 0 < b.frame < n]
    ends = starts[1:] + [n]
    return [{"start_frame": s, "end_frame": e - 1, "start_time": round(s / fps, 3), "end_time": round(e / fps, 3)}
            for s, e in zip(starts, ends)]


def keyframes(sig: Signals, scenes: list[dict]) -> list[int]:
    """Per scene, the frame whose descriptor is closest to the scene's mean (its most typical)."""
    out = []
    for sc in scenes:
        d = sig.descriptors[sc["start_frame"]:sc["end_frame"] + 1]
        out.append(sc["start_frame"] + int(np.argmax(d @ d.mean(0))))
    return out


def activity(sig: Signals) -> tuple[np.ndarray, np.ndarray]:
    """Latent change per second: (second, mean frame-to-frame change in that second)."""
    c = change_curve(sig.grid)
    sec = np.floor(np.arange(len(c)) / max(sig.fps, 1e-3)).astype(int)
    secs = np.unique(sec)
    return secs, np.array([c[sec == s].mean() for s in secs])
