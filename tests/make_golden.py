"""Regenerate the committed test fixtures (run by hand, never by the suite).

    python tests/make_golden.py

* ``tiny.lvcm``  — a tiny hyperprior model (a few training steps on the test clip);
* ``clip.y4m``   — 6 real frames, 64x48 crop of the shipped sample clip (yuv420p);
* ``golden.lvc`` and ``golden.json`` — a stream, the SHA-256 of its decoded fixed-point
  latents and of its decoded frames;
* ``tiny-ctx.lvcm``, ``golden-ctx.lvc``, ``golden-ctx.json`` — the same for a tiny model with
  (random, non-trivial) spatial context and P-frame priors, I- and P-frames: pins the
  checkerboard and correction semantics (``python tests/make_golden.py --context``).
* ``tiny-inter.lvcm``, ``golden-inter.lvc``, ``golden-inter.json`` — an extension model file
  (``lvc-model/5``) adding a (random, non-trivial) conditional P section to ``tiny-ctx.lvcm``,
  and a stream with I-, P- and PC frames: pins motion, warp, the context prior and update
  (``python tests/make_golden.py --inter``; the digest of a PC frame is of its context).
* ``golden-skip.lvc``, ``golden-skip.json`` — over ``tiny-inter.lvcm``, PC frames with skipped
  blocks (frame type PS) in fixed patterns: pins the skip flags' syntax and semantics
  (``python tests/make_golden.py --skip``).
* ``golden-grey.lvc``, ``golden-grey.json`` — over ``tiny-inter.lvcm``, the test clip with
  frames 0-3 made grey (format 1.1: grey frame units, shown with R = G = B), coded by the
  encoder (``python tests/make_golden.py --grey``).
* ``golden-residual.lvc``, ``golden-residual.json`` — over ``tiny-inter.lvcm``, the test clip
  coded by the encoder with residual layers (format 1.3; ``python tests/make_golden.py
  --residual``); the latent digest includes each layer's decoded residual pixels.
* ``golden-yuv.lvc``, ``golden-yuv.json`` — the same in colour format 1 (format 1.4: shown as
  yuv420p planes, residual layers in Y, Cb, Cr; frames 0-1 grey; ``python tests/make_golden.py
  --yuv``); the digests include the layers' planes and the shown planes.
* ``golden-deblock.lvc``, ``golden-deblock.json`` — colour format 1 with in-loop deblocking
  (format 1.5; ``python tests/make_golden.py --deblock``): the shown planes pin the filter.
* ``golden-quarters.lvc``, ``golden-quarters.json`` — frames of copies with quartered blocks
  (frame type PQ, format 1.6; every block whose quarters differ quartered;
  ``python tests/make_golden.py --quarters``): the shown planes pin the quarters' copies.
* ``tiny-quarter.lvcm``, ``golden-sharp.lvc``, ``golden-sharp.json`` — an extension of
  ``tiny-ctx.lvcm`` with a quarter-pixel, pixel-referencing conditional section, and PQ
  frames of fractional quarters copied through filters chosen per block (``python
  tests/make_golden.py --sharp``): the shown planes pin the 8-tap copies of quarters.
* ``golden-intra.lvc``, ``golden-intra.json`` — over ``tiny-inter.lvcm``, residual layers with
  intra macroblocks (format 1.7; ``python tests/make_golden.py --intra``): the shown planes
  pin the spatial predictions.
* ``golden-small.lvc``, ``golden-small.json`` — over ``tiny-inter.lvcm``, residual layers with
  luma blocks coded as four 4x4 transforms (format 1.8; ``python tests/make_golden.py
  --small``): the shown planes pin the 4x4 inverse.
* ``golden-il.lvc``, ``golden-il.json`` — over ``tiny-inter.lvcm``, I-frames coded by the
  residual layer alone (frame type IL, format 1.9; ``python tests/make_golden.py
  --layer-intra``): the shown planes pin the flat base and the context a zero latent starts.

The golden stream pins the bitstream: a change that breaks decoding of old files fails
``test_golden.py``. Regenerate the stream only together with a format version bump.
The latents are exact on every machine; the frames also depend on the float synthesis,
so a change of synthesis arithmetic (not of the format) refreshes only the digests:

    python tests/make_golden.py --digests-only
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from lvc.bitstream.container import LvcReader
from lvc.codec import api
from lvc.codec.cli import sample_clip
from lvc.codec.decoder import SequenceDecoder
from lvc.codec.synthesis import SYNTHESIS_ENV
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
        for part in f if isinstance(f, tuple) else (f,):  # RGB, or colour format 1's planes
            h.update(np.ascontiguousarray(part).tobytes())
    return h.hexdigest()


def digests(stream: Path, model: Path) -> dict[str, str]:
    """SHA-256 of the decoded fixed-point latents (exact everywhere) and of the frames."""
    from lvc.codec.residual import ResidualCoder

    lat = hashlib.sha256()
    with LvcReader(stream) as r:
        fmt = r.header.colour_format
        dec = SequenceDecoder(load_model(str(model)), r.header.width, r.header.height, str(stream), colour_format=fmt)
        for unit in r.units():
            dec.decode(unit)
            lat.update((dec.reference if dec.reference is not None else dec.context).numpy().tobytes())
            if unit.residual is not None:  # exact integers too
                layer = ResidualCoder().decode(unit.residual, r.header.height, r.header.width, str(stream), fmt,
                                               unit.intra, unit.small)
                lat.update(layer.pixels(r.header.height, r.header.width).tobytes())
                if layer.has_intra:  # (since 1.7: the macroblocks and their modes)
                    lat.update(layer.intra.tobytes() + layer.modes.tobytes())
                if layer.has_small:  # (since 1.8: which luma blocks are four 4x4 transforms)
                    lat.update(layer.small.tobytes())
                if fmt:  # colour format 1: the planes' residual too
                    lat.update(b"".join(p.tobytes() for p in layer.planes(r.header.height, r.header.width)))
    with reference_synthesis():
        frames = frames_hash(api.iter_decode(stream, model=str(model), planes=None))
    return {"latents_sha256": lat.hexdigest(), "frames_sha256": frames}


@contextlib.contextmanager
def reference_synthesis():
    """Float32 synthesis for every picture (no bfloat16 fast path): the pinned frames."""
    before = os.environ.get(SYNTHESIS_ENV)
    os.environ[SYNTHESIS_ENV] = "float32"
    try:
        yield
    finally:
        if before is None:
            del os.environ[SYNTHESIS_ENV]
        else:
            os.environ[SYNTHESIS_ENV] = before


GOLDEN = {"golden": "tiny.lvcm", "golden-ctx": "tiny-ctx.lvcm", "golden-inter": "tiny-inter.lvcm",
          "golden-skip": "tiny-inter.lvcm", "golden-grey": "tiny-inter.lvcm",
          "golden-residual": "tiny-inter.lvcm", "golden-yuv": "tiny-inter.lvcm",
          "golden-deblock": "tiny-inter.lvcm", "golden-quarters": "tiny-inter.lvcm",
          "golden-sharp": "tiny-quarter.lvcm", "golden-intra": "tiny-inter.lvcm",
          "golden-small": "tiny-inter.lvcm", "golden-il": "tiny-inter.lvcm"}  # stem -> model


def write_digests() -> None:
    for stem, model in GOLDEN.items():
        if (DATA / f"{stem}.lvc").exists():
            d = digests(DATA / f"{stem}.lvc", DATA / model)
            (DATA / f"{stem}.json").write_text(json.dumps(d, indent=2) + "\n")


def _tiny_trained(frames: list[np.ndarray]) -> LatentModel:
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
    return model


def main_context() -> None:
    """The context-prior fixture (needs clip.y4m)."""
    from lvc.models.context import SpatialContext
    from lvc.models.correction import CorrectionConfig
    from lvc.models.temporal import TemporalPrior

    with open_video(DATA / "clip.y4m") as v:
        frames = list(v.frames())
    model = _tiny_trained(frames)
    cfg = CorrectionConfig(M=TINY.M, C=8)
    ctx, prior = SpatialContext(cfg), TemporalPrior(cfg)
    torch.nn.init.normal_(ctx.fuse[-1].weight, std=0.3)
    torch.nn.init.normal_(prior.fuse[-1].weight, std=0.05)
    save_frozen(freeze(model, "lvc-test-tiny-ctx", prior, ctx), DATA / "tiny-ctx.lvcm")
    api.encode(DATA / "clip.y4m", DATA / "golden-ctx.lvc", quality=0.9, model=str(DATA / "tiny-ctx.lvcm"),
               intra_period=3, progress=False)
    plain = DATA / "plain.tmp.lvcm"
    save_frozen(freeze(model, "lvc-test-tiny-ctx", prior), plain)
    api.encode(DATA / "clip.y4m", DATA / "plain.tmp.lvc", quality=0.9, model=str(plain), intra_period=3,
               progress=False)
    same = (DATA / "plain.tmp.lvc").read_bytes()[-200:] == (DATA / "golden-ctx.lvc").read_bytes()[-200:]
    for f in (plain, DATA / "plain.tmp.lvc"):
        f.unlink()
    if same:
        raise SystemExit("the context prior did not change the coding: pick a larger init std")
    write_digests()


def _write_stream(name: str, fm, units: list[tuple[int, bytes]], q: int) -> None:
    """A 64x48 stream of hand-made frame units, then every fixture's digests."""
    from lvc.bitstream.container import LvcWriter, SequenceHeader

    header = SequenceHeader(fm.name, fm.weights_hash, 64, 48, Fraction(25), len(units), 0)
    with LvcWriter(DATA / name, header) as w:
        for kind, payload in units:
            w.write_frame(kind, q, payload)
        w.commit()
    write_digests()


