"""Shared fixtures: the committed tiny model and clip (see tests/make_golden.py)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def tiny_model() -> str:
    return str(DATA / "tiny.lvcm")


@pytest.fixture(scope="session")
def clip() -> Path:
    return DATA / "clip.y4m"


@pytest.fixture(scope="session")
def twelve() -> list[np.ndarray]:
    """Twelve 128x64 crops of the shipped sample clip: a short moving shot."""
    from lvc.codec.cli import sample_clip
    from lvc.io.reader import open_video

    with open_video(sample_clip()) as v:
        return [np.ascontiguousarray(f[100:164, 300:428]) for _, f in zip(range(12), v.frames())]


@pytest.fixture(scope="session")
def inter_model_file(tmp_path_factory):
    """A tiny intra model with a tiny (untrained, seeded) conditional P section. Its context
    update starts at zero, so PC frames show the motion-compensated previous frame and are
    cheap enough for the encoder to choose them on a steady shot."""
    import torch

    from lvc.models.conditional import ConditionalConfig, ConditionalP
    from lvc.models.frozen import freeze, save_frozen
    from lvc.models.latent import LatentModel, ModelConfig

    torch.manual_seed(0)
    intra = LatentModel(ModelConfig(N=8, M=16, Nh=8, levels=3))
    inter = ConditionalP(ConditionalConfig(M=8, C=8, N=8, Nh=8, intra_M=16, levels=3))
    path = tmp_path_factory.mktemp("inter") / "tiny-inter.lvcm"
    save_frozen(freeze(intra, "tiny-inter", inter=inter), path)
    return path


@pytest.fixture(scope="session")
def quarter_file(tmp_path_factory):
    """A tiny model with a quarter-pixel, pixel-referencing conditional section (seeded)."""
    import torch

    from lvc.models.conditional import ConditionalConfig, ConditionalP
    from lvc.models.frozen import freeze, save_frozen
    from lvc.models.latent import LatentModel, ModelConfig

    torch.manual_seed(4)
    config = ConditionalConfig(M=8, C=8, N=8, Nh=8, intra_M=16, levels=3, pixel_ref=True, subpel=4)
    intra, inter = LatentModel(ModelConfig(N=8, M=16, Nh=8, levels=3)), ConditionalP(config)
    with torch.no_grad():  # a weight and a correction that vary over the picture
        torch.nn.init.normal_(inter.g_d[-1].weight, std=0.05)
    path = tmp_path_factory.mktemp("subpel") / "tiny-quarter.lvcm"
    save_frozen(freeze(intra, "tiny-quarter", inter=inter), path)
    return path


@pytest.fixture(scope="session")
def inter_model(inter_model_file):
    from lvc.models.frozen import load_frozen

    return load_frozen(inter_model_file)


def frames_hash(frames) -> str:
    h = hashlib.sha256()
    for f in frames:
        for part in f if isinstance(f, tuple) else (f,):  # RGB, or colour format 1's planes
            h.update(np.ascontiguousarray(part).tobytes())
    return h.hexdigest()


def same_picture(a, b) -> bool:
    """Bit-exact equality of two shown pictures: RGB arrays, or (Y, U, V) planes."""
    if isinstance(a, tuple) or isinstance(b, tuple):
        return isinstance(a, tuple) and isinstance(b, tuple) and all(
            np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    return np.array_equal(a, b)


def assert_decodes_to_encoder(model_file, frames, tmp_path, quality: float = 0.5) -> list[str]:
    """Encode ``frames`` with ``model_file`` (encoder on one thread), decode the file (two
    threads), assert every picture is the encoder's bit for bit; returns the frame types."""
    import torch

    from lvc.codec import api
    from lvc.models.frozen import load_frozen

    src, out = tmp_path / "frames.y4m", tmp_path / "frames.lvc"
    write_y4m(src, frames)
    api.encode(src, out, quality=quality, model=str(model_file), progress=False)
    torch.set_num_threads(1)
    try:
        expected = encoder_recons(load_frozen(model_file), src, quality)
    finally:
        torch.set_num_threads(2)
    decoded = list(api.iter_decode(out, model=str(model_file), planes=None))  # as shown
    assert len(decoded) == len(frames)
    assert all(same_picture(a, b) for a, b in zip(decoded, expected, strict=True))
    return [f["type"] for f in api.info(out)["frames"]]


