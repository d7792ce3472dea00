"""Grey frames come back grey, bit for bit as the encoder showed them; colour streams are unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import motion_only_version, write_y4m

from lvc.bitstream.container import MOTION_ONLY_SINCE, LvcReader
from lvc.codec import api
from lvc.codec.grey import is_grey, show_grey


def _mixed_clip(path, clip) -> list[np.ndarray]:
    """Frames 0-3 of the test clip made grey, 4-5 left in colour (a fade from black and white)."""
    from lvc.io.reader import open_video

    with open_video(clip) as v:
        frames = [f.copy() for f in v.frames()]
    for f in frames[:4]:
        f[...] = show_grey(f)
    write_y4m(path, frames)
    with open_video(path) as v:  # as the encoder reads them back (4:2:0)
        return list(v.frames())


@pytest.mark.parametrize("model", ["tiny", None])  # None: the shipped default (conditional P-frames)
def test_grey_frames_decode_grey_and_equal_the_encoders_pictures(tmp_path, tiny_model, clip, model):
    model = tiny_model if model == "tiny" else None
    frames = _mixed_clip(tmp_path / "mixed.y4m", clip)
    assert [is_grey(f) for f in frames] == [True] * 4 + [False] * 2
    out = tmp_path / "a.lvc"
    res = api.encode(tmp_path / "mixed.y4m", out, quality=0.5, model=model, progress=False, ms_ssim=False,
                     colour="rgb")  # (grey in colour format 1: tests/test_golden.py's yuv fixture)
    from lvc.codec.sequence import SequenceEncoder
    from lvc.models.registry import load_model

    enc = SequenceEncoder(load_model(model), round(0.5 * 65535), 32)
    coded = [enc.encode(f) for f in frames]
    expected = [c.recon for c in coded]
    raw = [c.pending._pending.result() for c in coded[:4]]  # the decoded pictures before the grey display
    enc.close()
    decoded = list(api.iter_decode(out, model=model))
    for d, e in zip(decoded, expected, strict=True):
        assert np.array_equal(d, e)
    assert all(is_grey(d) for d in decoded[:4]) and not any(is_grey(d) for d in decoded[4:])
    with LvcReader(out) as r:
        units = list(r.units())
        # grey frames need 1.1; conditional frames below a raised I-frame (quality offsets) 1.2;
        # residual layers 1.3; motion-only frames (frames of copies under the layer) 1.5, 1.6
        # where they quarter blocks
        mixed = len({u.quality for u in units}) > 1
        layers = any(u.residual is not None for u in units)
        copies = any(u.frame_type in MOTION_ONLY_SINCE for u in units)
        older = (1, 5) if copies else (1, 3) if layers else (1, 2) if mixed else (1, 1)
        assert r.header.version == motion_only_version(out, older)
        assert [u.grey for u in units] == [True] * 4 + [False] * 2
    for f, shown, r in zip(frames, expected, raw):  # the channels' mean is nearer a grey source than each one
        assert np.mean((shown - f.astype(float)) ** 2) <= np.mean((r - f.astype(float)) ** 2) + 0.1
    assert res.frames == 6


def test_colour_streams_stay_version_1_0(tmp_path, tiny_model, clip):
    out = tmp_path / "a.lvc"
    api.encode(clip, out, quality=0.5, model=tiny_model, progress=False, metrics=False, residual=0, colour="rgb")
    assert api.info(out)["version"] == "1.0" and not any(u["grey"] for u in api.info(out)["frames"])


def test_grey_picture_is_the_rounded_channel_mean():
    rgb = np.array([[[0, 0, 1], [255, 255, 254], [10, 20, 31]]], dtype=np.uint8)
    assert show_grey(rgb)[..., 0].tolist() == [[0, 255, 20]] and is_grey(show_grey(rgb))
