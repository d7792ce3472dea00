"""Query an index: candidate videos from FAISS, then time alignment of the whole query.

Every query segment retrieves its nearest indexed segments; the videos they belong to are
candidates. Each candidate is scored by sliding the query's segment sequence along the
video's and taking the best mean similarity: a match must hold in order and in time, not
just segment by segment, and the best offset gives the matching time range. The query is
also tried mirrored (a horizontal flip changes which oriented filters respond), keeping
the better of the two per video.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lvc.search.index import IndexState, faiss_index

CANDIDATES_PER_SEGMENT = 32
ALIGN_AT_LEAST = 10  # videos aligned per query variant (at least 2k)


@dataclass(frozen=True)
class Match:
    path: str
    start: float
    end: float
    score: float
    flipped: bool

    def to_dict(self) -> dict:
        return {"path": self.path, "start": round(self.start, 3), "end": round(self.end, 3),
                "score": round(self.score, 5), "flipped": self.flipped}


class Searcher:
    """Holds the FAISS index of one :class:`IndexState` for repeated queries."""

    def __init__(self, state: IndexState) -> None:
        self.state = state
        self.index = faiss_index(state)
        self.row = state.vector_of()
        self.video_of = {i: v for v, e in enumerate(state.videos) for i in e.ids}
        vectors = state.centered(state.vectors) if state.vectors is not None else None
        # per video: (views, segments, D), the rows gathered once
        self.per_video = [vectors[[self.row[i] for i in e.ids]].reshape(-1, len(e.spans), state.dim)
                          for e in state.videos] if vectors is not None else []

    def search(self, variants: list[np.ndarray], k: int = 5) -> list[Match]:
        """Top-``k`` videos for query segment sequences (original, and optionally mirrored)."""
        if self.index.ntotal == 0:
            return []
        best: dict[int, Match] = {}
        for flipped, q in enumerate(variants):
            if not len(q):
                continue
            q = self.state.centered(q)
            sims, ids = self.index.search(q, min(CANDIDATES_PER_SEGMENT, self.index.ntotal))
            # pre-score: per video, the mean over query segments of its best retrieved similarity;
            # only the most promising videos get the (exact, slower) sequence alignment
            pre: dict[int, np.ndarray] = {}
            for j in range(len(q)):
                for sim, i in zip(sims[j], ids[j]):
                    if i >= 0:
                        v = self.video_of[int(i)]
                        row = pre.setdefault(v, np.zeros(len(q), np.float32))
                        row[j] = max(row[j], sim)
            shortlist = sorted(pre, key=lambda v: -pre[v].mean())[:max(2 * k, ALIGN_AT_LEAST)]
            for v in shortlist:
                m = self._align(v, q, bool(flipped))
                if v not in best or m.score > best[v].score:
                    best[v] = m
        return sorted(best.values(), key=lambda m: -m.score)[:k]

    def _align(self, v: int, q: np.ndarray, flipped: bool) -> Match:
        entry = self.state.videos[v]
        sim = np.max(q @ self.per_video[v].transpose(0, 2, 1), axis=0)  # (nq, nv): the best view
        nq, nv = sim.shape
        if nq <= nv:  # every offset keeps the whole query inside the video: vectorised diagonals
            acc = np.zeros(nv - nq + 1)
            for j in range(nq):
                acc += sim[j, j:j + nv - nq + 1]
            best_off = int(np.argmax(acc))
            best_score = float(acc[best_off] / nq)
        else:  # a query longer than the video: the video slides inside the query
            acc = np.array([sim[np.arange(nv) - off, np.arange(nv)].mean() for off in range(-(nq - nv), 1)])
            i = int(np.argmax(acc))
            best_off, best_score = i - (nq - nv), float(acc[i]) * nv / nq
        first = max(0, best_off)
        last = min(nv, best_off + nq) - 1
        return Match(entry.path, entry.spans[first][0], entry.spans[last][1], best_score, flipped)