def main_inter() -> None:
    """The conditional P fixture (needs tiny-ctx.lvcm and clip.y4m)."""
    from lvc.bitstream.container import FRAME_I, FRAME_P, FRAME_PC
    from lvc.codec.frame import FrameCodec
    from lvc.codec.inter import InterCodec
    from lvc.models.conditional import ConditionalConfig, ConditionalP
    from lvc.models.frozen import extend, latent_space_id

    base = load_model(str(DATA / "tiny-ctx.lvcm"))
    torch.manual_seed(0)
    inter = ConditionalP(ConditionalConfig(M=8, C=8, N=8, Nh=8, intra_M=TINY.M, levels=TINY.levels))
    torch.nn.init.normal_(inter.g_c[-1].weight, std=0.05)  # a context update that does something
    ext = extend(base, "lvc-test-tiny-inter", inter, latent_space_id(base.g_a, base.log_gain), "tiny-ctx.lvcm")
    save_frozen(ext, DATA / "tiny-inter.lvcm")
    fm = load_model(str(DATA / "tiny-inter.lvcm"))
    with open_video(DATA / "clip.y4m") as v:
        frames = list(v.frames())
    # Every transition the decoder knows, forced: I -> P -> PC -> PC -> I -> PC.
    fc, ic, q = FrameCodec(fm), InterCodec(fm), 40000
    units, latent, ctx = [], None, None
    for t, kind in enumerate((FRAME_I, FRAME_P, FRAME_PC, FRAME_PC, FRAME_I, FRAME_PC)):
        if kind == FRAME_PC:
            r = ic.encode(frames[t], frames[t - 1], q, ctx)
            ctx = r.context
        else:
            r = fc.encode(frames[t], q, reference=latent if kind == FRAME_P else None)
            latent, ctx = r.latent, ic.intra_context(r.latent, q)
        units.append((kind, r.payload))
    _write_stream("golden-inter.lvc", fm, units, q)


