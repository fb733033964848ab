"""The evaluation's outputs: ``metrics.json`` (the contract scripts read), ``index.html`` (a page with no server
and no external asset) and the summary lines printed on the terminal."""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from urllib.parse import quote

from PIL import Image

from ..domains import DIRECTIONS
from ..fileio import write_text
from ..outputs.grids import save_image_atomic
from ..outputs.html import GENERATOR_MARK

FORMAT = 1  # metrics.json format version; bump on an incompatible change of the contract

_CSS = """body{font-family:sans-serif;margin:1.5em;background:#fafafa;color:#222}
table{border-collapse:collapse;margin-bottom:1.5em}td,th{padding:4px 8px;border-bottom:1px solid #ddd;
vertical-align:top;text-align:left}img{max-width:100%}.name{font-family:monospace;font-size:small;color:#555}
.note{color:#555;max-width:60em}.warn{color:#a40000;font-weight:bold}pre{font-size:small;background:#f0f0f0;
padding:8px;max-width:100em;overflow:auto}"""


def _clean(x):
    """JSON-safe plain types: NaN/inf -> null, numpy scalars -> Python numbers, paths -> strings."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_metrics(out: Path, metrics: dict) -> Path:
    path = Path(out) / "metrics.json"
    write_text(path, json.dumps(_clean(metrics), indent=2) + "\n")
    return path


def nn_strip(images: list, size: int, path: Path) -> None:
    """source | translation | NN1 | NN2 | NN3 side by side (figures 17-18 of the supplementary)."""
    canvas = Image.new("RGB", (len(images) * (size + 2) - 2, size), (255, 255, 255))
    for j, im in enumerate(images):
        if im is not None:
            canvas.paste(im.resize((size, size)) if im.size != (size, size) else im, (j * (size + 2), 0))
    save_image_atomic(canvas, path)


def _fmt(v, pct=False) -> str:
    if v is None:
        return "not computed"
    if isinstance(v, dict):
        if v.get("value") is None:
            return "not computed"
        std = v.get("std")
        return f"{v['value']:.4g}" + (f" ± {std:.2g}" if std is not None else "")
    return f"{v:.0%}" if pct else f"{v:.3g}"


ROWS = [  # (label, key, as percentage)
    ("target share (independent classifier)", "target_share", True),
    ("classifier accuracy on real held-out images", "real_accuracy", True),
    ("silhouette target share (the pair's shape judge)", "silhouette_target_share", True),
    ("collapse ratio (diversity / real diversity)", "collapse_ratio", False),
    ("mean centre shift (fraction of the side)", "centre_shift", False),
    ("mean ground shift (fraction of the side)", "layout.ground_shift", False),
    ("frame colour error (RGB distance, 0..1)", "appearance.frame_colour_error", False),
    ("background colour error (RGB distance, 0..1)", "appearance.background_colour_error", False),
    ("KID (raw, not x100)", "kid", False),
    ("FID", "fid", False),
]

#: figures read between a floor and a chance level: (label, section, figure)
SCALED = [
    ("frame colour error", "appearance", "frame_colour_error"),
    ("background colour error", "appearance", "background_colour_error"),
    ("ground shift", "layout", "ground_shift"),
    ("centre shift", "layout", "centre_shift"),
]


def lookup(result: dict | None, key: str):
    """``result["a"]["b"]`` for ``key`` "a.b"; None where a part is missing."""
    for part in key.split("."):
        if not isinstance(result, dict):
            return None
        result = result.get(part)
    return result


def scaled(result: dict, section: str, figure: str) -> dict | None:
    """``{"value", "floor", "chance", "progress"}`` of a figure of ``section``; None when it was not computed."""
    sec = (result or {}).get(section) or {}
    if sec.get(figure) is None:
        return None
    return {"value": sec[figure], "floor": sec.get(f"{figure}_floor"), "chance": sec.get(f"{figure}_chance"),
            "progress": sec.get(f"{figure}_progress")}


def summary_lines(metrics: dict) -> list[str]:
    """One line per direction and figure, as printed by ``deepcascade evaluate``."""
    lines = []
    for d in DIRECTIONS:
        r = metrics.get(d)
        if r is None:
            continue
        parts = []
        for label, key, pct in ROWS:
            v = lookup(r, key)
            if v is None or (isinstance(v, dict) and v.get("value") is None) or key in _SCALED_KEYS:
                continue
            parts.append(f"{key}={_fmt(v, pct)}")
        for label, section, figure in SCALED:
            f = scaled(r, section, figure)
            if f is not None:
                parts.append(f"{figure}={_fmt(f['value'])} (floor {_fmt(f['floor'])}, chance {_fmt(f['chance'])}, "
                             f"progress {_fmt(f['progress'], True)})")
        extra = ""
        if r.get("classifier") and r["classifier"].get("trustworthy") is False:
            extra = " (classifier below 90% on real images: target_share untrustworthy)"
        lines.append(f"{d}: " + "  ".join(parts) + extra)
    for nc in metrics.get("not_computed", []):
        lines.append(f"not computed: {nc['metric']}: {nc['reason']}")
    return lines


_SCALED_KEYS = {f"{section}.{figure}" for _, section, figure in SCALED} | {"centre_shift"}


def _scaled_table(metrics: dict, dirs: list[str]) -> list[str]:
    """The figures read between their floor (1) and chance level (0), per direction."""
    rows = [(label, d, f) for label, section, figure in SCALED for d in dirs
            if (f := scaled(metrics[d], section, figure)) is not None]
    if not rows:
        return []
    p = ["<h2>From chance to the floor</h2><p class='note'>floor: the untranslated source (layout: the estimator's "
         "own error; appearance: the run's reconstruction I(e(source))); chance: real target images paired with "
         "the sources at random; progress = (chance - value) / (chance - floor): 1 at the floor, 0 at chance.</p>",
         "<table><tr><th>figure</th><th>direction</th><th>value</th><th>floor</th><th>chance</th>"
         "<th>progress</th></tr>"]
    for label, d, f in rows:
        p.append(f"<tr><td>{html.escape(label)}</td><td>{d}</td>" + "".join(
            f"<td>{html.escape(_fmt(f[k], k == 'progress'))}</td>" for k in ("value", "floor", "chance", "progress"))
            + "</tr>")
    p.append("</table>")
    return p


def _href(out: Path, target: Path) -> str:
    return quote(os.path.relpath(target, out).replace(os.sep, "/"))


def write_page(out: Path, metrics: dict, strips: dict[str, list[dict]], title: str) -> Path:
    """``out/index.html``: the figures per direction, what was not computed and why, the protocol, and the
    nearest-neighbour strips (``strips[direction]``: rows with ``path``, ``translation``, ``source`` and
    ``neighbours`` [(file, distance)])."""
    out = Path(out)
    dirs = [d for d in DIRECTIONS if metrics.get(d) is not None]
    p = [f"<!doctype html><html><head><meta charset='utf-8'>{GENERATOR_MARK}<title>{html.escape(title)}</title>",
         f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
         "<table><tr><th>measure</th>" + "".join(f"<th>{d}</th>" for d in dirs) + "</tr>"]
    for label, key, pct in ROWS:
        p.append(f"<tr><td>{html.escape(label)}</td>" +
                 "".join(f"<td>{html.escape(_fmt(lookup(metrics[d], key), pct))}</td>" for d in dirs) + "</tr>")
    p.append("</table>")
    p += _scaled_table(metrics, dirs)
    proto = metrics.get("protocol", {})
    if proto.get("classifier"):
        p.append(f"<p class='note'>Classifier: {html.escape(proto['classifier'].get('model', ''))}; "
                 f"{html.escape(proto['classifier'].get('why', ''))}.</p>")
    if proto.get("perceptual_distance"):
        p.append(f"<p class='note'>Collapse ratio and nearest neighbours use the perceptual distance "
                 f"{html.escape(proto['perceptual_distance']['distance'])}.</p>")
    for d in dirs:
        c = metrics[d].get("classifier") or {}
        if c.get("trustworthy") is False:
            p.append(f"<p class='warn'>{d}: the classifier scores {c.get('real_accuracy', 0):.0%} on real held-out "
                     f"images (below 90%): its target share is not trustworthy.</p>")
    if metrics.get("not_computed"):
        p.append("<h2>Not computed</h2><ul>")
        for nc in metrics["not_computed"]:
            how = f". To provide it: {nc['how']}" if nc.get("how") else ""
            p.append(f"<li><b>{html.escape(nc['metric'])}</b>: {html.escape(nc['reason'] + how)}</li>")
        p.append("</ul>")
    for d in dirs:
        rows = strips.get(d) or []
        if not rows:
            continue
        p.append(f"<h2>{d}: LPIPS nearest neighbours among the target's training images</h2>"
                 "<p class='note'>source | translation | NN1 | NN2 | NN3 (supplementary figures 17-18). A "
                 "translation much closer to a training image than real images are to each other is a copy.</p>"
                 "<table><tr><th>translation</th><th>source | translation | NN1 | NN2 | NN3</th>"
                 "<th>LPIPS distances</th></tr>")
        for r in rows:
            h = _href(out, r["path"])
            dist = "<br>".join(f"NN{j + 1}: {html.escape(f)} ({dd:.4f})" for j, (f, dd) in enumerate(r["neighbours"]))
            p.append(f"<tr><td class='name'>{html.escape(r['translation'])}</td>"
                     f"<td><a href='{h}'><img src='{h}' alt='strip'></a></td><td class='name'>{dist}</td></tr>")
        p.append("</table>")
    p.append("<h2>Protocol</h2><pre>" + html.escape(json.dumps(_clean(metrics.get("protocol", {})), indent=1))
             + "</pre><p class='note'>All figures: metrics.json.</p></body></html>\n")
    write_text(out / "index.html", "\n".join(p))
    return out / "index.html"
