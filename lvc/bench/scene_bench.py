"""Shot-boundary benchmark: ``lvc scenes`` beside PySceneDetect's AdaptiveDetector.

Test videos are made with the ffmpeg CLI from pieces (3-5 s) of different source clips at
one size and rate, joined by one kind of transition per video: hard cuts, ``xfade``
dissolves (1 s) or fades through black (``fadeblack``, 1 s), so ground truth is exact.
A cut is found when a detected boundary lies within 1 frame of it; a gradual transition
when one lies inside its span (+-2 frames). Every detection matches at most one truth.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np

from lvc.analysis.scenes import detect
from lvc.analysis.signals import video_signals
from lvc.errors import InputError
from lvc.models.registry import analysis_model

W, H, FPS = 416, 240, 25
KINDS = {"cut": None, "dissolve": "dissolve", "fade": "fadeblack"}
TRANSITION = 1.0  # seconds, for dissolves and fades
MIN_SOURCE = 3.5  # seconds: shorter clips would leave almost no steady shot between transitions


def _clip_duration(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True).stdout.strip()
    return float(out) if out and out != "N/A" else 0.0


def make_video(sources: list[Path], out: Path, kind: str, pieces: int, rng: np.random.Generator) -> list[tuple]:
    """Write the test video; returns ground truth as (first_frame, last_frame) per transition."""
    chosen = rng.choice(len(sources), size=pieces, replace=len(sources) < pieces)
    lengths, inputs, chains = [], [], []
    for n, i in enumerate(chosen):
        src = sources[int(i)]
        length = float(rng.uniform(3.0, 5.0))
        dur = _clip_duration(src)
        length = min(length, dur - 0.1)
        start = float(rng.uniform(0, max(0.0, dur - length - 0.05)))
        inputs += ["-ss", f"{start:.3f}", "-t", f"{length:.3f}", "-i", str(src)]
        frames = int(round(length * FPS))
        lengths.append(frames)
        chains.append(f"[{n}:v]scale={W}:{H},setsar=1,fps={FPS},format=yuv420p,trim=end_frame={frames},"
                      f"setpts=N/({FPS}*TB)[p{n}]")
    truth, graph = [], ";".join(chains)
    if kind == "cut":
        graph += ";" + "".join(f"[p{n}]" for n in range(pieces)) + f"concat=n={pieces}:v=1[v]"
        pos = 0
        for f in lengths[:-1]:
            pos += f
            truth.append((pos, pos))
    else:
        d = int(TRANSITION * FPS)
        prev, total = "p0", lengths[0]
        for n in range(1, pieces):
            offset = total - d
            graph += f";[{prev}][p{n}]xfade=transition={KINDS[kind]}:duration={TRANSITION}:offset={offset / FPS}[x{n}]"
            truth.append((offset, offset + d))
            prev, total = f"x{n}", total + lengths[n] - d
        graph += f";[{prev}]null[v]"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *inputs, "-filter_complex", graph, "-map", "[v]",
                    "-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p", str(out)], check=True)
    return truth


def _score(found: list[int], truth: list[tuple], tol: int) -> tuple[int, int, int]:
    used, tp = set(), 0
    for lo, hi in truth:
        hit = next((f for f in found if f not in used and lo - tol <= f <= hi + tol), None)
        if hit is not None:
            used.add(hit)
            tp += 1
    return tp, len(found) - tp, len(truth) - tp


def pyscenedetect_boundaries(path: Path) -> list[int]:
    try:
        from scenedetect import AdaptiveDetector
        from scenedetect import detect as sd_detect
    except ImportError:
        raise InputError("the PySceneDetect baseline needs scenedetect", None,
                         "pip install -e '.[baselines]', or pass --no-baseline") from None

    scenes = sd_detect(str(path), AdaptiveDetector())
    return [s[0].get_frames() for s in scenes[1:]]


def run(sources: list[Path], work: Path, videos_per_kind: int = 4, pieces: int = 6, seed: int = 0,
        baseline: bool = True) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sources = [s for s in sources if _clip_duration(s) >= MIN_SOURCE]
    if len(sources) < 2:
        raise InputError(f"need at least two source clips of {MIN_SOURCE} s or more", None, "pass more or longer clips")
    model = analysis_model()
    result: dict = {"videos": [], "summary": {}}
    for kind in KINDS:
        totals = {"lvc": [0, 0, 0, 0.0, 0], "pyscenedetect": [0, 0, 0, 0.0, 0]}
        for v in range(videos_per_kind):
            path = work / f"{kind}_{v}.mp4"
            truth = make_video(sources, path, kind, pieces, rng)
            tol = 1 if kind == "cut" else 2
            t0 = time.perf_counter()
            sig = video_signals(path, model)
            found = [b.frame for b in detect(sig)]
            runs = {"lvc": (found, time.perf_counter() - t0, len(sig))}
            if baseline:
                t0 = time.perf_counter()
                runs["pyscenedetect"] = (pyscenedetect_boundaries(path), time.perf_counter() - t0, len(sig))
            entry = {"video": str(path), "kind": kind, "truth": truth}
            for name, (det, secs, frames) in runs.items():
                tp, fp, fn = _score(det, truth, tol)
                acc = totals[name]
                acc[0] += tp
                acc[1] += fp
                acc[2] += fn
                acc[3] += secs
                acc[4] += frames
                entry[name] = {"found": det, "tp": tp, "fp": fp, "fn": fn}
            result["videos"].append(entry)
        for name, (tp, fp, fn, secs, frames) in totals.items():
            if not frames:
                continue
            p = tp / max(tp + fp, 1)
            r = tp / max(tp + fn, 1)
            result["summary"].setdefault(kind, {})[name] = {
                "precision": p, "recall": r, "f1": 2 * p * r / max(p + r, 1e-9), "transitions": tp + fn,
                "fps": frames / max(secs, 1e-9)}
    (work / "scenes.json").write_text(json.dumps(result, indent=2))
    return result
