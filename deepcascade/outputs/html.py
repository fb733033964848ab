"""Self-contained HTML pages of results: relative links only, inline CSS, no server, no external asset."""

from __future__ import annotations

import html
import os
from pathlib import Path
from urllib.parse import quote

from ..fileio import write_text

GENERATOR_MARK = "<meta name='generator' content='deepcascade'>"  # tells our pages from a user's own files


def is_our_page(path: Path) -> bool:
    """True when ``path`` is an HTML page deepcascade wrote (the mark sits in its head); False for a user's own
    file, or one that is missing or unreadable."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return GENERATOR_MARK in f.read(4096)
    except OSError:
        return False

_CSS = """body{font-family:sans-serif;margin:1.5em;background:#fafafa;color:#222}
table{border-collapse:collapse}td,th{padding:4px 8px;border-bottom:1px solid #ddd;vertical-align:top;text-align:left}
img{image-rendering:auto;max-width:100%}.name{font-family:monospace;font-size:small;color:#555}
.note{color:#555;max-width:60em}"""


def _href(out_dir: Path, target: Path) -> str:
    return quote(os.path.relpath(target, out_dir).replace(os.sep, "/"))


def write_index(out_dir: str | Path, title: str, columns: list[str], rows: list[dict], notes: list[str] = ()
                ) -> Path:
    """Write ``out_dir/index.html``: one table row per item.

    Each row is ``{"name": str, <column>: Path | None, ...}``; a Path is shown as an image linked to itself.
    """
    out_dir = Path(out_dir)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'>{GENERATOR_MARK}<title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in notes]
    parts.append("<table><tr><th>image</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>")
    for row in rows:
        cells = []
        for c in columns:
            p = row.get(c)
            if p is None:
                cells.append("<td></td>")
            else:
                h = _href(out_dir, Path(p))
                cells.append(f"<td><a href='{h}'><img src='{h}' alt='{html.escape(c)}'></a></td>")
        parts.append(f"<tr><td class='name'>{html.escape(row['name'])}</td>{''.join(cells)}</tr>")
    parts.append("</table></body></html>\n")
    write_text(out_dir / "index.html", "\n".join(parts))
    return out_dir / "index.html"
