"""Retrieval benchmark: recall@1 of ``lvc search`` under transforms, beside a perceptual hash.

Every source clip is indexed whole. Queries are cut from random places of the sources
(3 s, or the whole clip when shorter) and transformed with the ffmpeg CLI: re-encoding
(x264 crf 23 and 40), rescaling (1/2, 1/4), brightness x1.2 and x0.8, a 1-2 s excerpt, a
70% centre crop, a horizontal flip. A query is a hit when the top result is its source;
"time" hits also start within 1 s of the query's true start. The baseline hashes frames
(pHash, 4 per second) and ranks sources by the mean, over query frames, of the smallest
Hamming distance to any of the source's frames. Query latency at 100k indexed segments
is measured on random unit vectors with the same search code.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np

from lvc.errors import InputError
from lvc.models.registry import analysis_model
from lvc.search import index as ix
from lvc.search import service
from lvc.search.descriptors import Describer, iter_frames
from lvc.search.query import Searcher

TRANSFORMS = {
    "x264_crf23": ([], ["-crf", "23"]),
    "x264_crf40": ([], ["-crf", "40"]),
    "scale_1/2": (["scale=trunc(iw/4)*2:trunc(ih/4)*2"], []),
    "scale_1/4": (["scale=trunc(iw/8)*2:trunc(ih/8)*2"], []),
    "bright_+20%": (["colorchannelmixer=rr=1.2:gg=1.2:bb=1.2"], []),
    "bright_-20%": (["colorchannelmixer=rr=0.8:gg=0.8:bb=0.8"], []),
    "excerpt_1-2s": ([], []),
    "crop_70%": (["crop=trunc(iw*0.35)*2:trunc(ih*0.35)*2"], []),
    "hflip": (["hflip"], []),
}
QUERY_SECONDS = 3.0


def _duration(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True).stdout.strip()
    return float(out) if out and out != "N/A" else 0.0


def make_query(src: Path, out: Path, name: str, start: float, length: float) -> None:
    filters, extra = TRANSFORMS[name]
    cmd = ["ffmpeg", "-loglevel", "error", "-y", "-ss", f"{start:.3f}", "-t", f"{length:.3f}", "-i", str(src), "-an"]
    if filters:
        cmd += ["-vf", ",".join(filters)]
    cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p", *(extra or ["-crf", "18"]), str(out)]
    subprocess.run(cmd, check=True)


class HashBaseline:
    """Per-frame perceptual hashes (imagehash pHash), 4 frames per second."""

    def __init__(self) -> None:
        try:
            import imagehash  # noqa: F401 - fail early when the baseline's dependency is missing
        except ImportError:
            raise InputError("the pHash baseline needs imagehash", None,
                             "pip install -e '.[baselines]', or pass --no-baseline") from None
        self.db: dict[str, np.ndarray] = {}

    @staticmethod
    def hashes(path: Path) -> np.ndarray:
        import imagehash
        from PIL import Image

        return np.array([imagehash.phash(Image.fromarray(f)).hash.ravel() for _, _, f in iter_frames(path)])

    def add(self, path: Path) -> None:
        self.db[str(path)] = self.hashes(path)

    def best(self, query: Path) -> str:
        q = self.hashes(query)
        score = {p: (q[:, None, :] != h[None, :, :]).sum(-1).min(1).mean() for p, h in self.db.items()}
        return min(score, key=score.get)


def run(sources: list[Path], work: Path, queries_per_source: int = 2, seed: int = 0, progress: bool = True,
        baseline: bool = True) -> dict:
    from tqdm import tqdm

    work.mkdir(parents=True, exist_ok=True)
    root = work / "index"
    if not ix.exists(root):
        service.index_add(sources, root, progress=False)
    state = ix.load(root)
    searcher = Searcher(state)
    describer = Describer(analysis_model())
    hb = HashBaseline() if baseline else None
    if hb:
        for s in sources:
            hb.add(s)
    rng = np.random.default_rng(seed)
    rows = []
    jobs = [(s, n, q) for s in sources for n in TRANSFORMS for q in range(queries_per_source)]
    for src, name, q in tqdm(jobs, desc="queries", disable=not progress):
        dur = _duration(src)
        length = float(rng.uniform(1.0, 2.0)) if name.startswith("excerpt") else min(QUERY_SECONDS, dur)
        start = float(rng.uniform(0, max(0.0, dur - length - 0.05)))
        qpath = work / "queries" / f"{src.stem}_{name.replace('/', '_').replace('%', 'pc')}_{q}.mp4"
        qpath.parent.mkdir(exist_ok=True)
        if not qpath.exists():
            make_query(src, qpath, name, start, length)
        t0 = time.perf_counter()
        matches = searcher.search(service.query_variants(qpath, describer), k=5)
        seconds = time.perf_counter() - t0
        top = matches[0] if matches else None
        row = {"source": str(src), "transform": name, "start": start, "length": length, "query_seconds": seconds,
               "lvc_top": top.path if top else None, "lvc_start": top.start if top else None}
        row["lvc_hit"] = row["lvc_top"] == str(src)
        row["lvc_time_hit"] = bool(row["lvc_hit"] and abs(top.start - start) <= 1.0)
        if hb:
            row["phash_hit"] = hb.best(qpath) == str(src)
        rows.append(row)
    summary = {}
    for name in TRANSFORMS:
        r = [x for x in rows if x["transform"] == name]
        summary[name] = {"queries": len(r), "lvc_recall@1": float(np.mean([x["lvc_hit"] for x in r])),
                         "lvc_time@1": float(np.mean([x["lvc_time_hit"] for x in r]))}
        if hb:
            summary[name]["phash_recall@1"] = float(np.mean([x["phash_hit"] for x in r]))
    result = {"sources": [str(s) for s in sources], "segments": int(len(state.ids)), "summary": summary,
              "median_query_seconds": statistics.median(x["query_seconds"] for x in rows), "rows": rows}
    (work / "retrieval.json").write_text(json.dumps(result, indent=2))
    return result


def latency(segments: int = 100_000, dim: int = 256, query_segments: int = 3, repeats: int = 50,
            seed: int = 0) -> dict:
    """Median search time (FAISS candidates + alignment) with ``segments`` random entries."""
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((segments, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    state = ix.IndexState("synthetic", "random", dim)
    per_video = 100
    for v in range(segments // per_video):
        spans = np.stack([np.arange(per_video), np.arange(1, per_video + 1)], 1).astype(float)
        ix.add_video(state, f"video{v}", per_video, vecs[v * per_video:(v + 1) * per_video], spans)
    searcher = Searcher(state)
    times = []
    for _ in range(repeats):
        q = vecs[rng.integers(0, segments - query_segments)][None] + 0.1 * rng.standard_normal((query_segments, dim))
        q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
        t0 = time.perf_counter()
        searcher.search([q, q[:, ::-1].copy()], k=5)
        times.append(time.perf_counter() - t0)
    return {"segments": segments, "query_segments": query_segments, "variants": 2,
            "median_ms": 1000 * statistics.median(times), "max_ms": 1000 * max(times)}
