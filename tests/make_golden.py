"""Regenerate the committed test fixtures (run by hand, never by the suite).

    python tests/make_golden.py

* ``tiny.lvcm``  — a tiny hyperprior model (a few training steps on the test clip);
* ``clip.y4m``   — 6 real frames, 64x48 crop of the shipped sample clip (yuv420p);
* ``golden.lvc`` and ``golden.json`` — a stream, the SHA-256 of its decoded fixed-point
  latents and of its decoded frames.

The golden stream pins the bitstream: a change that breaks decoding of old files fails
``test_golden.py``. Regenerate the stream only together with a format version bump.
The latents are exact on every machine; the frames also depend on the float synthesis,
so a change of synthesis arithmetic (not of the format) refreshes only the digests:

    python tests/make_golden.py --digests-only
"""

from __future__ import annotations

import hashlib
import json
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from lvc.bitstream.container import LvcReader
from lvc.codec import api
from lvc.codec.cli import sample_clip
from lvc.codec.sequence import SequenceDecoder
from lvc.io.reader import open_video
from lvc.io.writer import FrameWriter
from lvc.models.frozen import freeze, save_frozen
from lvc.models.latent import LatentModel, ModelConfig
from lvc.models.registry import load_model

DATA = Path(__file__).parent / "data"
TINY = ModelConfig(N=8, M=16, Nh=8, levels=3)


def frames_hash(frames) -> str:
    h = hashlib.sha256()
    for f in frames:
        h.update(np.ascontiguousarray(f).tobytes())
    return h.hexdigest()


def digests(stream: Path, model: Path) -> dict[str, str]:
    """SHA-256 of the decoded fixed-point latents (exact everywhere) and of the frames."""
    lat = hashlib.sha256()
    with LvcReader(stream) as r:
        dec = SequenceDecoder(load_model(str(model)), r.header.width, r.header.height, str(stream))
        for unit in r.units():
            dec.decode(unit)
            lat.update(dec.reference.numpy().tobytes())
    return {"latents_sha256": lat.hexdigest(), "frames_sha256": frames_hash(api.iter_decode(stream, model=str(model)))}


def write_digests() -> None:
    d = digests(DATA / "golden.lvc", DATA / "tiny.lvcm")
    (DATA / "golden.json").write_text(json.dumps(d, indent=2) + "\n")


def main() -> None:
    DATA.mkdir(exist_ok=True)
    with open_video(sample_clip()) as v:
        frames = [f[100:148, 300:364] for _, f in zip(range(6), v.frames())]
    w = FrameWriter(DATA / "clip.y4m", 64, 48, Fraction(25))
    for f in frames:
        w.write(np.ascontiguousarray(f))
    w.commit()
    torch.manual_seed(0)
    model = LatentModel(TINY)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255
    x = torch.nn.functional.pad(x, (0, 0, 0, 16), mode="replicate")
    for _ in range(30):
        q = torch.rand(len(x))
        out = model(x, q)
        loss = (model.lmbda(q) * 255**2 * ((out["x_hat"] - x) ** 2).flatten(1).mean(1) + out["bpp"]).mean()
        opt.zero_grad()
        (loss + model.aux_loss()).backward()
        opt.step()
    save_frozen(freeze(model, "lvc-test-tiny"), DATA / "tiny.lvcm")
    api.encode(DATA / "clip.y4m", DATA / "golden.lvc", quality=0.6, model=str(DATA / "tiny.lvcm"), progress=False)
    write_digests()
    print("wrote", sorted(p.name for p in DATA.iterdir()))


if __name__ == "__main__":
    write_digests() if sys.argv[1:] == ["--digests-only"] else main()
