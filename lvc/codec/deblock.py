"""In-loop deblocking of the residual layer's pictures (colour format 1, format 1.5).

A picture of copied 16x16 blocks plus an 8x8 DCT residual shows steps at block edges: the
copies move apart, and coarse steps quantise neighbouring blocks' means differently. The
next frames copy those steps, and the residual spends bits on them again. As in H.264,
the decoder smooths them in the loop: the shown picture, and the one later frames predict
from, is the filtered one.

Where: the edges of the 8x8 grid of each plane (luma's 8-pixel grid, the chroma planes'
8-sample grid, which holds the 16x16 motion blocks' edges too) where either neighbouring
block is coded in the layer, and (since 1.8) the inner edges, 4 samples in, of luma blocks
coded as four 4x4 transforms; vertical edges first (the grid's, then the inner ones), then
horizontal ones on the result. What
(H.264's normal filter): for samples ``p2 p1 p0 | q0 q1 q2`` across an edge, in quarter
levels (before the shown picture's rounding), if ``|p1 - p0| < beta`` and ``|q1 - q0| <
beta`` (no texture next to the edge): where ``|p2 - p0| < beta``, ``p1`` moves by
``clip((p2 + ((p0 + q0 + 1) >> 1) - 2 p1) >> 1, -tc, tc)``, likewise ``q1``; then ``d =
clip(((q0 - p0) * 4 + (p1 - q1) + 4) >> 3, -c, c)``, with ``c = tc`` plus 1 for each side
whose ``p1`` / ``q1`` moved (both from the unfiltered samples), moves ``p0`` by ``+d`` and
``q0`` by ``-d``. How much: a strength ``s`` per frame for luma and for chroma (the layer's
header), ``tc = (s * step + 64) >> 7`` quarter levels for the plane's step in 1/16 (``s / 32``
of the step) and ``beta = BETA_RATIO * tc``. The encoder chooses each strength by the frame's
own squared error (:func:`choose`). Integer arithmetic throughout: identical on every machine.
"""

from __future__ import annotations

import numpy as np

GRID = 8  # the residual layer's transform block (lvc.codec.transform.BLOCK; a test checks)
STRENGTH_MAX = 15  # 4 bits of the header field
BETA_RATIO = 6  # beta / tc (0.6 and 1.0 steps with 0.1 and 0.15: both about 6, docs/models.md)
# H.264's normal filter: p1 and q1 move too where the side is smooth (|p2 - p0| < beta), and
# each such side widens p0's and q0's clamp by 1: -0.6% on 8 training clips against p0 and q0
# alone (docs/models.md, "Session 40").
P1_FILTER = True
START = 4  # the encoder's first strength (1/8 of the step: about the best fixed one)


def thresholds(strength: int, step: int) -> tuple[int, int]:
    """(tc, beta) in quarter levels of ``strength`` for the plane's step (in 1/16)."""
    tc = (strength * step + 64) >> 7
    return tc, BETA_RATIO * tc


def _edges(x: np.ndarray, on: np.ndarray, tc: int, beta: int, axis: int, first: int = GRID) -> None:
    """Filter ``x`` (H, W) int32 in place at the edges ``first``, ``first + 8``, ... across
    ``axis`` (1: the vertical edges, 0: the horizontal ones) where ``on`` says, per edge and
    8-sample stretch along it ((hb, edges) or (edges, wb); module docstring). Strided views,
    not gathers: the encoder filters each plane at several strengths per frame."""
    n = len(range(first, x.shape[axis] - 2, GRID))  # edges
    if n == 0:
        return

    def at(i: int) -> tuple[slice, slice]:  # the samples i from each edge (0: q0, -1: p0)
        cut = slice(first + i, first + i + GRID * n, GRID)
        return (slice(None), cut) if axis == 1 else (cut, slice(None))

    if axis == 1:
        on = np.repeat(on[:, :n], GRID, axis=0)[:x.shape[0]]  # (H, edges)
    else:
        on = np.repeat(on[:n], GRID, axis=1)[:, :x.shape[1]]  # (edges, W)
    p2, p1, p0, q0, q1, q2 = (x[at(i)] for i in range(-3, 3))
    on = on & (np.abs(p1 - p0) < beta) & (np.abs(q1 - q0) < beta)
    if P1_FILTER:
        ap, aq = on & (np.abs(p2 - p0) < beta), on & (np.abs(q2 - q0) < beta)
        limit = tc + ap + aq.astype(np.int32)
        mean = (p0 + q0 + 1) >> 1
        new_p1 = p1 + np.clip((p2 + mean - 2 * p1) >> 1, -tc, tc) * ap
        new_q1 = q1 + np.clip((q2 + mean - 2 * q1) >> 1, -tc, tc) * aq
    else:
        limit = tc
    d = np.clip(((q0 - p0) * 4 + (p1 - q1) + 4) >> 3, -limit, limit) * on
    if P1_FILTER:
        x[at(-2)], x[at(1)] = new_p1, new_q1
    x[at(-1)], x[at(0)] = p0 + d, q0 - d


