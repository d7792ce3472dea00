"""``lvc bench`` (RD against classical codecs, BD-rate) and ``lvc speed`` (fps against x264)."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lvc.codec.runtime import COLOUR_CHOICES
from lvc.errors import InputError

DEFAULT_CODECS = "lvc,x264,x265,svtav1,aom,jpeg,webp,avif"


def add_parsers(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("bench", help="rate-distortion of lvc against x264/x265/AV1 and JPEG/WebP/AVIF")
    b.add_argument("inputs", nargs="+", help="videos, images, folders, or a JSON list of paths")
    b.add_argument("--out", required=True, help="output folder (results.json, results.csv, plots, cache)")
    b.add_argument("--codecs", default=DEFAULT_CODECS)
    b.add_argument("--frames", type=int, default=32, help="frames per video (default 32)")
    b.add_argument("--intra-period", type=int, default=32)
    b.add_argument("--model", help="lvc model name or .lvcm path")
    b.add_argument("--limit", type=int, help="use only the first N inputs")
    b.add_argument("--no-ms-ssim", action="store_true", help="skip MS-SSIM (faster)")
    b.add_argument("--jobs", type=int, default=1, help="points coded in parallel (default 1; speeds are then shared)")
    b.set_defaults(func=_bench)

    s = sub.add_parser("speed", help="encode/decode fps of lvc and x264 on one clip, medians over repeats")
    s.add_argument("input")
    s.add_argument("--frames", type=int, default=32)
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--quality", type=float, default=0.5)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--preset", choices=["fast", "medium", "slow"], default="medium")
    s.add_argument("--model", help="lvc model name or .lvcm path (default: the shipped model)")
    s.add_argument("--residual", type=float, help="lvc's residual layer weight (0: none; default: the encoder's)")
    s.add_argument("--colour", choices=COLOUR_CHOICES, default="auto",
                   help="lvc's colour format (default auto: yuv420 for video)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_speed)

    r = sub.add_parser("bench-search", help="retrieval recall@1 under transforms, beside a perceptual hash")
    r.add_argument("sources", nargs="+", help="source videos or folders (indexed whole)")
    r.add_argument("--out", required=True)
    r.add_argument("--queries", type=int, default=2, help="queries per source and transform (default 2)")
    r.add_argument("--latency-segments", type=int, default=100_000)
    r.add_argument("--no-baseline", action="store_true")
    r.set_defaults(func=_bench_search)

    c = sub.add_parser("bench-scenes", help="shot-boundary P/R/F1 on made-up videos, beside PySceneDetect")
    c.add_argument("sources", nargs="+", help="source videos or folders (pieces are cut from them)")
    c.add_argument("--out", required=True)
    c.add_argument("--videos", type=int, default=4, help="test videos per transition kind (default 4)")
    c.add_argument("--no-baseline", action="store_true")
    c.set_defaults(func=_bench_scenes)


def _lvc_variant(C, name: str, model: str | None, intra_period: int):
    """``lvc``, ``lvc-fast``/``-slow`` (presets), ``lvc-intra`` (every frame I), ``lvc-refineN``,
    ``lvc-noresidual`` (no residual layers), ``lvc-rgb`` (colour format 0: RGB pictures)."""
    variant = name.removeprefix("lvc").removeprefix("-")
    if variant == "noresidual":
        return C.lvc_codec(model, intra_period, name=name, residual=0.0)
    if variant == "rgb":
        return C.lvc_codec(model, intra_period, name=name, colour="rgb")
    if variant in ("", "fast", "medium", "slow"):
        return C.lvc_codec(model, intra_period, preset=variant or "medium", name=name)
    if variant == "intra":
        return C.lvc_codec(model, 1, name=name)
    if variant.startswith("refine") and variant.removeprefix("refine").isdigit():
        return C.lvc_codec(model, intra_period, refine=int(variant.removeprefix("refine")), name=name)
    raise InputError(f"unknown lvc variant {name!r}", None,
                     "use lvc, lvc-fast, lvc-slow, lvc-intra, lvc-refineN, lvc-noresidual or lvc-rgb")


def _select_codecs(names: list[str], model: str | None, intra_period: int) -> list:
    from lvc.bench import codecs as C

    out = []
    for n in names:
        if n == "lvc" or n.startswith("lvc-"):
            out.append(_lvc_variant(C, n, model, intra_period))
        elif n in ("jpeg", "webp", "avif"):
            out.append(next(c for c in C.image_codecs() if c.name == n))
        elif n in C.VIDEO_CRF:
            c = C.ffmpeg_codec(n, intra_period)
            if c is None:
                print(f"lvc bench: {n} is not available (ffmpeg or its encoder missing); skipped", file=sys.stderr)
            else:
                out.append(c)
        else:
            raise InputError(f"unknown codec {n!r}", None, f"choose from {DEFAULT_CODECS}")
    return out


_CI_METRICS = ("psnr_rgb", "psnr_yuv", "ms_ssim")  # the ones the results are judged by


def _bench(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from lvc.bench.bdrate import bd_table, bootstrap_interval
    from lvc.bench.html import render
    from lvc.bench.report import plot_average, write_results
    from lvc.bench.runner import expand_inputs, load_reference, run_point

    if args.frames < 1:
        raise InputError(f"--frames must be >= 1 (got {args.frames})")
    out = Path(args.out)
    (out / "cache").mkdir(parents=True, exist_ok=True)
    paths = expand_inputs(args.inputs)[: args.limit]
    if not paths:
        raise InputError("no inputs", None, "pass video/image files or folders")
    codecs = _select_codecs(args.codecs.split(","), args.model, args.intra_period)
    if args.jobs > 1:  # lvc's points share this process: one intra-op team per job, not one each of all cores
        torch.set_num_threads(max(1, torch.get_num_threads() // args.jobs))
    rows = []
    tty = sys.stderr.isatty()
    first = None
    for path in tqdm(paths, desc="inputs", disable=not tty):
        ref = load_reference(path, args.frames, out / "refs")
        first = first or ref
        tasks = [(codec, point) for codec in codecs if codec.kind in ("any", ref.kind) for point in codec.points]
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:  # anchors run as subprocesses
            rows += pool.map(lambda t, ref=ref: run_point(ref, t[0], t[1], out / "cache", not args.no_ms_ssim),
                             tasks)
    names = [c.name for c in codecs]
    bd = bd_table(rows, [(t, a) for t in names for a in names if t != a])  # every codec against every other
    for r in bd:  # lvc's average-curve figures get a bootstrap interval over the inputs
        if r["sequence"] == "AVERAGE" and r["test"].startswith("lvc") and r["metric"] in _CI_METRICS:
            ci = bootstrap_interval(rows, r["test"], r["anchor"], r["metric"])
            if ci is not None:
                r["ci95"] = [round(ci[0], 3), round(ci[1], 3)]
    write_results(out, codecs, rows, bd, {"frames": args.frames, "intra_period": args.intra_period,
                                          "inputs": [str(p) for p in paths]})
    plots = [p for m in ("psnr_rgb", "psnr_yuv", "ms_ssim") if (p := plot_average(out, rows, m)) is not None]
    render(out, json.loads((out / "results.json").read_text()), plots, _crops(first, codecs, rows, out))
    for r in bd:  # the average curve, then the mean of per-sequence values
        if r["sequence"] in ("AVERAGE", "MEAN") and r["test"].startswith("lvc"):
            what = "average curve" if r["sequence"] == "AVERAGE" else "per-sequence mean"
            if "ci95" in r:
                what += f"; 95% interval over the inputs {r['ci95'][0]:+.2f}..{r['ci95'][1]:+.2f}%"
            print(f"BD-rate {r['test']} vs {r['anchor']:7s} {r['metric']:9s} {r['percent']:+7.2f}%  ({what})")
    print(f"results: {out / 'results.json'}")
    return 0


def _crops(ref, codecs: list, rows: list[dict], out: Path) -> list:
    """Original / lvc / anchor centre crops of ``ref`` at similar bitrates."""
    from lvc.bench.html import center_crop

    ours = next((c for c in codecs if c.name.startswith("lvc")), None)
    preferred = ("x264", "x265", "svtav1", "aom") if ref.kind == "video" else ("jpeg", "webp", "avif")
    anchor = next((c for name in preferred for c in codecs if c.name == name), None)
    if ours is None:
        return []
    mine = sorted((r for r in rows if r["sequence"] == ref.name and r["codec"] == ours.name), key=lambda r: r["bpp"])
    if not mine:
        return []
    pick = mine[len(mine) // 2]
    crops = [("original", center_crop(ref.frames[0]))]
    chosen = [(ours, pick)]
    if anchor is not None:
        theirs = [r for r in rows if r["sequence"] == ref.name and r["codec"] == anchor.name]
        if theirs:
            chosen.append((anchor, min(theirs, key=lambda r: abs(r["bpp"] - pick["bpp"]))))
    with tempfile.TemporaryDirectory(dir=out) as work:
        for codec, row in chosen:
            coded = codec.run(ref.frames[:1], ref.path, row["param"], Path(work))
            crops.append((f"{codec.name} {row['param']}: {row['bpp']:.3f} bpp, PSNR-RGB {row['psnr_rgb']:.2f} dB",
                          center_crop(coded.rgb[0])))
    return crops


def _videos(paths: list[str]) -> list[Path]:
    from lvc.search.service import expand_media

    files = [p for p in expand_media(paths) if p.suffix.lower() not in (".png", ".jpg", ".jpeg", ".lvc")]
    if not files:
        raise InputError("no source videos", ", ".join(paths), "pass video files or folders")
    return files


def _bench_search(args: argparse.Namespace) -> int:
    from lvc.bench import search_bench

    res = search_bench.run(_videos(args.sources), Path(args.out), args.queries, baseline=not args.no_baseline)
    res["latency"] = search_bench.latency(args.latency_segments)
    (Path(args.out) / "retrieval.json").write_text(json.dumps(res, indent=2))
    for name, s in res["summary"].items():
        print(f"{name:14s} lvc recall@1 {s['lvc_recall@1']:.3f} (time {s['lvc_time@1']:.3f})"
              + (f"  phash {s['phash_recall@1']:.3f}" if "phash_recall@1" in s else "") + f"  n={s['queries']}")
    lat = res["latency"]
    print(f"query latency at {lat['segments']} segments: median {lat['median_ms']:.2f} ms (max {lat['max_ms']:.2f})")
    return 0


def _bench_scenes(args: argparse.Namespace) -> int:
    from lvc.bench import scene_bench

    res = scene_bench.run(_videos(args.sources), Path(args.out), args.videos, baseline=not args.no_baseline)
    for kind, per in res["summary"].items():
        for name, m in per.items():
            print(f"{kind:9s} {name:14s} P {m['precision']:.3f} R {m['recall']:.3f} F1 {m['f1']:.3f} "
                  f"({m['transitions']} transitions, {m['fps']:.0f} fps)")
    return 0


def _speed(args: argparse.Namespace) -> int:
    from lvc.bench.runner import load_reference

    if args.frames < 1 or args.repeats < 1:
        raise InputError("--frames and --repeats must be >= 1")
    with tempfile.TemporaryDirectory() as refs:
        ref = load_reference(Path(args.input), args.frames, Path(refs))
        return _speed_on(ref, args)


def _speed_on(ref, args: argparse.Namespace) -> int:
    from lvc.bench import codecs as C

    lvc_c = C.lvc_codec(args.model, preset=args.preset, residual=args.residual, colour=args.colour)
    x264 = C.ffmpeg_codec("x264", 32, threads=args.threads)
    import torch

    torch.set_num_threads(args.threads)
    res: dict[str, list] = {"lvc_encode": [], "lvc_decode": [], "x264_encode": [], "x264_decode": []}
    with tempfile.TemporaryDirectory() as work:
        for _ in range(args.repeats):
            a = lvc_c.run(ref.frames, ref.path, args.quality, Path(work))
            res["lvc_encode"].append(len(ref.frames) / a.encode_seconds)
            res["lvc_decode"].append(len(ref.frames) / a.decode_seconds)
            if x264 is not None:
                b = x264.run(ref.frames, ref.path, 28, Path(work))
                res["x264_encode"].append(len(ref.frames) / b.encode_seconds)
                res["x264_decode"].append(len(ref.frames) / b.decode_seconds)
    med = {k: statistics.median(v) for k, v in res.items() if v}
    w, h = ref.frames[0].shape[1], ref.frames[0].shape[0]
    report = {"input": str(ref.path), "size": f"{w}x{h}", "frames": len(ref.frames), "repeats": args.repeats,
              "threads": args.threads, "preset": args.preset, "colour": args.colour, "median_fps": med}
    if "x264_encode" in med:
        report["ratio_to_x264"] = {"encode": med["lvc_encode"] / med["x264_encode"],
                                   "decode": med["lvc_decode"] / med["x264_decode"]}
    print(json.dumps(report, indent=2) if args.json else
          "\n".join(f"{k:12s} {v:8.1f} fps" for k, v in med.items())
          + ("\nratio to x264: encode {encode:.3f}, decode {decode:.3f}".format(**report["ratio_to_x264"])
             if "ratio_to_x264" in report else ""))
    return 0
