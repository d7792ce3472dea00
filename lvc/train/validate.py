"""Validation with the real encoder: actual bytes, not the training loss's estimate.

The model is frozen exactly as ``lvc export`` would freeze it, every validation image is
encoded to a real payload at a few qualities, and bpp / PSNR are logged per quality.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from lvc.codec.frame import FrameCodec
from lvc.io.reader import open_video
from lvc.metrics import psnr
from lvc.models.frozen import QUALITY_MAX, freeze
from lvc.models.latent import LatentModel
from lvc.train.data import collect_sources

QUALITIES = (0.0, 0.5, 1.0)


def load_images(paths: list[str], limit: int = 24) -> list[np.ndarray]:
    images = []
    for src in collect_sources(paths)[:limit]:
        with open_video(src) as v:
            images.append(next(iter(v.frames())))
    return images


def evaluate(model: LatentModel, images: list[np.ndarray], qualities=QUALITIES) -> list[dict]:
    """Mean bpp (real payload bytes) and PSNR-RGB per quality."""
    codec = FrameCodec(freeze(model, "validation"))
    rows = []
    for q in qualities:
        bits = pixels = 0
        ps = []
        for img in images:
            r = codec.encode(img, round(q * QUALITY_MAX))
            bits += len(r.payload) * 8
            pixels += img.shape[0] * img.shape[1]
            ps.append(psnr(float(np.mean((r.recon.astype(np.float64) - img) ** 2))))
        rows.append({"quality": q, "bpp": bits / pixels, "psnr_rgb": float(np.mean(ps))})
    return rows


def validate_and_log(model: LatentModel, paths: list[str], out: Path, step: int) -> list[dict]:
    rows = evaluate(model, load_images(paths))
    path = out / "val.csv"
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["step", "quality", "bpp", "psnr_rgb"])
        for r in rows:
            w.writerow([step, r["quality"], f"{r['bpp']:.4f}", f"{r['psnr_rgb']:.3f}"])
    return rows
