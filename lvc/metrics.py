"""Quality metrics: PSNR (RGB, Y, YUV 6:1:1) and MS-SSIM of 8-bit RGB frames, or of yuv420p
planes (colour format 1 pictures and video references: PSNR-Y/U/V/YUV on the planes, SSIM
and MS-SSIM on Y, PSNR-RGB on the RGB view; RGB frames take SSIM and MS-SSIM on RGB).

Sequence figures are averages of per-frame values, as in codec test conditions.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np
import torch

# BT.601 limited range, the matrix lvc uses for its YUV views.
RGB2YUV = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]]) / 255.0
_YUV_OFF = np.array([16.0, 128.0, 128.0])


def psnr(mse: float, peak: float = 255.0) -> float:
    return 100.0 if mse <= 1e-10 else 10.0 * math.log10(peak * peak / mse)


def rgb_to_yuv420(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float Y (full size), U, V (2x2 averaged, odd edges kept) in BT.601 limited range."""
    yuv = rgb.astype(np.float64) @ RGB2YUV.T + _YUV_OFF
    h, w = rgb.shape[:2]
    ph, pw = h % 2, w % 2
    c = np.pad(yuv[..., 1:], ((0, ph), (0, pw), (0, 0)), mode="edge")
    c = c.reshape((h + ph) // 2, 2, (w + pw) // 2, 2, 2).mean(axis=(1, 3))
    return yuv[..., 0], c[..., 0], c[..., 1]


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Single-scale SSIM (Gaussian window 11, or smaller for tiny frames) of RGB or one plane."""
    from pytorch_msssim import ssim as _ss

    a, b = (x[..., None] if x.ndim == 2 else x for x in (a, b))
    ta = torch.from_numpy(np.array(a, dtype=np.float32)).permute(2, 0, 1)[None]
    tb = torch.from_numpy(np.array(b, dtype=np.float32)).permute(2, 0, 1)[None]
    side = min(a.shape[:2])
    win = 11 if side >= 11 else (7 if side >= 7 else 3)
    return float(_ss(ta, tb, data_range=255.0, win_size=win))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM of RGB (H, W, 3) or single planes (H, W) (pytorch-msssim); plain SSIM where the frame is
    too small for 5 scales."""
    from pytorch_msssim import ms_ssim as _ms
    from pytorch_msssim import ssim as _ss

    a, b = (x[..., None] if x.ndim == 2 else x for x in (a, b))
    ta = torch.from_numpy(np.array(a, dtype=np.float32)).permute(2, 0, 1)[None]
    tb = torch.from_numpy(np.array(b, dtype=np.float32)).permute(2, 0, 1)[None]
    if min(a.shape[:2]) > 160:
        return float(_ms(ta, tb, data_range=255.0))
    win = 7 if min(a.shape[:2]) >= 7 else 3
    return float(_ss(ta, tb, data_range=255.0, win_size=win))


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(np.mean(d * d))


def plane_metrics(ref: tuple, test: tuple, with_ms_ssim: bool = True) -> dict[str, float]:
    """Metrics on real yuv420p planes (video references): PSNR-Y/U/V, YUV (6:1:1), MS-SSIM on Y."""
    py, pu, pv = (psnr(_mse(a, b)) for a, b in zip(ref, test))
    out = {"psnr_y": py, "psnr_u": pu, "psnr_v": pv, "psnr_yuv": (6 * py + pu + pv) / 8}
    if with_ms_ssim:
        out["ssim"] = ssim(ref[0], test[0])
        out["ms_ssim"] = ms_ssim(ref[0], test[0])
    return out


def frame_metrics(ref: np.ndarray, test: np.ndarray, with_ms_ssim: bool = True) -> dict[str, float]:
    d = ref.astype(np.float64) - test.astype(np.float64)
    out = {"psnr_rgb": psnr(float(np.mean(d * d)))}
    ry, ru, rv = rgb_to_yuv420(ref)
    ty, tu, tv = rgb_to_yuv420(test)
    py, pu, pv = (psnr(float(np.mean((x - y) ** 2))) for x, y in ((ry, ty), (ru, tu), (rv, tv)))
    out.update(psnr_y=py, psnr_yuv=(6 * py + pu + pv) / 8)
    if with_ms_ssim:
        out["ssim"] = ssim(ref, test)
        out["ms_ssim"] = ms_ssim(ref, test)
    return out


@dataclass
class MetricAccumulator:
    """Per-frame metrics, averaged per sequence, and a digest of the pictures scored (a
    bit-exact check across runs: MS-SSIM's float32 convolutions may round differently with
    another thread count, the pixels may not)."""

    with_ms_ssim: bool = True
    frames: list[dict[str, float]] = field(default_factory=list)
    _digest: hashlib._Hash = field(default_factory=hashlib.sha256, repr=False)

    @property
    def digest(self) -> str:
        """SHA-256 of every test picture scored so far (RGB bytes, or Y, U, V planes)."""
        return self._digest.hexdigest()

    def add(self, ref: np.ndarray, test: np.ndarray | tuple, ref_planes: tuple | None = None) -> dict[str, float]:
        """Score ``test`` against RGB ``ref``: an RGB frame, or yuv420p planes (a colour
        format 1 picture), scored on the planes against ``ref_planes`` (the source's) with
        PSNR-RGB from their RGB view (lvc.io.convert)."""
        for part in test if isinstance(test, tuple) else (test,):
            self._digest.update(np.ascontiguousarray(part).tobytes())
        if isinstance(test, tuple):
            from lvc.io.convert import planes_to_rgb, rgb_to_planes

            m = plane_metrics(ref_planes if ref_planes is not None else rgb_to_planes(ref), test, self.with_ms_ssim)
            m["psnr_rgb"] = psnr(_mse(ref, planes_to_rgb(test)))
        else:
            m = frame_metrics(ref, test, self.with_ms_ssim)
        self.frames.append(m)
        return m

    def mean(self) -> dict[str, float]:
        if not self.frames:
            return {}
        return {k: float(np.mean([f[k] for f in self.frames])) for k in self.frames[0]}
