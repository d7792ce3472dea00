"""How high can a conditional P-frame's picture go? Capacity bounds of a `lvc train-inter`
checkpoint on real frames (docs/models.md, "Session 34: the PC frames' ceiling").

Frame 0 of CLIP (a crop) is coded as the codec codes a forced I-frame, frame 1 as a PC
frame in the training form (rounded, not noisy), then frame 1 is fitted with Adam, each time
for MSE alone (no rate), through ever fewer parts of the model:

* the latent, through the context update and the display (what any encoder could reach);
* a latent of D dimensions per 16x16 block through a random linear map added to the
  context (what a latent of that size could reach with a linear path into the context);
* the new context itself (what the display can show).

usage: .venv/bin/python scripts/pc_ceiling.py CKPT CLIP [--quality Q] [--dims 96,192]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import numpy as np
import torch
from torch.nn import functional as F

from lvc.codec.motion import estimate_motion, warp
from lvc.entropy.priors import ste_round
from lvc.io.reader import open_video
from lvc.models.conditional import CONTEXT_SCALE, ConditionalConfig, ConditionalP
from lvc.models.latent import interp_levels
from lvc.models.registry import load_model
from lvc.train.inter import intra_latents, intra_picture


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return -10 * math.log10(float(((a.clamp(0, 1) - b) ** 2).mean()))


def fit(start: torch.Tensor, show: Callable[[torch.Tensor], torch.Tensor], target: torch.Tensor,
        steps: int, lr: float) -> float:
    """PSNR of ``show(p)`` after fitting ``p`` (from ``start``) to ``target`` for MSE."""
    p = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([p], lr=lr)
    for _ in range(steps):
        loss = ((show(p) - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return psnr(show(p), target)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("clip")
    ap.add_argument("--quality", type=float, default=1.0)
    ap.add_argument("--intra-offset", type=float, default=0.33)
    ap.add_argument("--dims", default="96,192", help="latent dimensions per 16x16 block to bound")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--intra", default="lvc-hl192d")
    args = ap.parse_args()
    torch.manual_seed(0)
    ck = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    model = ConditionalP(ConditionalConfig.from_dict(ck["inter_config"]))
    model.load_state_dict(ck["model"])
    model.eval().requires_grad_(False)
    intra = load_model(args.intra)
    with open_video(args.clip) as v:
        frames = [f for _, f in zip(range(2), v.frames())]
    h, w = (min(frames[0].shape[0], 256) // 64) * 64, (min(frames[0].shape[1], 384) // 64) * 64
    x = torch.from_numpy(np.stack(frames)[:, :h, :w]).permute(0, 3, 1, 2).float() / 255
    q = torch.tensor([args.quality])
    cfg = model.cfg
    with torch.no_grad():
        y_i = intra_latents(intra, x[:1], q + args.intra_offset * (1 - q))
        ctx, picture = model.intra_context(y_i), intra_picture(intra, y_i)
        mv = estimate_motion(x[:1] * 255, x[1:] * 255, cfg.block, frac=cfg.subpel)
        coded = model(x[1:], ctx, mv, q, picture if cfg.pixel_ref else None)
        ctx_w = warp(ctx, mv, cfg.block, CONTEXT_SCALE, cfg.subpel)
        moved = ste_round(warp(picture, mv, cfg.block, 1, cfg.subpel) * 255) / 255 if cfg.pixel_ref else None
        pix = torch.cat([x[1:], moved], 1) if cfg.pixel_ref else x[1:]
        gain = torch.exp(interp_levels(model.log_gain, q))[:, :, None, None]
        inv = interp_levels(torch.exp(model.log_inv_gain), q)[:, :, None, None]
        y0 = model.g_a(torch.cat([model.g_a_pix(pix), ctx_w], 1)) * gain
    target = x[1:]
    print(f"{args.clip} {w}x{h}, q={args.quality}, M={cfg.M}{' skip' if cfg.skip else ''}")
    print(f"  I-frame picture {psnr(picture, x[:1]):.2f} dB; moved onto frame 1 {psnr(moved, target):.2f} dB"
          if moved is not None else f"  I-frame picture {psnr(picture, x[:1]):.2f} dB")
    print(f"  PC frame 1 as coded: {float(coded['bpp']):.3f} bpp, {psnr(coded['x_hat'], target):.2f} dB")
    print(f"  latent fitted (no rate), through the update: "
          f"{fit(y0, lambda y: model.show(model.update(y * inv, ctx_w), moved), target, args.steps, 0.05):.2f} dB")
    for d in (int(s) for s in args.dims.split(",")):
        a = torch.randn(4 * cfg.C, d) / math.sqrt(d)

        def linear(y: torch.Tensor, a: torch.Tensor = a) -> torch.Tensor:
            return model.show(ctx_w + F.pixel_shuffle(torch.einsum("om,bmhw->bohw", a, y), 2), moved)

        start = torch.zeros(1, d, h // 16, w // 16)
        print(f"  {d} dimensions per block, random linear path: {fit(start, linear, target, args.steps, 0.05):.2f} dB")
    print(f"  the context fitted (the display's reach): "
          f"{fit(ctx_w, lambda c: model.show(c, moved), target, args.steps, 0.05):.2f} dB")


if __name__ == "__main__":
    main()
