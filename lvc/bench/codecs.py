"""Codecs under test: lvc and the classical anchors, each with its exact, recorded command.

Every codec turns a reference (RGB frames in memory, plus the reference file) into a
real compressed file, and decodes it back; rates come from file sizes only.
Video anchors write elementary streams with SEI units stripped (``filter_units``), so no
container or encoder-banner bytes are counted.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

import lvc
from lvc.codec import api
from lvc.io.convert import planes_to_rgb

IMAGE_POINTS = {"jpeg": [10, 25, 40, 55, 70, 85, 95], "webp": [5, 20, 40, 60, 75, 90, 98],
                "avif": [10, 25, 40, 55, 70, 85, 95]}
LVC_POINTS = [0.0, 0.17, 0.33, 0.5, 0.67, 0.83, 1.0]
VIDEO_CRF = {"x264": [18, 23, 28, 33, 38], "x265": [20, 25, 30, 35, 40], "svtav1": [28, 36, 44, 52, 60],
             "aom": [28, 36, 44, 52, 60]}


@dataclass
class Coded:
    bytes: int
    rgb: list[np.ndarray]  # decoded frames as RGB
    encode_seconds: float
    decode_seconds: float
    command: str
    yuv: list | None = None  # decoded yuv420p planes, for codecs that output YUV natively
    peak_rss_mb: float | None = None  # the encoder process's peak resident memory


def _self_peak_rss_mb() -> float:
    """Peak RSS of this process so far (in-process codecs: an upper bound for the codec)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_measured(cmd: list[str]) -> float:
    """Run ``cmd``; return its own peak RSS in MB (os.wait4 gives per-child usage)."""
    import os

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {err.strip()[:300]}")
    return usage.ru_maxrss / 1024


@dataclass
class Codec:
    name: str
    kind: str  # "image" (one frame, RGB) or "video" (y4m reference)
    points: list
    version: str
    run: Callable[..., Coded] = field(repr=False)
    still_version: str | None = None  # for one-frame references, where still-image settings apply too


def _pillow_codec(fmt: str) -> Codec:
    import PIL

    def run(frames: list[np.ndarray], ref_path: Path, param: int, work: Path) -> Coded:
        buf = io.BytesIO()
        t0 = time.perf_counter()
        opts = {"quality": param}
        if fmt == "JPEG":
            opts.update(subsampling="4:2:0", optimize=True)
        if fmt == "WEBP":
            opts.update(method=6)
        Image.fromarray(frames[0]).save(buf, format=fmt, **opts)
        t1 = time.perf_counter()
        dec = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        t2 = time.perf_counter()
        return Coded(len(buf.getvalue()), [dec], t1 - t0, t2 - t1,
                     f"PIL.Image.save(format={fmt!r}, {', '.join(f'{k}={v!r}' for k, v in opts.items())})",
                     peak_rss_mb=_self_peak_rss_mb())

    return Codec(fmt.lower(), "image", IMAGE_POINTS[fmt.lower()], f"Pillow {PIL.__version__}", run)


