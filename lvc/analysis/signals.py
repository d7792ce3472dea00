"""Per-frame latent signals of a video: a coarse latent grid, a pooled descriptor, luma.

From a video file every frame goes through the analysis transform at the canonical
search size (see :mod:`lvc.search.descriptors`); from a ``.lvc`` file coded in the analysis
model's latent space the decoded latents are used as they are, with no synthesis at all
(other streams are decoded to pixels: the thresholds are that latent space's). Either
way the grid is the latent average-pooled to ``GRID`` cells (coarse layout: a cut changes
it everywhere, motion locally), divided by the quality gain so thresholds do not depend
on the rate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from lvc.models.frozen import FrozenModel, latent_space_id
from lvc.search.descriptors import Describer, canonical

GRID = (4, 6)


@dataclass
class Signals:
    fps: float
    grid: np.ndarray  # (n, M * cells) float16
    descriptors: np.ndarray  # (n, D) float32, L2-normalised
    luma: np.ndarray  # (n,) mean level in [0, 1] (from the latent for .lvc input: a proxy)
    source: str  # "pixels" or "latents"

    def __len__(self) -> int:
        return len(self.luma)


def _pool(y: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    grid = F.adaptive_avg_pool2d(y, GRID).flatten(1)
    d = torch.cat([y.mean(dim=(2, 3)), y.std(dim=(2, 3))], dim=1)
    d = F.normalize(torch.sign(d) * d.abs().sqrt(), dim=1)
    return grid.half().numpy(), d.numpy().astype(np.float32)


@torch.no_grad()
def video_signals(path: str | os.PathLike, model: FrozenModel, progress=None, batch: int = 16) -> Signals:
    path = Path(path)
    if path.suffix.lower() == ".lvc":
        return _lvc_signals(path, model, progress, batch)
    from lvc.io.reader import open_video

    with open_video(path) as v:
        return _pixel_signals(v.frames(), float(v.info.fps), model, str(path), progress, batch)


def _pixel_signals(frames, fps: float, model: FrozenModel, where: str, progress, batch: int) -> Signals:
    """Signals of RGB frames through the analysis transform at the canonical size."""
    describer = Describer(model)
    grids, descs, lumas, pending = [], [], [], []

    def flush() -> None:
        x = torch.stack([canonical(f) for f in pending])
        level = x.mean(dim=(1, 2, 3))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = describer.m.g_a(x.contiguous(memory_format=torch.channels_last)).float()
        g, d = _pool(y)
        grids.append(g)
        descs.append(d)
        lumas.append(level.numpy())
        if progress is not None:
            progress.update(len(pending))
        pending.clear()

    for frame in frames:
        pending.append(frame)
        if len(pending) == batch:
            flush()
    if pending:
        flush()
    if not grids:
        from lvc.errors import InputError

        raise InputError("no frames", where, "pass a video with at least one frame")
    return Signals(fps, np.concatenate(grids), np.concatenate(descs), np.concatenate(lumas), "pixels")


def _lvc_signals(path: Path, model: FrozenModel, progress, batch: int) -> Signals:
    """Decoded latents as they are; streams in another latent space than ``model``'s, or with
    conditional P-frames (which carry only a context, in another feature space) or IL frames
    (no latent), are decoded
    to pixels and analysed as a video."""
    from lvc.bitstream.container import FRAME_NAMES, LATENT_FREE, LvcReader
    from lvc.codec.decoder import SequenceDecoder
    from lvc.entropy.tables import LOG_FRAC_BITS
    from lvc.models.registry import model_for_stream

    grids, descs, lumas = [], [], []
    with LvcReader(path) as r:
        h = r.header
        fm = (model if model.weights_hash == h.weights_hash
              else model_for_stream(h.model_name, h.weights_hash, None, str(path)))
        from lvc.codec.api import info, iter_decode

        latent_free = {FRAME_NAMES[t] for t in LATENT_FREE}
        if (latent_space_id(fm.g_a, fm.log_gain) != latent_space_id(model.g_a, model.log_gain)
                or (fm.inter is not None and any(f["type"] in latent_free for f in info(path)["frames"]))):
            return _pixel_signals(iter_decode(path, fm), float(h.fps), model, str(path), progress, batch)
        dec = SequenceDecoder(fm, h.width, h.height, str(path), colour_format=h.colour_format)
        try:
            for unit in r.units():
                latent = dec.decode_latent(unit)
                _, inv_gain = dec.codec._gains(unit.quality)
                hp, wp = -(-h.height // 16), -(-h.width // 16)
                y = (latent.float() / (1 << LOG_FRAC_BITS) * inv_gain)[:, :, :hp, :wp]
                g, d = _pool(y)
                grids.append(g)
                descs.append(d)
                lumas.append(np.asarray([float(y[0, :8].abs().mean())], np.float32))  # energy proxy
                if progress is not None:
                    progress.update(1)
        finally:
            dec.close()
    lum = np.concatenate(lumas)
    lum = lum / max(float(np.percentile(lum, 90)), 1e-6) * 0.45  # same scale as pixel luma, roughly
    return Signals(float(h.fps), np.concatenate(grids), np.concatenate(descs), lum, "latents")
