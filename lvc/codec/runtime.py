"""What the encoding and decoding API share: paths, progress bars, the thread count, how
freed memory is kept, and reading a source as RGB frames with (colour format 1) their
yuv420p planes."""

from __future__ import annotations

import ctypes
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
# glibc's malloc: blocks below this are taken from (and freed to) its heaps, not mapped
# anew each time, and a heap keeps up to TRIM_THRESHOLD bytes free at its top
MMAP_THRESHOLD = 64 << 20
TRIM_THRESHOLD = 256 << 20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)


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


def keep_freed_memory() -> None:
    """Let glibc keep freed blocks of up to ``MMAP_THRESHOLD`` bytes for reuse instead of
    handing them back to the system (the encoder's: the decoder faults little either way).
    An encoded frame's search and coding allocate and free arrays of a few MB hundreds of
    times; glibc's default (a threshold that adapts, with heaps trimmed at twice it)
    returned many of them, to fault them in again: about 250,000 page faults per 32 frames
    at 416x240, some 7-15% of the encoder's CPU time, against 3% more peak memory.
    Process-wide, as ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` would set it
    (left alone where either is set); nothing where the C library has no ``mallopt``."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # pragma: no cover - not glibc
        return
    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)


def source_frames(src: VideoSource, planes: bool) -> Iterator[tuple[np.ndarray, Planes | None]]:
    """(RGB frame, its yuv420p planes or None) of an opened input."""
    return src.frames_with_planes() if planes else ((f, None) for f in src.frames())