def main_skip() -> None:
    """The block-skip fixture (needs tiny-inter.lvcm and clip.y4m): I, PS, PS, PC, PS with
    fixed skip patterns (the encoder's decision is replaced; the syntax is what is pinned)."""
    from lvc.bitstream.container import FRAME_PS
    from lvc.codec import skip
    from lvc.codec.frame import FrameCodec
    from lvc.codec.inter import InterCodec

    fm = load_model(str(DATA / "tiny-inter.lvcm"))
    with open_video(DATA / "clip.y4m") as v:
        frames = list(v.frames())
    grid = np.indices((4, 4)).sum(0)
    patterns = [grid % 2 == 0, grid < 3, None, np.ones((4, 4), bool)]
    fc, ic, q = FrameCodec(fm), InterCodec(fm), 40000
    r = fc.encode(frames[0], q)
    units, ctx, picture = [(0, r.payload)], ic.intra_context(r.latent, q), r.pending
    for t, pattern in enumerate(patterns, 1):
        skip.decide = lambda *a, _p=pattern: _p if _p is not None else np.zeros((4, 4), bool)
        r = ic.encode(frames[t], frames[t - 1], q, ctx, skip.ShownPicture(picture, frames[t - 1]))
        picture = r.pending
        assert (r.frame_type == FRAME_PS) == (pattern is not None)
        units.append((r.frame_type, r.payload))
        ctx = r.context
    _write_stream("golden-skip.lvc", fm, units, q)


def _grey_clip(src: Path, grey: int) -> Path:
    """The test clip with its first ``grey`` frames made grey, written to ``src`` (4:2:0 y4m)."""
    from lvc.codec.grey import show_grey

    with open_video(DATA / "clip.y4m") as v:
        frames = [show_grey(f) if i < grey else f for i, f in enumerate(v.frames())]
    w = FrameWriter(src, 64, 48, Fraction(25))
    for f in frames:
        w.write(np.ascontiguousarray(f))
    w.commit()
    return src


