"""Rate-distortion of `lvc train-inter` checkpoints along short chains, in the training form.

A proxy to rank checkpoints in minutes, before the real encoder: each clip's first frame
(a crop) is coded as the codec codes a forced I-frame, the next ones as PC frames, rounded
and not noisy, with motion estimated between the source frames as the training data's is.
Rates are the model's estimate of the latent and side information (motion vectors are not
counted; the real coder adds a little), distortion is PSNR-YUV 6:1:1
(`lvc.metrics`) on 8-bit pictures. Prints each checkpoint's points per quality and its
per-clip BD-rate against the first checkpoint.

usage: .venv/bin/python scripts/pc_chain.py CKPT [CKPT ...] --clips A.y4m B.y4m ... [--frames 6]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from lvc.bench.bdrate import bd_rate
from lvc.codec.motion import estimate_motion
from lvc.io.reader import open_video
from lvc.metrics import frame_metrics
from lvc.models.conditional import ConditionalConfig, ConditionalP
from lvc.models.frozen import FrozenModel
from lvc.models.registry import load_model
from lvc.train.correction import intra_identity
from lvc.train.inter import as_8bit, intra_latents, intra_picture, load_init


def load_clip(path: str, frames: int) -> torch.Tensor:
    with open_video(path) as v:
        got = [f for _, f in zip(range(frames), v.frames())]
    h, w = (got[0].shape[0] // 64) * 64, (min(got[0].shape[1], 448) // 64) * 64
    return torch.from_numpy(np.stack(got)[:, :h, :w]).permute(0, 3, 1, 2).float() / 255


def as_image(x: torch.Tensor) -> np.ndarray:
    return (x[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()


@torch.no_grad()
def chain(model: ConditionalP, intra: FrozenModel, x: torch.Tensor, q: float, offset: float) -> dict:
    """Mean bpp and PSNR-YUV of the PC frames of one chain (the I-frame excluded)."""
    qt = torch.tensor([q])
    y_i = intra_latents(intra, x[:1], qt + offset * (1 - qt))
    ctx, picture = model.intra_context(y_i), intra_picture(intra, y_i)
    bpp, psnr = [], []
    for t in range(1, x.shape[0]):
        mv = estimate_motion(x[t - 1:t] * 255, x[t:t + 1] * 255, model.cfg.block, frac=model.cfg.subpel)
        o = model(x[t:t + 1], ctx, mv, qt, picture if model.cfg.pixel_ref else None)
        ctx, picture = o["ctx"], as_8bit(o["x_hat"])
        bpp.append(float(o["bpp"]))
        psnr.append(frame_metrics(as_image(x[t:t + 1]), as_image(picture), with_ms_ssim=False)["psnr_yuv"])
    return {"bpp": float(np.mean(bpp)), "psnr_yuv": float(np.mean(psnr))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--clips", nargs="+", required=True)
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--qualities", default="0,0.33,0.67,1")
    ap.add_argument("--intra-offset", type=float, default=0.33)
    ap.add_argument("--intra", default="lvc-hl192d")
    args = ap.parse_args()
    intra = load_model(args.intra)
    clips = {c: load_clip(c, args.frames) for c in args.clips}
    qs = [float(s) for s in args.qualities.split(",")]
    points: list[dict[str, list[dict]]] = []
    for path in args.checkpoints:
        ck = load_init(path)
        if ck.get("latent_space") != intra_identity(intra):
            raise SystemExit(f"{path} was trained for {ck.get('intra_name')}, not {args.intra}: pass --intra")
        model = ConditionalP(ConditionalConfig.from_dict(ck["inter_config"]))
        model.load_state_dict(ck["model"])
        model.eval()
        per = {c: [chain(model, intra, x, q, args.intra_offset) for q in qs] for c, x in clips.items()}
        points.append(per)
        means = [(np.mean([per[c][i]["bpp"] for c in per]), np.mean([per[c][i]["psnr_yuv"] for c in per]))
                 for i in range(len(qs))]
        print(f"{path} (step {ck.get('step')}): " + ", ".join(f"q={q:g} {b:.4f}/{p:.2f}"
                                                            for q, (b, p) in zip(qs, means, strict=True)))
        if len(points) > 1:
            rates = [bd_rate(points[0][c], per[c], "psnr_yuv") for c in per]
            shown = " ".join(f"{r:+.1f}" if r is not None else "n/a" for r in rates)
            ok = [r for r in rates if r is not None]
            mean = f"{np.mean(ok):+.2f}%" if ok else "n/a"
            print(f"   BD-rate vs {args.checkpoints[0]}: mean {mean} ({shown})")


if __name__ == "__main__":
    main()
