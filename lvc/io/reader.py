"""Streaming video input through PyAV.

Every source — container files, raw H.264/H.265 elementary streams, y4m, single images
and numbered PNG sequences — becomes a :class:`VideoSource`: exact size, rational frame
rate and an iterator of RGB frames. Frames are decoded one at a time, so memory does not
grow with the length of the video.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, UnidentifiedImageError

from lvc.errors import InputError
from lvc.io.convert import Planes, frame_planes, rgb_to_planes

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
MIN_SIDE = 16
MAX_SIDE = 16384
MAX_PIXELS = 1 << 26  # what the .lvc header accepts (8192 x 8192)
DEFAULT_SEQUENCE_FPS = Fraction(25)


@dataclass(frozen=True)
class VideoInfo:
    """What the codec needs to know about a source before the first frame."""

    width: int
    height: int
    fps: Fraction
    frame_count: int | None  # None when the container does not say; counted while streaming
    kind: str  # "video", "image" or "sequence"


def _natural_key(p: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def _sequence_files(path: Path) -> list[Path]:
    files = sorted((p for p in path.iterdir() if p.suffix.lower() == ".png"), key=_natural_key)
    if not files:
        raise InputError("folder holds no PNG frames", str(path),
                         "pass a video file, an image or a folder of numbered PNGs")
    return files


def _load_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise InputError(f"cannot read image ({e.__class__.__name__})", str(path),
                         "check that it is a valid PNG/JPEG") from None


def _check_size(w: int, h: int, where: str) -> None:
    if w < MIN_SIDE or h < MIN_SIDE:
        raise InputError(f"frame size {w}x{h} is below the minimum {MIN_SIDE}x{MIN_SIDE}", where,
                         "upscale or pad the input")
    if w > MAX_SIDE or h > MAX_SIDE or w * h > MAX_PIXELS:
        raise InputError(f"frame size {w}x{h} is above the maximum ({MAX_SIDE} per side, {MAX_PIXELS} pixels)",
                         where, "downscale or tile the input")


class VideoSource:
    """An opened input. Use as a context manager; iterate ``frames()`` once."""

    def __init__(self, path: str | os.PathLike, fps: Fraction | None = None) -> None:
        self.path = Path(path)
        where = str(self.path)
        if not self.path.exists():
            raise InputError("no such file or folder", where, "check the path")
        self._container = None
        if self.path.is_dir():
            self._files = _sequence_files(self.path)
            first = _load_image(self._files[0])
            h, w = first.shape[:2]
            self.info = VideoInfo(w, h, fps or DEFAULT_SEQUENCE_FPS, len(self._files), "sequence")
        elif self.path.suffix.lower() in IMAGE_SUFFIXES:
            self._files = [self.path]
            h, w = _load_image(self.path).shape[:2]
            self.info = VideoInfo(w, h, fps or Fraction(1), 1, "image")
        else:
            self._files = []
            self.info = self._open_container(where, fps)
        try:
            _check_size(self.info.width, self.info.height, where)
        except InputError:
            self.close()
            raise

    def _open_container(self, where: str, fps: Fraction | None) -> VideoInfo:
        try:
            self._container = av.open(str(self.path))
        except (av.FFmpegError, UnicodeDecodeError, ValueError) as e:
            raise InputError(f"not a readable video ({e.__class__.__name__})", where,
                             "pass a video, image or PNG folder") from None
        if not self._container.streams.video:
            self._container.close()
            raise InputError("file has no video stream", where, "pass a file with video")
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = fps or stream.average_rate or stream.guessed_rate or DEFAULT_SEQUENCE_FPS
        count = stream.frames or None
        cc = stream.codec_context
        if not cc.width or not cc.height:
            self._container.close()
            raise InputError("video stream has no frame size", where, "the file may be damaged")
        return VideoInfo(cc.width, cc.height, Fraction(rate), count, "video")

    def frames(self) -> Iterator[np.ndarray]:
        """RGB frames (H, W, 3) uint8, in display order, decoded lazily."""
        for _, frame in self.timed_frames():
            yield frame

    def frames_with_planes(self) -> Iterator[tuple[np.ndarray, Planes]]:
        """(RGB frame, its yuv420p planes): a video's own planes (converted by swscale from
        other pixel formats), an image's through swscale."""
        for _, frame in self.timed_frames(planes=True):
            yield frame

    def timed_frames(self, planes: bool = False) -> Iterator[tuple[float, np.ndarray | tuple[np.ndarray, Planes]]]:
        """(presentation time in seconds, RGB frame): container timestamps where the stream has
        them (variable-rate files: an AVI may code 68 frames over 29.6 s), else index / fps.
        With ``planes``, the frame is (RGB, yuv420p planes)."""
        step = 1.0 / float(self.info.fps)
        if self._container is None:
            for i, f in enumerate(self._files):
                img = _load_image(f)
                if img.shape[:2] != (self.info.height, self.info.width):
                    raise InputError(f"frame size {img.shape[1]}x{img.shape[0]} differs from the first frame",
                                     str(f), "all frames of a sequence must have one size")
                yield i * step, ((img, rgb_to_planes(img)) if planes else img)
            return
        n = 0
        first: float | None = None
        try:
            for frame in self._container.decode(video=0):
                if (frame.width, frame.height) != (self.info.width, self.info.height):
                    raise InputError(f"frame {n} changes size to {frame.width}x{frame.height}", str(self.path),
                                     "resize the video to one size first")
                t = frame.time
                if t is not None and first is None:
                    first = t
                rgb = frame.to_ndarray(format="rgb24")
                yield (t - first if t is not None else n * step), ((rgb, frame_planes(frame)) if planes else rgb)
                n += 1
        except av.FFmpegError as e:
            raise InputError(f"decoding failed at frame {n} ({e.__class__.__name__})", str(self.path),
                             "the file may be truncated or damaged") from None
        if n == 0:
            raise InputError("video has zero frames", str(self.path), "pass a video with at least one frame")

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_video(path: str | os.PathLike, fps: Fraction | None = None) -> VideoSource:
    return VideoSource(path, fps)
