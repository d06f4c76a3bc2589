"""The HTML page of ``aiosched report``: one self-contained file.

Figures are embedded as ``data:`` URIs (the PNG files beside the page are the
same images), styles are inline, and nothing is fetched from elsewhere: the
page opens offline, from any directory. Every text from the inputs is escaped.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._version import __version__

__all__ = ["Section", "render_page"]

_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
figure { margin: 1em 0; } img { max-width: 100%; }
figcaption, .note { color: #555; font-size: 0.85em; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


@dataclass
class Section:
    """A heading, a paragraph of notes, tables (header row first) and figures (PNG, caption)."""

    title: str
    notes: list[str] = field(default_factory=list)
    tables: list[list[list[str]]] = field(default_factory=list)
    figures: list[tuple[Path, str]] = field(default_factory=list)


def _table(rows: list[list[str]]) -> str:
    head, *body = rows
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body]
    out.append("</table>")
    return "\n".join(out)


def _figure(png: Path, caption: str) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    alt = html.escape(caption, quote=True)
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
        f"<figcaption>{html.escape(caption)} (<code>{html.escape(png.name)}</code>)"
        "</figcaption></figure>"
    )


def render_page(sections: Sequence[Section], sources: Sequence[Any], notes: Sequence[str]) -> str:
    """The whole page: a header naming the input files, notes, then each section."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>aiosched report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>aiosched report</h1>",
        f'<p class="note">aiosched {html.escape(__version__)}; from '
        + ", ".join(f"<code>{html.escape(str(s))}</code>" for s in sources)
        + "</p>",
    ]
    parts += [f'<p class="note">{html.escape(n)}</p>' for n in notes]
    for s in sections:
        parts.append(f"<h2>{html.escape(s.title)}</h2>")
        parts += [f'<p class="note">{html.escape(n)}</p>' for n in s.notes]
        parts += [_table(t) for t in s.tables]
        parts += [_figure(png, caption) for png, caption in s.figures]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