def _grid(coded: np.ndarray, axis: int) -> np.ndarray:
    """Which stretches of the 8x8 grid's edges across ``axis`` are filtered: where either
    neighbouring block is coded."""
    return coded[:, :-1] | coded[:, 1:] if axis == 1 else coded[:-1] | coded[1:]


def deblock(plane: np.ndarray, coded: np.ndarray, tc: int, beta: int, small: np.ndarray | None = None) -> np.ndarray:
    """``plane`` (H, W) in quarter levels filtered (a new int32 array; ``plane`` itself at
    ``tc`` 0 or where no block is coded). ``small`` (luma, since 1.8): the blocks coded as
    four 4x4 transforms, whose inner edges (4 samples in) are filtered after each direction's
    grid edges."""
    if tc <= 0 or not coded.any():
        return plane
    x = plane.astype(np.int32, copy=True)
    for axis in (1, 0):
        _edges(x, _grid(coded, axis), tc, beta, axis)
        if small is not None:
            _edges(x, small, tc, beta, axis, GRID // 2)
    return x


def apply(planes: list[np.ndarray], coded: tuple[np.ndarray, ...], step_sizes: tuple[int, int],
          strengths: tuple[int, int], small: np.ndarray | None = None) -> list[np.ndarray]:
    """Y, Cb, Cr quarter levels filtered with the layer's luma and chroma strengths at its
    luma and chroma steps (in 1/16); ``coded``: the layer's coded blocks, luma's and chroma's;
    ``small``: its luma blocks coded as 4x4 transforms."""
    out = []
    for i, p in enumerate(planes):
        c = min(i, 1)
        out.append(deblock(p, coded[c], *thresholds(strengths[c], step_sizes[c]), small if i == 0 else None))
    return out


def choose(planes: list[np.ndarray], target: tuple[np.ndarray, ...], coded: tuple[np.ndarray, ...],
           step_sizes: tuple[int, int], chroma: bool = True, small: np.ndarray | None = None) -> tuple[int, int]:
    """The luma and chroma strengths whose filtered ``planes`` (Y, Cb, Cr in quarter levels,
    unfiltered) come nearest the source ``target`` (uint8 planes) in squared error: the
    frame's own distortion, at no cost in bits. A climb from ``START`` one strength at a time
    while the error falls (it is about convex in the strength): 3-5 filterings instead of 16;
    0 unless the result beats no filtering.
    ``chroma=False``: no chroma filtering (a layer without chroma); ``small`` as :func:`apply`."""
    best = []
    for c, idx in ((0, (0,)), (1, (1, 2))):
        if c == 1 and not chroma or not coded[c].any():
            best.append(0)
            continue
        goal = [target[i].astype(np.int32) * 4 for i in idx]
        cache: dict[int, float] = {}

        def error(s: int, c: int = c, idx: tuple[int, ...] = idx, goal: list = goal, cache: dict = cache) -> float:
            if s not in cache:
                tc, beta = thresholds(s, step_sizes[c])
                inner = small if c == 0 else None
                cache[s] = sum(float(np.square(deblock(planes[i], coded[c], tc, beta, inner) - g, dtype=np.int64).sum())
                               for i, g in zip(idx, goal, strict=True))
            return cache[s]

        s = START
        step = 1 if error(START + 1) < error(START) else -1
        while 0 <= s + step <= STRENGTH_MAX and error(s + step) < error(s):
            s += step
        best.append(s if error(s) < error(0) else 0)  # never worse than none (nor equal: 0 keeps 1.4)
    return best[0], best[1]
