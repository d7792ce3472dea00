"""Training curves as a PNG: loss, bpp and PSNR over steps."""

from __future__ import annotations

import csv
from pathlib import Path


def plot_log(log_csv: Path, out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(log_csv) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    step = [int(r["step"]) for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for ax, key in zip(axes, ("loss", "bpp", "psnr")):
        ax.plot(step, [float(r[key]) for r in rows], lw=0.6)
        ax.set_xlabel("step")
        ax.set_title(key + (" (noisy proxy, mixed q)" if key != "loss" else ""))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = out_png.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(out_png)
