"""Video output: y4m (yuv420p, exact size), mp4 (H.264, for viewing) and PNG files/folders.

Writers stream frame by frame into a temporary path and rename it into place on
``commit``; an error or ``abort`` removes the partial output.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from lvc.errors import OutputError
from lvc.io.convert import Planes, planes_to_frame, planes_to_rgb

FORMATS = (".y4m", ".mp4", ".png")


def output_kind(path: str | os.PathLike) -> str:
    p = str(path)
    if p.endswith(("/", os.sep)) or Path(p).is_dir():
        return "dir"
    suffix = Path(p).suffix.lower()
    if suffix in FORMATS:
        return suffix[1:]
    raise OutputError(f"unknown output format {suffix or '(none)'!r}", p,
                      "use .y4m, .mp4, .png or a folder ending in /")


def default_mode(path: Path, base: int) -> None:
    """Give a temp file/folder the permissions a plain ``open`` would have (mkstemp uses 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, base & ~umask)


class FrameWriter:
    """Write RGB frames or yuv420p planes to ``path``; the format follows the suffix (see
    :func:`output_kind`). Planes go to y4m as they are; mp4 and PNG convert them."""

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: Fraction) -> None:
        self.kind = output_kind(path)
        self.path = Path(path)
        self.width, self.height, self.fps = width, height, fps
        self.count = 0
        parent = self.path.parent
        if not parent.is_dir():
            raise OutputError("output folder does not exist", str(parent), "create it first")
        try:
            if self.kind == "dir":
                if self.path.exists() and any(self.path.iterdir()):
                    raise OutputError("output folder is not empty", str(self.path), "choose a new or empty folder")
                self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=parent))
            else:
                fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=self.path.suffix, dir=parent)
                os.close(fd)
                self._tmp = Path(tmp)
        except OSError as e:
            raise OutputError(f"cannot write here ({e.strerror})", str(self.path),
                              "choose a writable location") from None
        self._container = None
        if self.kind in ("y4m", "mp4"):
            try:
                self._open_av()
            except (OSError, av.FFmpegError, ValueError) as e:
                self.abort()
                raise OutputError(f"cannot open the {self.kind} writer ({e})", str(self.path)) from None

    def _open_av(self) -> None:
        fmt = "yuv4mpegpipe" if self.kind == "y4m" else "mp4"
        self._container = av.open(str(self._tmp), "w", format=fmt)
        if self.kind == "y4m":
            s = self._container.add_stream("rawvideo", rate=self.fps)
        else:
            s = self._container.add_stream("libx264", rate=self.fps, options={"crf": "14", "preset": "fast"})
        # libx264 needs even sizes (mp4 is for viewing: pad one edge row/column); y4m keeps the exact size.
        pad = 0 if self.kind == "y4m" else 1
        s.width, s.height = self.width + pad * (self.width % 2), self.height + pad * (self.height % 2)
        s.pix_fmt = "yuv420p"
        self._stream = s

    def write(self, picture: np.ndarray | Planes) -> None:
        """Append an RGB frame (H, W, 3) or yuv420p planes (Y, U, V)."""
        planes = picture if isinstance(picture, tuple) else None
        rgb = planes_to_rgb(planes) if planes is not None and self.kind in ("dir", "png") else picture
        try:
            if self.kind == "dir":
                Image.fromarray(rgb).save(self._tmp / f"frame_{self.count:06d}.png")
            elif self.kind == "png":
                if self.count:
                    raise OutputError("a .png output holds one frame", str(self.path), "pass a folder (DIR/) instead")
                Image.fromarray(rgb).save(self._tmp, format="PNG")
            elif planes is not None:
                frame = planes_to_frame(planes, self._stream.height, self._stream.width)
                frame.pts = self.count
                for packet in self._stream.encode(frame):
                    self._container.mux(packet)
            else:
                if rgb.shape[:2] != (self._stream.height, self._stream.width):
                    rgb = np.pad(rgb, ((0, self._stream.height - rgb.shape[0]), (0, self._stream.width - rgb.shape[1]),
                                       (0, 0)), mode="edge")
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                frame = frame.reformat(format="yuv420p")
                frame.pts = self.count
                for packet in self._stream.encode(frame):
                    self._container.mux(packet)
        except OSError as e:
            self.abort()
            raise OutputError(f"write failed ({e.strerror})", str(self.path)) from None
        self.count += 1

    def commit(self) -> None:
        try:
            if self._container is not None:
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
                self._container.close()
                self._container = None
            if self.kind == "dir" and self.path.exists():
                self.path.rmdir()
            default_mode(self._tmp, 0o777 if self.kind == "dir" else 0o666)
            os.replace(self._tmp, self.path)
        except OSError as e:
            self.abort()
            raise OutputError(f"cannot finish the output ({e.strerror})", str(self.path)) from None

    def abort(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - best effort while cleaning up
                pass
            self._container = None
        if self._tmp.is_dir():
            shutil.rmtree(self._tmp, ignore_errors=True)
        else:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, exc_type, *rest) -> None:
        if exc_type is not None:
            self.abort()
