"""What ``lvc scenes`` writes: key frames, a contact sheet, the activity curve (CSV + PNG).

Every file is written to a temporary name and renamed, so an interrupted run leaves no
half-written output.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lvc.errors import OutputError

THUMB_W = 240
COLUMNS = 4


def frames_at(path: str | os.PathLike, wanted: list[int]) -> dict[int, np.ndarray]:
    """The frames with these indices (for ``.lvc``: only they are synthesised)."""
    path, want = Path(path), set(wanted)
    out: dict[int, np.ndarray] = {}
    if path.suffix.lower() == ".lvc":
        from lvc.bitstream.container import LvcReader
        from lvc.codec.decoder import SequenceDecoder
        from lvc.io.convert import as_rgb
        from lvc.models.registry import model_for_stream

        with LvcReader(path) as r:
            h = r.header
            dec = SequenceDecoder(model_for_stream(h.model_name, h.weights_hash, None, str(path)), h.width, h.height,
                                  str(path), colour_format=h.colour_format)
            try:
                for unit in r.units():
                    if unit.index in want:
                        out[unit.index] = as_rgb(dec.decode(unit))  # (colour format 1: planes)
                    else:
                        dec.advance(unit)
                    if len(out) == len(want):
                        break
            finally:
                dec.close()
        return out
    from lvc.io.reader import open_video

    with open_video(path) as v:
        for i, frame in enumerate(v.frames()):
            if i in want:
                out[i] = frame
                if len(out) == len(want):
                    break
    return out


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write ({e.strerror})", str(path)) from None


def _timecode(seconds: float) -> str:
    m, s = divmod(seconds, 60)
    return f"{int(m):02d}:{s:05.2f}"


def write_keyframes(folder: str | os.PathLike, frames: dict[int, np.ndarray], fps: float) -> list[str]:
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError("--keyframes is a file, not a folder", str(folder))
    for old in folder.glob("scene*_frame*.png") if folder.is_dir() else []:  # a previous run's key frames
        old.unlink()
    names = []
    for n, (i, f) in enumerate(sorted(frames.items()), 1):
        p = folder / f"scene{n:03d}_frame{i:06d}.png"
        _atomic(p, lambda t, f=f: Image.fromarray(f).save(t, format="PNG"))
        names.append(str(p))
    return names


def write_contact_sheet(path: str | os.PathLike, frames: dict[int, np.ndarray], scenes: list[dict],
                        keys: list[int], fps: float) -> None:
    thumbs = []
    for n, (sc, k) in enumerate(zip(scenes, keys), 1):
        im = Image.fromarray(frames[k])
        th = im.resize((THUMB_W, max(1, round(im.height * THUMB_W / im.width))), Image.Resampling.LANCZOS)
        thumbs.append((th, f"#{n}  {_timecode(sc['start_time'])}-{_timecode(sc['end_time'])}"))
    th_h = max(t.height for t, _ in thumbs)
    cols = min(COLUMNS, len(thumbs))
    rows = -(-len(thumbs) // cols)
    pad, text_h = 8, 16
    sheet = Image.new("RGB", (cols * (THUMB_W + pad) + pad, rows * (th_h + text_h + pad) + pad), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for i, (t, label) in enumerate(thumbs):
        x, y = pad + (i % cols) * (THUMB_W + pad), pad + (i // cols) * (th_h + text_h + pad)
        sheet.paste(t, (x, y))
        draw.text((x, y + th_h + 2), label, fill=(235, 235, 235))
    _atomic(Path(path), lambda t: sheet.save(t, format="PNG"))


def write_activity(csv_path: str | os.PathLike, seconds: np.ndarray, values: np.ndarray,
                   boundaries_s: list[float]) -> Path:
    """``csv_path`` and a PNG plot beside it (same name, .png); returns the PNG's path."""
    csv_path = Path(csv_path)

    def write_csv(t: Path) -> None:
        with open(t, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["second", "latent_change"])
            w.writerows([[int(s), f"{v:.6f}"] for s, v in zip(seconds, values)])

    _atomic(csv_path, write_csv)
    png = csv_path.with_suffix(".png")

    def write_png(t: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        fig, ax = plt.subplots(figsize=(9, 3))
        ax.plot(seconds + 0.5, values, lw=1.5, label="latent change")
        for b in boundaries_s:
            ax.axvline(b, color="tab:red", lw=0.8, alpha=0.6)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("mean change per frame")
        ax.set_title("activity (red: scene boundaries)")
        fig.tight_layout()
        fig.savefig(t, format="png", dpi=110)
        plt.close(fig)

    _atomic(png, write_png)
    return png