def lvc_codec(model: str | None = None, intra_period: int = 32, refine: int | None = None,
              preset: str = "medium", name: str = "lvc", residual: float | None = None,
              colour: str = "auto") -> Codec:
    def run(frames: list[np.ndarray], ref_path: Path, param: float, work: Path) -> Coded:
        out = work / f"lvc_{param}.lvc"
        res = api.encode(ref_path, out, quality=param, model=model, intra_period=intra_period,
                         max_frames=len(frames), progress=False, metrics=False, refine=refine, preset=preset,
                         residual=residual, colour=colour)
        t0 = time.perf_counter()
        dec = list(api.iter_decode(out, model=model, planes=None))  # as shown: RGB or planes
        t1 = time.perf_counter()
        size = out.stat().st_size
        out.unlink()
        yuv = dec if dec and isinstance(dec[0], tuple) else None
        return Coded(size, [planes_to_rgb(p) for p in yuv] if yuv else dec, res.seconds, t1 - t0,
                     f"lvc encode REF -o OUT.lvc --quality {param} --intra-period {intra_period} --preset {preset}"
                     + (f" --model {model}" if model else "") + (f" --refine {refine}" if refine is not None else "")
                     + (f" --residual {residual:g}" if residual is not None else "")
                     + (f" --colour {colour}" if colour != "auto" else ""),
                     yuv, peak_rss_mb=_self_peak_rss_mb())

    from lvc.codec.refine import ALGORITHM as refine_algorithm
    from lvc.codec.residual_rdo import RESIDUAL_ENCODER, YUV_ENCODER
    from lvc.codec.sequence import INTER_ENCODER, INTRA_OFFSET, PRESETS
    from lvc.codec.synthesis import bf16_synthesis
    from lvc.models.registry import default_model, load_model

    # the weights' hashes are part of the version: cached points follow the model(s)
    fm = load_model(model or default_model())
    still = None if model else load_model(default_model(still=True))
    tag = f"preset={preset} intra_period={intra_period}" + (f" refine={refine}" if refine is not None else "")
    p = PRESETS[preset]
    refining = bool(refine or (refine is None and p.refine_steps))
    if refining:  # only refining points depend on the algorithm
        tag += f" refinement={refine_algorithm}"
    elif intra_period != 1 and p.p_deadzone:  # ... and only P-frames on the dead zone
        tag += f" p_deadzone={p.p_deadzone}"
    # a still image has its own refinement budget: only one-frame points key on it
    still_tag = (f" still-refine={p.still_policy} refinement={refine_algorithm}"
                 if refine is None and p.still_policy != str(p.refine_steps) else "")
    if fm.inter is not None and intra_period != 1:  # conditional P-frames: the encoder's choices
        tag += f" inter={INTER_ENCODER} i-offset={INTRA_OFFSET:g}" + (" pc-refined" if refining else "")
        tag += " display=bf16-last-f32" if bf16_synthesis() else ""  # pictures (and so choices) follow it
    from lvc.bitstream.syntax import VERSION_MAJOR, VERSION_MINOR

    # the format version too: 1.1's grey frames changed what grey input decodes to
    models = f"format={VERSION_MAJOR}.{VERSION_MINOR} model={fm.name}@{fm.sha256[:12]}"
    if still is not None and still.sha256 != fm.sha256:
        models += f" image-model={still.name}@{still.sha256[:12]}"
    # Video frames' residual layers (one-frame points have none). Their choices look at the
    # pictures, so I- and P-only streams now follow the synthesis arithmetic too.
    layers = " residual=off" if residual == 0 else f" residual={RESIDUAL_ENCODER}" + (
        f" weight={residual:g}" if residual is not None else "") + (
        " display=bf16-last-f32" if bf16_synthesis() and "display=" not in tag else "")
    layers += f" colour={colour}" + (f"/{YUV_ENCODER}" if colour != "rgb" else "")  # video: format 1 by default
    version = f"lvc {lvc.__version__} {models} {tag}"
    return Codec(name, "any", LVC_POINTS, version + layers, run, version + still_tag)


def _ffmpeg_version() -> str | None:
    exe = shutil.which("ffmpeg")
    if not exe:
        return None
    out = subprocess.run([exe, "-hide_banner", "-version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else None


_FFMPEG_ENC = {
    "x264": ("libx264", "h264", ["-preset", "medium", "-tune", "zerolatency", "-bf", "0", "-sc_threshold", "0"]),
    "x265": ("libx265", "hevc", ["-preset", "medium", "-tune", "zerolatency", "-x265-params",
                                 "bframes=0:scenecut=0:info=0:log-level=error"]),
    "svtav1": ("libsvtav1", "obu", ["-preset", "8", "-svtav1-params", "scd=0:pred-struct=1"]),
    "aom": ("libaom-av1", "obu", ["-cpu-used", "6", "-usage", "realtime", "-lag-in-frames", "0"]),
}
_SEI_FILTER = {"h264": "filter_units=remove_types=6", "hevc": "filter_units=remove_types=39|40"}



def ffmpeg_codec(name: str, intra_period: int, threads: int = 1) -> Codec | None:
    """A video anchor through the ffmpeg CLI, or None when ffmpeg or the encoder is missing."""
    version = _ffmpeg_version()
    lib, fmt, opts = _FFMPEG_ENC[name]
    if version is None:
        return None
    encoders = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    if f" {lib} " not in encoders:
        return None
    gop = ["-g", str(intra_period if intra_period > 0 else 100000)]

    def run(frames: list[np.ndarray], ref_path: Path, param: int, work: Path) -> Coded:
        out = work / f"{name}_{param}.{fmt}"
        cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(ref_path), "-frames:v",
               str(len(frames)), "-an", "-c:v", lib, *opts, *gop, "-crf", str(param), "-threads", str(threads),
               "-pix_fmt", "yuv420p"]
        if fmt in _SEI_FILTER:
            cmd += ["-bsf:v", _SEI_FILTER[fmt]]
        cmd += ["-f", fmt, str(out)]
        t0 = time.perf_counter()
        rss = _run_measured(cmd)
        t1 = time.perf_counter()
        yuv = _decode_planes(out, len(frames))
        t2 = time.perf_counter()
        size = out.stat().st_size
        out.unlink()
        rgb = [planes_to_rgb(p) for p in yuv]
        return Coded(size, rgb, t1 - t0, t2 - t1, " ".join(cmd).replace(str(ref_path), "REF").replace(str(out), "OUT"),
                     yuv, rss)

    return Codec(name, "video", VIDEO_CRF[name], version, run)


def _decode_planes(path: Path, n: int) -> list:
    import av

    from lvc.io.convert import frame_planes

    with av.open(str(path)) as c:
        return [frame_planes(f) for _, f in zip(range(n), c.decode(video=0))]


def image_codecs() -> list[Codec]:
    return [_pillow_codec(f) for f in ("JPEG", "WEBP", "AVIF")]
