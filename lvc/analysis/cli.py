"""``lvc scenes``: shot boundaries, key frames, contact sheet and activity curve of a video."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from lvc.analysis import outputs
from lvc.analysis.scenes import activity, detect, keyframes, scenes_of
from lvc.analysis.signals import Signals, video_signals
from lvc.errors import InputError, LvcError
from lvc.models.registry import ANALYSIS_MODEL_HELP, analysis_model


def analyse(video: str | os.PathLike, model: str | None = None, progress: bool | None = None) -> tuple[Signals, dict]:
    """Signals and the scene report (``{"fps", "scenes", "boundaries"}``) of a video or ``.lvc`` file."""
    from tqdm import tqdm

    path = Path(video)
    if not path.is_file():
        raise InputError("no such file", str(path), "pass a video or .lvc file")
    enabled = sys.stderr.isatty() if progress is None else progress
    try:
        with tqdm(desc="scenes", unit="frame", disable=not enabled, leave=False) as bar:
            sig = video_signals(path, analysis_model(model), bar)
    except LvcError:
        raise
    except Exception as e:  # noqa: BLE001 - PyAV / container failures on a damaged file
        raise InputError(f"cannot read video ({e.__class__.__name__}: {e})", str(path)) from None
    found = detect(sig)
    report = {"fps": sig.fps, "scenes": scenes_of(found, len(sig), sig.fps),
              "boundaries": [{"frame": b.frame, "kind": b.kind, "time": round(b.frame / sig.fps, 3)} for b in found]}
    return sig, report


def add_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("scenes", help="shot boundaries, key frames, contact sheet, activity curve",
                       description="Scene cuts, dissolves and fades from latent change signals.")
    s.add_argument("video", help="video file or .lvc (latents are read without synthesis; streams with "
                   "conditional P-frames are decoded to pictures first)")
    s.add_argument("--json", action="store_true", help='print {"fps", "scenes": [...]} as JSON')
    s.add_argument("--keyframes", metavar="DIR", help="write one representative PNG per scene")
    s.add_argument("--contact-sheet", metavar="PNG", help="write a grid of key-frame thumbnails with times")
    s.add_argument("--activity", metavar="CSV", help="write latent change per second (CSV, and a .png plot)")
    s.add_argument("--model", help=ANALYSIS_MODEL_HELP)
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    sig, report = analyse(args.video, args.model)
    scenes = report["scenes"]
    if args.keyframes or args.contact_sheet:
        keys = keyframes(sig, scenes)
        frames = outputs.frames_at(args.video, keys)
        if args.keyframes:
            report["keyframes"] = outputs.write_keyframes(args.keyframes, frames, sig.fps)
        if args.contact_sheet:
            outputs.write_contact_sheet(args.contact_sheet, frames, scenes, keys, sig.fps)
    if args.activity:
        secs, values = activity(sig)
        outputs.write_activity(args.activity, secs, values, [b["time"] for b in report["boundaries"]])
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for n, sc in enumerate(scenes, 1):
            print(f"scene {n:3d}: frames {sc['start_frame']:6d}-{sc['end_frame']:6d}  "
                  f"{sc['start_time']:9.3f}-{sc['end_time']:9.3f} s")
    return 0