def main_grey() -> None:
    """The grey-frame fixture (needs tiny-inter.lvcm and clip.y4m)."""
    src = _grey_clip(DATA / "grey.tmp.y4m", 4)
    api.encode(src, DATA / "golden-grey.lvc", quality=0.7, model=str(DATA / "tiny-inter.lvcm"), intra_period=3,
               progress=False)
    src.unlink()
    with LvcReader(DATA / "golden-grey.lvc") as r:
        if [u.grey for u in r.units()] != [True] * 4 + [False] * 2:
            raise SystemExit("the grey frames did not come back from the 4:2:0 clip as grey")
    write_digests()


def main_residual() -> None:
    """The residual-layer fixture (needs tiny-inter.lvcm and clip.y4m)."""
    stream = DATA / "golden-residual.lvc"
    api.encode(DATA / "clip.y4m", stream, quality=0.9, model=str(DATA / "tiny-inter.lvcm"), intra_period=4,
               progress=False, residual=64.0)
    with LvcReader(stream) as r:
        if r.header.version != (1, 3) or sum(u.residual is not None for u in r.units()) < 4:
            raise SystemExit("the encoder coded too few residual layers for the fixture")
    write_digests()


def main_yuv() -> None:
    """The colour format 1 fixture (needs tiny-inter.lvcm and clip.y4m), frames 0-1 grey;
    format 1.4: no deblocking, and frames of copies as PS frames (no PM, which is 1.5's)."""
    from lvc.codec import sequence

    sequence.MOTION_ONLY = False
    src = _grey_clip(DATA / "yuv.tmp.y4m", 2)
    stream = DATA / "golden-yuv.lvc"
    api.encode(src, stream, quality=0.9, model=str(DATA / "tiny-inter.lvcm"), intra_period=4, progress=False,
               residual=64.0, colour="yuv420", deblock=False)
    src.unlink()
    with LvcReader(stream) as r:
        units = list(r.units())
        if r.header.version != (1, 4) or r.header.colour_format != 1 or sum(u.residual is not None for u in units) < 4:
            raise SystemExit("the encoder coded too few residual layers for the fixture")
        if [u.grey for u in units] != [True] * 2 + [False] * 4:
            raise SystemExit("the grey frames did not come back from the 4:2:0 clip as grey")
    write_digests()


def main_deblock() -> None:
    """The deblocking fixture (needs tiny-inter.lvcm and clip.y4m): colour format 1 with
    in-loop deblocking at nonzero luma and chroma strengths (format 1.5)."""
    stream = DATA / "golden-deblock.lvc"
    api.encode(DATA / "clip.y4m", stream, quality=0.5, model=str(DATA / "tiny-inter.lvcm"), intra_period=4,
               progress=False, residual=64.0, colour="yuv420")
    with LvcReader(stream) as r:
        strengths = [(u.residual[6], u.residual[7]) for u in r.units() if u.residual is not None]
        if r.header.version != (1, 5) or not all(any(s[i] for s in strengths) for i in (0, 1)):
            raise SystemExit("the encoder did not deblock luma and chroma in the fixture")
    write_digests()


def main_intra() -> None:
    """The intra fixture (needs tiny-inter.lvcm and clip.y4m): residual layers with intra
    macroblocks in every mode (format 1.7)."""
    from lvc.codec.residual import ResidualCoder

    stream = DATA / "golden-intra.lvc"
    api.encode(DATA / "clip.y4m", stream, quality=0.5, model=str(DATA / "tiny-inter.lvcm"), intra_period=4,
               progress=False, residual=64.0, colour="yuv420", small_transforms=False,
               layer_intra=False)
    with LvcReader(stream) as r:
        layers = [ResidualCoder().decode(u.residual, 48, 64, "golden", 1, u.intra) for u in r.units() if u.residual]
        modes = np.concatenate([x.modes.ravel() for x in layers if x.has_intra])
        if r.header.version != (1, 7) or len(set(modes.tolist())) < 4:
            raise SystemExit("the encoder did not code intra macroblocks in every mode in the fixture")
    write_digests()


def main_small() -> None:
    """The 4x4 transforms fixture (needs tiny-inter.lvcm and clip.y4m): residual layers with
    luma blocks coded as four 4x4 transforms (format 1.8)."""
    from lvc.codec.residual import ResidualCoder

    stream = DATA / "golden-small.lvc"
    api.encode(DATA / "clip.y4m", stream, quality=0.5, model=str(DATA / "tiny-inter.lvcm"), intra_period=4,
               progress=False, residual=64.0, colour="yuv420", layer_intra=False)
    with LvcReader(stream) as r:
        layers = [ResidualCoder().decode(u.residual, 48, 64, "golden", 1, u.intra, u.small)
                  for u in r.units() if u.residual]
        if r.header.version != (1, 8) or sum(x.has_small for x in layers) < 2:
            raise SystemExit("the encoder did not code 4x4 transforms in two layers of the fixture")
    write_digests()


