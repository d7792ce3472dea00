"""A self-contained HTML report: RD plots, BD-rate and point tables, side-by-side crops.

Everything (plots, crops) is embedded as data URIs, so the file can be mailed or
archived alone. A small script sets the page title to ``rendered:N`` once all N images
have decoded, which the headless-browser test checks.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
from PIL import Image

from lvc.bench.bdrate import BOOTSTRAP_MIN_SEQUENCES, METRICS, average_curves

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.neg{color:#070}.pos{color:#a00}
figure{display:inline-block;margin:4px;text-align:center}figcaption{font-size:12px}img.plot{width:520px}
img.crop{image-rendering:pixelated;width:256px}code{font-size:12px}"""

_SCRIPT = """<script>
window.addEventListener('load',function(){var im=document.images,ok=0;
for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0)ok++;}
document.title=(ok===im.length?'rendered:':'broken:')+ok;});
</script>"""


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _array_uri(rgb: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return _png_uri(buf.getvalue())


def center_crop(rgb: np.ndarray, size: int = 128) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = min(size, h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return np.ascontiguousarray(rgb[y: y + s, x: x + s])


def render(out: Path, doc: dict, plots: list[Path], crops: list[tuple[str, np.ndarray]]) -> Path:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>lvc bench</title><style>{_STYLE}</style>"
             f"{_SCRIPT}</head><body><h1>lvc bench report</h1>"]
    cond = doc.get("conditions", {})
    parts.append(f"<p>{len(cond.get('inputs', []))} inputs, frames per video {cond.get('frames')}, intra period "
                 f"{cond.get('intra_period')}. Rates from real file sizes; anchors' streams without SEI/containers."
                 "</p><h2>Rate-distortion (dataset average)</h2>")
    for p in plots:
        parts.append(f"<img class='plot' alt='{html.escape(p.stem)}' src='{_png_uri(p.read_bytes())}'>")
    parts.append("<h2>BD-rate (negative: lvc needs fewer bits)</h2>" + _bd_table(doc["bd_rate"]))
    if crops:
        parts.append("<h2>Side by side (centre crop, first frame)</h2>")
        for caption, rgb in crops:
            parts.append(f"<figure><img class='crop' alt='{html.escape(caption)}' src='{_array_uri(rgb)}'>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("<h2>Average points</h2>" + _points_table(list(average_curves(_rows(doc)).values())))
    parts.append("<h2>Codecs and commands</h2><table><tr><th>codec</th><th>version</th><th>command</th></tr>")
    for c in doc["codecs"]:
        parts.append(f"<tr><td>{html.escape(c['name'])}</td><td>{html.escape(str(c['version']))}</td>"
                     f"<td><code>{html.escape(str(c['command']))}</code></td></tr>")
    parts.append("</table></body></html>")
    path = out / "report.html"
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(parts))
    tmp.replace(path)
    return path


def _rows(doc: dict) -> list[dict]:
    return [p for c in doc["codecs"] for p in c["points"]]


def _bd_table(bd: list[dict]) -> str:
    rows = [r for r in bd if r["sequence"] in ("AVERAGE", "MEAN")]
    if not rows:
        return "<p>No BD-rate: the curves do not overlap enough.</p>"
    keys = sorted({(r["test"], r["anchor"], r["sequence"]) for r in rows})
    out = [f"<p>AVERAGE: between the dataset-average curves (with {BOOTSTRAP_MIN_SEQUENCES} or more inputs, "
           "below it the 95% "
           "interval when the inputs are resampled); MEAN: the mean of the per-sequence "
           "BD-rates (only where every sequence has one).</p>",
           "<table><tr><th>test vs anchor</th><th></th>" + "".join(f"<th>{m}</th>" for m in METRICS) + "</tr>"]
    for t, a, seq in keys:
        cells = []
        for m in METRICS:
            r = next((r for r in rows if (r["test"], r["anchor"], r["sequence"], r["metric"]) == (t, a, seq, m)), None)
            if r is None:
                cells.append("<td>-</td>")
                continue
            v, ci = r["percent"], r.get("ci95")
            span = f"<br><small>{ci[0]:+.1f}..{ci[1]:+.1f}</small>" if ci else ""
            cells.append(f"<td class='{'neg' if v < 0 else 'pos'}'>{v:+.1f}%{span}</td>")
        out.append(f"<tr><td>{html.escape(t)} vs {html.escape(a)}</td><td>{html.escape(seq)}</td>{''.join(cells)}</tr>")
    return "".join(out) + "</table>"


def _points_table(points: list[dict]) -> str:
    cols = ["codec", "param", "bpp", *[m for m in METRICS if any(m in p for p in points)]]
    out = ["<table><tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>"]
    for p in sorted(points, key=lambda p: (p["codec"], p["bpp"])):
        out.append("<tr>" + "".join(f"<td>{_fmt(p.get(c))}</td>" for c in cols) + "</tr>")
    return "".join(out) + "</table>"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"
    return html.escape(str(v))
