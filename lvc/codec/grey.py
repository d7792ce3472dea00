"""Grey frames: shown with R = G = B (colour format 1: Cb = Cr = 128, lvc.codec.colour), so
grey input comes back grey.

The learned transforms code RGB and leave a little colour in a grey picture's
reconstruction: about one level of chroma, which is most of a grey clip's PSNR-YUV loss
and costs nothing to remove. The encoder flags every frame whose three
channels are equal (``syntax.GREY_FLAG``); the decoder shows it with each pixel set to the
rounded mean of the decoded channels, in integers, so both sides agree bit for bit. Only
the picture shown changes: later frames predict from the decoded picture as before.
"""

from __future__ import annotations

import numpy as np


def is_grey(frame: np.ndarray) -> bool:
    """Whether an (H, W, 3) RGB frame has R = G = B everywhere."""
    return bool(np.array_equal(frame[..., 0], frame[..., 1]) and np.array_equal(frame[..., 0], frame[..., 2]))


def show_grey(picture: np.ndarray) -> np.ndarray:
    """(R + G + B + 1) // 3 in every channel of a uint8 RGB picture."""
    mean = (picture.astype(np.uint16).sum(axis=-1) + 1) // 3
    return np.repeat(mean.astype(np.uint8)[..., None], 3, axis=-1)


class GreyPicture:
    """Future-like: the grey picture of a pending decoded one (``result()``)."""

    def __init__(self, pending) -> None:
        self._pending = pending
        self._picture: np.ndarray | None = None

    def result(self) -> np.ndarray:
        if self._picture is None:
            self._picture = show_grey(self._pending.result())
        return self._picture
