"""What the encoding and decoding API share: paths, progress bars, the thread count, and
reading a source as RGB frames with (colour format 1) their yuv420p planes."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import numpy as np
import torch

from lvc.errors import InputError
from lvc.io.convert import Planes
from lvc.io.reader import VideoSource

PathLike = str | os.PathLike
COLOUR_CHOICES = ("auto", "yuv420", "rgb")  # lvc encode --colour


def progress_bar(total: int | None, desc: str, enabled: bool | None):
    """A tqdm bar, shown where both stdout and stderr are terminals unless ``enabled`` says."""
    from tqdm import tqdm

    if enabled is None:
        enabled = sys.stdout.isatty() and sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit="frame", disable=not enabled, leave=False, dynamic_ncols=True)


def set_threads(n: int | None) -> None:
    """torch's intra-op thread count (``--threads``), checked."""
    if n is not None:
        if n < 1:
            raise InputError(f"--threads must be >= 1 (got {n})")
        torch.set_num_threads(n)


def source_frames(src: VideoSource, planes: bool) -> Iterator[tuple[np.ndarray, Planes | None]]:
    """(RGB frame, its yuv420p planes or None) of an opened input."""
    return src.frames_with_planes() if planes else ((f, None) for f in src.frames())
