"""Bench outputs: results.json (one schema for lvc and anchors), results.csv, RD plots."""

from __future__ import annotations

import csv
import json
import os
from collections import defaultdict
from pathlib import Path

from lvc.bench.bdrate import METRICS, average_curves

SCHEMA = "lvc-bench/1"


def write_results(out: Path, codecs: list, rows: list[dict], bd: list[dict], conditions: dict) -> Path:
    by_codec = defaultdict(list)
    for r in rows:
        by_codec[r["codec"]].append(r)
    doc = {"schema": SCHEMA, "conditions": conditions,
           "codecs": [{"name": c.name, "version": c.version,
                       "command": next((r["command"] for r in rows if r["codec"] == c.name), None),
                       "points": by_codec[c.name]} for c in codecs],
           "bd_rate": bd,
           "average": list(average_curves(rows).values())}
    path = out / "results.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)
    with open(out / "results.csv", "w", newline="") as f:
        cols = ["sequence", "codec", "param", "bytes", "bpp", "kbps", *METRICS, "encode_fps", "decode_fps",
                "peak_rss_mb"]
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def plot_average(out: Path, rows: list[dict], metric: str = "psnr_rgb") -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = defaultdict(list)
    for r in average_curves(rows).values():
        if metric in r:
            curves[r["codec"]].append((r["bpp"], r[metric]))
    if not curves:  # e.g. MS-SSIM skipped
        return None
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for name, pts in sorted(curves.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", ms=3, label=name, lw=2 if name == "lvc" else 1)
    ax.set_xlabel("bits per pixel")
    ax.set_ylabel(metric.replace("_", "-").upper())
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = out / f"rd_{metric}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
