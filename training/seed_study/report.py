"""The report as a list of blocks, rendered to Markdown and to one self-contained HTML page.

Building the document once and rendering it twice keeps report.md and report.html identical
in content without a Markdown library; the HTML embeds every PNG as base64 so the page can be
mailed or opened anywhere. Also the contact sheet (test queries × top photos of a model).
"""

from __future__ import annotations

import base64
import html
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Figure:
    path: Path
    caption: str


@dataclass(frozen=True)
class Code:
    text: str


Block = Heading | Paragraph | Bullets | Table | Figure | Code


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> None:
        self.blocks.extend(blocks)


def cell(value: object, digits: int = 3) -> str:
    """A table cell: floats rounded, NaN as a dash."""
    if isinstance(value, float | np.floating):
        return "—" if not np.isfinite(value) else f"{float(value):.{digits}f}"
    return str(value)


def table(columns: Sequence[str], rows: Sequence[Sequence[object]], digits: int = 3) -> Table:
    return Table(tuple(columns), tuple(tuple(cell(v, digits) for v in row) for row in rows))


# ----------------------------------------------------------------------------------- render


def to_markdown(doc: Document) -> str:
    lines = [f"# {doc.title}", ""]
    for block in doc.blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, Bullets):
            lines += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Table):
            lines.append("| " + " | ".join(block.columns) + " |")
            lines.append("|" + "---|" * len(block.columns))
            lines += ["| " + " | ".join(row) + " |" for row in block.rows]
            lines.append("")
        elif isinstance(block, Figure):
            lines += [f"![{block.caption}]({block.path.name})", "", f"*{block.caption}*", ""]
        else:
            lines += ["```", block.text, "```", ""]
    return "\n".join(lines)


_INLINE = [(re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
           (re.compile(r"\*\*([^*]+)\*\*"), r"<strong>\1</strong>"),
           (re.compile(r"\*([^*]+)\*"), r"<em>\1</em>")]


def _inline(text: str) -> str:
    out = html.escape(text, quote=False)
    for pattern, replacement in _INLINE:
        out = pattern.sub(replacement, out)
    return out


def to_html(doc: Document) -> str:
    """One page, no external files: PNGs inlined as data URIs."""
    parts = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
             f"<title>{html.escape(doc.title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;"
             "line-height:1.4}table{border-collapse:collapse;margin:1em 0;font-size:90%}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             "td:first-child,th:first-child{text-align:left}img{max-width:100%}"
             "pre{background:#f4f4f4;padding:8px;overflow-x:auto}</style></head><body>",
             f"<h1>{html.escape(doc.title)}</h1>"]
    for block in doc.blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            parts.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items)
                         + "</ul>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{_inline(c)}</th>" for c in block.columns)
            body = "".join("<tr>" + "".join(f"<td>{_inline(v)}</td>" for v in row) + "</tr>"
                           for row in block.rows)
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
        elif isinstance(block, Figure):
            data = base64.b64encode(block.path.read_bytes()).decode("ascii")
            parts.append(f"<figure><img src='data:image/png;base64,{data}' "
                         f"alt='{html.escape(block.caption)}'><figcaption>"
                         f"{_inline(block.caption)}</figcaption></figure>")
        else:
            parts.append(f"<pre>{html.escape(block.text)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


# ---------------------------------------------------------------------------- contact sheet


def contact_sheet(out: Path, title: str, queries: Sequence[str], photos: Sequence[Path],
                  top: np.ndarray, relevant: Sequence[int], thumb: int = 64) -> Path:
    """PNG: one row per query (its text, then its top photos); the relevant one framed green.

    Thumbnails are small on purpose: the sheet is an internal check written only under the
    study's --out folder, never into the repository (the photos are not ours to publish).
    """
    text_width, pad = 230, 4
    columns = top.shape[1]
    width = text_width + columns * (thumb + pad) + pad
    height = 24 + len(queries) * (thumb + pad) + pad
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=11)
    draw.text((pad, 4), title, fill="black", font=font)
    cache: dict[int, Image.Image] = {}
    for row, (query, picks) in enumerate(zip(queries, top, strict=True)):
        y = 24 + row * (thumb + pad)
        wrapped = textwrap.wrap(query, 38)[:5]
        draw.multiline_text((pad, y), "\n".join(wrapped), fill="black", font=font, spacing=1)
        for col, photo in enumerate(picks):
            index = int(photo)
            if index not in cache:
                with Image.open(photos[index]) as image:
                    cache[index] = ImageOps.fit(image.convert("RGB"), (thumb, thumb))
            x = text_width + col * (thumb + pad)
            sheet.paste(cache[index], (x, y))
            if index == relevant[row]:
                draw.rectangle([x - 2, y - 2, x + thumb + 1, y + thumb + 1], outline="limegreen",
                               width=3)
    # A 256-colour palette keeps a sheet near 100 KB: it is embedded in report.html.
    sheet.quantize(256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    return out
