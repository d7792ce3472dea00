"""An on-disk FAISS index of segment descriptors, with its metadata, updated atomically.

Layout: ``DIR/CURRENT`` names the live generation ``DIR/gen-NNNNNN/`` holding
``segments.faiss`` (inner product over L2-normalised descriptors, segment ids as FAISS ids),
``vectors.npy`` (the raw descriptors) and ``meta.json`` (format, model, descriptor version,
videos with their segments' ids and times, and the centre). Descriptors share a large
common component (cosine ~0.97 between unrelated clips), so search works on descriptors
minus the index's mean, re-normalised; the mean is recomputed with every generation. A change writes a complete new
generation and then replaces ``CURRENT`` with one rename, so an interrupted ``add`` leaves
the previous generation live and intact; older generations are removed afterwards.
Writers (add, remove, rebuild) hold an exclusive lock on ``DIR/.lock`` from reading the
live generation to switching ``CURRENT``, so two concurrent ``lvc index add`` both land
(without it, the later generation would silently drop the other's videos).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lvc.errors import InputError, OutputError

FORMAT = "lvc-index/1"
LOCK = ".lock"


@contextlib.contextmanager
def writer_lock(root: str | os.PathLike):
    """Exclusive writer lock of an index folder (created if missing); waits for another writer."""
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        fh = open(root / LOCK, "a+")
    except OSError as e:
        raise OutputError(f"cannot lock the index ({e.strerror})", str(root)) from None
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"{root}: waiting for another index writer to finish", file=sys.stderr)
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield
    finally:
        fh.close()  # releases the lock


@dataclass
class VideoEntry:
    path: str
    duration: float
    ids: list[int]  # vector ids: view-major, each view's segments in time order
    spans: list[list[float]]  # [start, end) seconds per segment


@dataclass
class IndexState:
    model: str  # model name@sha that made the descriptors
    descriptor: str
    dim: int
    videos: list[VideoEntry] = field(default_factory=list)
    vectors: np.ndarray | None = None  # (n, dim), row i has id ids_order[i]
    ids: np.ndarray | None = None
    next_id: int = 0
    faiss: object | None = None  # the generation's FAISS index as loaded (None: build from vectors)

    def vector_of(self) -> dict[int, int]:
        return {int(i): r for r, i in enumerate(self.ids if self.ids is not None else [])}

    @property
    def center(self) -> np.ndarray:
        """Mean of the indexed vectors (cached; adding or removing a video resets it)."""
        if getattr(self, "_center", None) is None:
            empty = self.vectors is None or not len(self.vectors)
            self._center = np.zeros(self.dim, np.float32) if empty else self.vectors.mean(0).astype(np.float32)
        return self._center

    def centered(self, x: np.ndarray) -> np.ndarray:
        """Descriptors as searched: minus the index mean, L2-normalised."""
        x = np.asarray(x, np.float32) - self.center
        return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def _faiss():
    import faiss

    return faiss


def exists(root: Path) -> bool:
    return (root / "CURRENT").is_file()


def load(root: str | os.PathLike) -> IndexState:
    root = Path(root)
    if not root.exists():
        raise InputError("no index here", str(root), "create one with `lvc index add PATH... --index DIR`")
    if not exists(root):
        raise InputError("not an lvc index (CURRENT missing)", str(root), "pass a folder made by `lvc index add`")
    gen = root / "CURRENT"
    try:
        gen = root / (root / "CURRENT").read_text().strip()
        meta = json.loads((gen / "meta.json").read_text())
        if meta.get("format") != FORMAT:
            raise ValueError("format")
        vectors = np.load(gen / "vectors.npy")
        ids = np.load(gen / "ids.npy")
        index = _faiss().read_index(str(gen / "segments.faiss"))
        videos = [VideoEntry(**v) for v in meta["videos"]]
        state = IndexState(meta["model"], meta["descriptor"], meta["dim"], videos, vectors, ids, meta["next_id"], index)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:  # FAISS raises RuntimeError
        raise InputError(f"damaged or foreign index ({e.__class__.__name__})", str(gen),
                         "rebuild it with `lvc index rebuild --index DIR`") from None
    if index.ntotal != len(ids) or vectors.shape != (len(ids), state.dim):
        raise InputError("index files disagree", str(gen), "rebuild it with `lvc index rebuild --index DIR`")
    return state


HNSW_FROM = 20_000  # vectors; below, exact search is as fast
HNSW_M, HNSW_EF_BUILD, HNSW_EF_SEARCH = 32, 80, 96


def faiss_index(state: IndexState):
    """Exact inner-product search for small indexes, an HNSW graph for large ones (query time
    stays in milliseconds at 100k segments; the graph is rebuilt with each generation)."""
    if state.faiss is not None:
        return state.faiss
    faiss = _faiss()
    n = 0 if state.vectors is None else len(state.vectors)
    if n >= HNSW_FROM:
        inner = faiss.IndexHNSWFlat(state.dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = HNSW_EF_BUILD
        inner.hnsw.efSearch = HNSW_EF_SEARCH
    else:
        inner = faiss.IndexFlatIP(state.dim)
    index = faiss.IndexIDMap2(inner)
    if n:
        index.add_with_ids(np.ascontiguousarray(state.centered(state.vectors)), state.ids.astype(np.int64))
    return index


def save(root: str | os.PathLike, state: IndexState) -> None:
    """Write ``state`` as a new generation and switch ``CURRENT`` to it atomically."""
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        old = (root / "CURRENT").read_text().strip() if exists(root) else None
        number = 1 + max([int(p.name[4:]) for p in root.glob("gen-*") if p.name[4:].isdigit()] or [0])
        gen = root / f"gen-{number:06d}"
        tmp = root / f".{gen.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        vectors = state.vectors if state.vectors is not None else np.zeros((0, state.dim), np.float32)
        ids = state.ids if state.ids is not None else np.zeros(0, np.int64)
        np.save(tmp / "vectors.npy", vectors.astype(np.float32))
        np.save(tmp / "ids.npy", ids.astype(np.int64))
        try:
            _faiss().write_index(faiss_index(IndexState(state.model, state.descriptor, state.dim, [], vectors, ids)),
                                 str(tmp / "segments.faiss"))
        except RuntimeError as e:  # FAISS's I/O errors
            raise OSError(str(e)) from None
        meta = {"format": FORMAT, "model": state.model, "descriptor": state.descriptor, "dim": state.dim,
                "next_id": state.next_id, "videos": [v.__dict__ for v in state.videos]}
        (tmp / "meta.json").write_text(json.dumps(meta))
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, gen)
        pointer = root / ".CURRENT.tmp"
        with open(pointer, "w") as fh:
            fh.write(gen.name + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(pointer, root / "CURRENT")
    except OSError as e:
        raise OutputError(f"cannot write the index ({e.strerror})", str(root)) from None
    for p in root.glob("gen-*"):
        if p.name not in (gen.name, old):  # keep the previous generation until the next change
            shutil.rmtree(p, ignore_errors=True)
    for p in root.glob(".gen-*.tmp"):
        shutil.rmtree(p, ignore_errors=True)


def add_video(state: IndexState, path: str, duration: float, vectors: np.ndarray, spans: np.ndarray) -> None:
    """Append (or replace) one video's segments in memory."""
    remove_video(state, path)
    state.faiss = state._center = None
    ids = np.arange(state.next_id, state.next_id + len(vectors), dtype=np.int64)
    state.next_id += len(vectors)
    state.videos.append(VideoEntry(path, float(duration), ids.tolist(), spans.tolist()))
    state.vectors = vectors if state.vectors is None or not len(state.vectors) else np.vstack([state.vectors, vectors])
    state.ids = ids if state.ids is None or not len(state.ids) else np.concatenate([state.ids, ids])


def remove_video(state: IndexState, path: str) -> bool:
    entry = next((v for v in state.videos if v.path == path), None)
    if entry is None:
        return False
    state.videos.remove(entry)
    state.faiss = state._center = None
    if state.ids is not None and len(entry.ids):
        keep = ~np.isin(state.ids, np.asarray(entry.ids))
        state.ids, state.vectors = state.ids[keep], state.vectors[keep]
    return True