def main_layer_intra() -> None:
    """The IL fixture (needs tiny-inter.lvcm and clip.y4m): I-frames coded by the residual
    layer alone (format 1.9) and the frames of copies after them."""
    from lvc.bitstream.container import FRAME_IL

    stream = DATA / "golden-il.lvc"
    api.encode(DATA / "clip.y4m", stream, quality=0.5, model=str(DATA / "tiny-inter.lvcm"), intra_period=3,
               progress=False, residual=64.0, colour="yuv420")
    with LvcReader(stream) as r:
        if r.header.version != (1, 9) or [u.frame_type for u in r.units()].count(FRAME_IL) < 2:
            raise SystemExit("the encoder did not code two IL frames in the fixture")
    write_digests()


def _quartered_fixture(stem: str, model: str, quality: float, intra_period: int) -> None:
    """Code clip.y4m with every block whose searched quarters differ from it quartered
    (``SPLIT_COST`` 0) into ``stem``.lvc; it must be format 1.6 with two PQ frames or more."""
    from lvc.bitstream.container import FRAME_PQ
    from lvc.codec import partition

    partition.SPLIT_COST = 0.0
    stream = DATA / f"{stem}.lvc"
    api.encode(DATA / "clip.y4m", stream, quality=quality, model=str(DATA / model), intra_period=intra_period,
               progress=False, residual=64.0, colour="yuv420")
    with LvcReader(stream) as r:
        if r.header.version != (1, 6) or [u.frame_type for u in r.units()].count(FRAME_PQ) < 2:
            raise SystemExit(f"the encoder quartered blocks in too few frames of {stem}")
    write_digests()


def main_quarters() -> None:
    """The quartered-blocks fixture (needs tiny-inter.lvcm and clip.y4m), format 1.6."""
    _quartered_fixture("golden-quarters", "tiny-inter.lvcm", 0.5, 4)


def main_sharp() -> None:
    """The quarter-pixel fixture (needs tiny-ctx.lvcm and clip.y4m): ``tiny-quarter.lvcm``
    and a stream of PQ frames with fractional quarters and filters chosen per block (which
    test_golden checks)."""
    from lvc.models.conditional import ConditionalConfig, ConditionalP
    from lvc.models.frozen import extend, latent_space_id

    base = load_model(str(DATA / "tiny-ctx.lvcm"))
    torch.manual_seed(4)
    inter = ConditionalP(ConditionalConfig(M=8, C=8, N=8, Nh=8, intra_M=TINY.M, levels=TINY.levels, pixel_ref=True,
                                           subpel=4))
    torch.nn.init.normal_(inter.g_c[-1].weight, std=0.05)
    ext = extend(base, "lvc-test-tiny-quarter", inter, latent_space_id(base.g_a, base.log_gain), "tiny-ctx.lvcm")
    save_frozen(ext, DATA / "tiny-quarter.lvcm")
    _quartered_fixture("golden-sharp", "tiny-quarter.lvcm", 0.8, 6)


def main() -> None:
    DATA.mkdir(exist_ok=True)
    with open_video(sample_clip()) as v:
        frames = [f[100:148, 300:364] for _, f in zip(range(6), v.frames())]
    w = FrameWriter(DATA / "clip.y4m", 64, 48, Fraction(25))
    for f in frames:
        w.write(np.ascontiguousarray(f))
    w.commit()
    model = _tiny_trained(frames)
    save_frozen(freeze(model, "lvc-test-tiny"), DATA / "tiny.lvcm")
    api.encode(DATA / "clip.y4m", DATA / "golden.lvc", quality=0.6, model=str(DATA / "tiny.lvcm"), progress=False)
    write_digests()
    print("wrote", sorted(p.name for p in DATA.iterdir()))


if __name__ == "__main__":
    {"--digests-only": write_digests, "--context": main_context, "--inter": main_inter, "--skip": main_skip,
     "--grey": main_grey, "--residual": main_residual, "--yuv": main_yuv, "--deblock": main_deblock,
     "--quarters": main_quarters, "--sharp": main_sharp, "--intra": main_intra,
     "--small": main_small, "--layer-intra": main_layer_intra}.get(
        sys.argv[1] if sys.argv[1:] else "", main)()
