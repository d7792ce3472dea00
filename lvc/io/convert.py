"""Colour conversion through swscale (PyAV), the same path the y4m/mp4 writers use.

Planes are returned as separate arrays so odd frame sizes work (4:2:0 chroma is
``ceil(w/2) x ceil(h/2)``).
"""

from __future__ import annotations

import av
import numpy as np

Planes = tuple[np.ndarray, np.ndarray, np.ndarray]


def chroma_size(height: int, width: int) -> tuple[int, int]:
    """Chroma plane size of 4:2:0 (odd sizes round up)."""
    return (height + 1) // 2, (width + 1) // 2


def frame_planes(frame: av.VideoFrame) -> Planes:
    """Y, U, V planes (uint8) of a yuv420p frame, without line padding."""
    if frame.format.name != "yuv420p":
        frame = frame.reformat(format="yuv420p")
    w, h = frame.width, frame.height
    sizes = [(h, w)] + [chroma_size(h, w)] * 2
    out = []
    for plane, (ph, pw) in zip(frame.planes, sizes):
        buf = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)
        out.append(buf[:ph, :pw].copy())
    return out[0], out[1], out[2]


def rgb_to_planes(rgb: np.ndarray) -> Planes:
    return frame_planes(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24"))


def planes_to_frame(planes: Planes, height: int | None = None, width: int | None = None) -> av.VideoFrame:
    """A yuv420p frame of ``planes``, optionally enlarged to ``height`` x ``width`` with edge
    samples repeated (libx264 needs even sizes)."""
    y = planes[0]
    h, w = height or y.shape[0], width or y.shape[1]
    frame = av.VideoFrame(w, h, "yuv420p")
    for plane, data, (ph, pw) in zip(frame.planes, planes, [(h, w)] + [chroma_size(h, w)] * 2):
        buf = np.frombuffer(plane, dtype=np.uint8).reshape(-1, plane.line_size)
        view = np.zeros_like(buf)
        view[:ph, :pw] = np.pad(data, ((0, ph - data.shape[0]), (0, pw - data.shape[1])), mode="edge")
        plane.update(view.tobytes())
    return frame


def as_rgb(picture: np.ndarray | Planes) -> np.ndarray:
    """An RGB picture as it is, yuv420p planes (a colour format 1 picture) through swscale."""
    return planes_to_rgb(picture) if isinstance(picture, tuple) else picture


def planes_to_rgb(planes: Planes) -> np.ndarray:
    """RGB of yuv420p planes through swscale (BT.601), as every RGB view in lvc."""
    frame = planes_to_frame(planes)
    return frame.to_ndarray(format="rgb24") if frame.width % 2 == 0 and frame.height % 2 == 0 else \
        frame.reformat(format="rgb24").to_ndarray()