def motion_only_version(path, otherwise: tuple[int, int]) -> tuple[int, int]:
    """The format a stream's frames of copies and residual layers need: 1.9 where an I-frame
    is the layer alone (IL), 1.8 where a layer has 4x4 transforms, 1.7 where one has intra
    macroblocks, 1.6 where a block is quartered (PQ), else ``otherwise``."""
    from lvc.bitstream.container import FRAME_IL, FRAME_PQ, LvcReader

    with LvcReader(path) as r:
        units = list(r.units())
    if any(u.frame_type == FRAME_IL for u in units):
        return (1, 9)
    if any(u.small for u in units):
        return (1, 8)
    if any(u.intra for u in units):
        return (1, 7)
    return (1, 6) if any(u.frame_type == FRAME_PQ for u in units) else otherwise


def write_y4m(path, frames, fps: int = 25) -> None:
    """A test clip from RGB frames (4:2:0 y4m, as the encoder will read it back)."""
    from fractions import Fraction

    from lvc.io.writer import FrameWriter

    w = FrameWriter(path, frames[0].shape[1], frames[0].shape[0], Fraction(fps))
    for f in frames:
        w.write(np.ascontiguousarray(f))
    w.commit()


def claiming_minor(src, dst, minor: int):
    """``src``'s frame units rewritten to ``dst`` under a header claiming format 1.``minor``
    (what a writer unaware of later additions would have written); ``dst``."""
    from lvc.bitstream.container import LvcReader, LvcWriter

    with LvcReader(src) as rd:
        header, units = rd.header, list(rd.units())
    with LvcWriter(dst, header) as w:
        for u in units:
            w.write_frame(u.frame_type, u.quality, u.payload, u.grey, u.residual, u.intra, u.small)
        w.minor = minor
        w.commit()
    return dst


def refused_under_minor(stream, tmp_path, minor: int) -> tuple[bytes, object]:
    """Check that ``stream``'s frames under a header claiming format 1.``minor`` are refused
    as not valid there; its header bytes and the rewritten file (for more hand-made units)."""
    import pytest

    from lvc.bitstream.container import LvcReader
    from lvc.errors import BitstreamError

    bad = claiming_minor(stream, tmp_path / "old.lvc", minor)
    with LvcReader(bad) as rd, pytest.raises(BitstreamError, match=f"not valid in a format 1.{minor} stream"):
        list(rd.units())
    with LvcReader(stream) as rd:
        return stream.read_bytes()[:rd.header_size], bad


def run_lvc(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh process, as a user would."""
    return subprocess.run([sys.executable, "-m", "lvc.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def encoder_recons(model, src, quality: float, intra_period: int = 32,
                   intra_offset: float | None = None, residual: float | None = None,
                   layer_intra: bool = True) -> list[np.ndarray]:
    """The encoder's own reconstructions of ``src`` (frames as read back from the file, as
    ``api.encode`` sees them): what a decoder must reproduce bit for bit. Video is coded
    in colour format 1, as ``api.encode`` does by default: its pictures are planes."""
    from lvc.bitstream.syntax import COLOUR_RGB, COLOUR_YUV420
    from lvc.codec.residual_rdo import RESIDUAL_WEIGHT
    from lvc.codec.sequence import PRESETS, SequenceEncoder
    from lvc.io.reader import open_video

    with open_video(src) as v:
        frames = list(v.frames_with_planes())
    yuv = len(frames) > 1
    still = PRESETS["medium"].still_steps(frames[0][0].shape[0] * frames[0][0].shape[1]) if len(frames) == 1 else None
    offset = 0 if len(frames) == 1 else None if intra_offset is None else round(intra_offset * 65535)
    enc = SequenceEncoder(model, round(quality * 65535), intra_period, still, intra_offset=offset,
                          residual=0.0 if len(frames) == 1 else RESIDUAL_WEIGHT if residual is None else residual,
                          colour_format=COLOUR_YUV420 if yuv else COLOUR_RGB, layer_intra=layer_intra)
    try:
        return [enc.encode(f, planes=p if yuv else None).recon for f, p in frames]
    finally:
        enc.close()
