"""Typed API behind ``lvc index`` and ``lvc search``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from lvc.errors import InputError, LvcError
from lvc.models.registry import analysis_model
from lvc.search import index as ix
from lvc.search.descriptors import DESCRIPTOR_VERSION, INDEX_CROPS, Describer, describe_video
from lvc.search.query import Match, Searcher

PathLike = str | os.PathLike
MEDIA = {".mp4", ".mkv", ".avi", ".mov", ".webm", ".y4m", ".264", ".265", ".h264", ".hevc", ".lvc",
         ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def expand_media(paths: list[PathLike]) -> list[Path]:
    """Media files under ``paths`` (files as given, folders searched recursively)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in MEDIA)
        elif p.exists():
            out.append(p)
        else:
            raise InputError("no such file or folder", str(p), "check the path")
    return out


def _model_tag(fm) -> str:
    """The model whose analysis made the descriptors: an extension model (conditional P-frames
    added to a base) describes as its base does, so indexes built with the base stay valid."""
    name, sha = fm.base or (fm.name, fm.sha256)
    return f"{name}@{sha[:16]}"


def _progress(total: int, desc: str, enabled: bool | None):
    from tqdm import tqdm

    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit="frame", disable=not enabled, leave=False, dynamic_ncols=True)


def _open(root: PathLike, model: str | None, create: bool) -> tuple[ix.IndexState, Describer]:
    fm = analysis_model(model)
    tag = _model_tag(fm)
    if Path(root).exists() and not Path(root).is_dir():
        raise InputError("--index is a file, not a folder", str(root), "pass an index folder")
    if create and not ix.exists(Path(root)):
        if Path(root).exists() and any(p.name != ix.LOCK for p in Path(root).iterdir()):
            raise InputError("folder exists and is not an lvc index", str(root), "pass a new or empty folder")
        return ix.IndexState(tag, DESCRIPTOR_VERSION, 2 * fm.config.M), Describer(fm)
    state = ix.load(root)
    if (state.model, state.descriptor) != (tag, DESCRIPTOR_VERSION):
        raise InputError(f"index was built with {state.model} ({state.descriptor}), not {tag} ({DESCRIPTOR_VERSION})",
                         str(root), "run `lvc index rebuild --index DIR`")
    return state, Describer(fm)


def _segments(path: Path, describer: Describer, progress: bool | None):
    """Segment vectors of every indexed view, stacked view-major (views * m, D), spans (m, 2)."""
    try:
        with _progress(0, path.name, progress) as bar:
            views = describe_video(path, describer, progress=bar, crops=INDEX_CROPS)
    except LvcError:
        raise
    except Exception as e:  # noqa: BLE001 - a decoder failure inside PyAV or the .lvc reader
        raise InputError(f"cannot read video ({e.__class__.__name__}: {e})", str(path)) from None
    segs = [fd.segments() for fd in views]
    vecs, spans = np.concatenate([v for v, _ in segs]), segs[0][1]
    if not len(spans):
        raise InputError("no frames", str(path), "pass a video with at least one frame")
    return vecs, spans, float(spans[-1][1])


def index_add(paths: list[PathLike], root: PathLike, model: str | None = None,
              progress: bool | None = None) -> list[str]:
    """Describe and add (or refresh) videos; written as one new index generation."""
    files = expand_media(paths)
    if not files:
        raise InputError("nothing to index", ", ".join(map(str, paths)), "pass videos, .lvc files or folders")
    _, describer = _open(root, model, create=True)  # checks the folder and model before the long part
    described = [(str(f), *_segments(f, describer, progress)) for f in files]
    with ix.writer_lock(root):
        state, _ = _open(root, model, create=True)  # re-read: another writer may have landed meanwhile
        for path, vecs, spans, duration in described:
            ix.add_video(state, path, duration, vecs, spans)
        ix.save(root, state)
    return [d[0] for d in described]


def index_remove(paths: list[PathLike], root: PathLike) -> list[str]:
    ix.load(root)  # a clear error for a missing or foreign folder before locking it
    with ix.writer_lock(root):
        state = ix.load(root)
        wanted = [str(Path(p)) for p in paths]
        gone = [p for p in wanted if ix.remove_video(state, p)]
        missing = [p for p in wanted if p not in gone]
        if missing:
            raise InputError("not in the index", ", ".join(missing), "see `lvc index list --index DIR`")
        ix.save(root, state)
    return gone


def index_list(root: PathLike) -> list[dict]:
    state = ix.load(root)
    return [{"path": v.path, "duration": round(v.duration, 3), "segments": len(v.ids)} for v in state.videos]


def index_rebuild(root: PathLike, model: str | None = None, progress: bool | None = None) -> list[str]:
    """Recompute every descriptor (after a model or descriptor change)."""
    old = ix.load(root)
    fm = analysis_model(model)
    state = ix.IndexState(_model_tag(fm), DESCRIPTOR_VERSION, 2 * fm.config.M)
    describer = Describer(fm)
    for v in old.videos:
        vecs, spans, duration = _segments(Path(v.path), describer, progress)
        ix.add_video(state, v.path, duration, vecs, spans)
    with ix.writer_lock(root):
        now = {v.path for v in ix.load(root).videos}  # writers that landed while describing
        for v in list(state.videos):
            if v.path not in now:
                ix.remove_video(state, v.path)
        for path in now - {v.path for v in state.videos}:
            vecs, spans, duration = _segments(Path(path), describer, progress)
            ix.add_video(state, path, duration, vecs, spans)
        ix.save(root, state)
    return [v.path for v in state.videos]


def query_variants(query: PathLike, describer: Describer, flip: bool = True) -> list[np.ndarray]:
    """Segment descriptors of the query, and of its mirror image (one decoding pass)."""
    from lvc.search.descriptors import FrameDescriptors, iter_frames, video_fps

    path = Path(query)
    if not path.exists():
        raise InputError("no such file", str(path), "pass a video, image or .lvc file")
    try:
        frames = list(iter_frames(path, describer.m))
        fps = video_fps(path)
    except LvcError:
        raise
    except Exception as e:  # noqa: BLE001 - see _segments
        raise InputError(f"cannot read video ({e.__class__.__name__}: {e})", str(path)) from None
    if not frames:
        raise InputError("no frames", str(path), "pass a video with at least one frame")
    times = np.asarray([t for _, t, _ in frames])
    index = np.asarray([i for i, _, _ in frames])
    out = []
    for mirror in (False, True) if flip else (False,):
        v, lu = describer.describe([np.ascontiguousarray(f[:, ::-1]) if mirror else f for _, _, f in frames])
        out.append(FrameDescriptors(times, v, lu, fps, index).segments()[0])
    return out


def search(root: PathLike, query: PathLike, k: int = 5, model: str | None = None, flip: bool = True) -> list[Match]:
    """Top-``k`` indexed videos for ``query`` with their matching time ranges, best first."""
    if k < 1:
        raise InputError(f"-k must be >= 1 (got {k})")
    state, describer = _open(root, model, create=False)
    return Searcher(state).search(query_variants(query, describer, flip), k)
