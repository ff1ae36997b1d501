"""Contact sheets: one self-contained HTML page showing each query's ranked photos.

People judge a search by looking at it. Thumbnails are embedded as data URIs so the page can
be mailed or opened anywhere without the photo folder.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from engine.images import UnreadablePhotoError, thumbnail_jpeg
from engine.search import SearchResult

THUMB_PX = 220

_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;background:#fafafa;color:#222}
h1{font-size:20px} .query{margin:28px 0 8px;font-size:16px}
.blocked{color:#a00;font-style:italic} .row{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;width:{px}px;background:#fff;border:1px solid #ddd;padding:6px}
figure img{width:{px}px;height:{px}px;object-fit:cover;display:block}
figcaption{font-size:12px;margin-top:4px;word-break:break-all}
.meta{color:#666;font-size:12px}
""".replace("{px}", str(THUMB_PX))


def _thumbnail_uri(path: Path, cache: dict[Path, str]) -> str | None:
    if path not in cache:
        try:
            data = thumbnail_jpeg(path, THUMB_PX * 2, quality=80)
        except UnreadablePhotoError:
            return None
        cache[path] = "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
    return cache[path]


def render_contact_sheet(results: Sequence[SearchResult], title: str = "Search results") -> str:
    """HTML for a list of results: query, then its photos with rank, score and file name."""
    cache: dict[Path, str] = {}
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_STYLE}</style><h1>{html.escape(title)}</h1>"]
    for result in results:
        parts.append(f"<div class='query'>“{html.escape(result.query)}” "
                     f"<span class='meta'>[{html.escape(result.language)}, "
                     f"{result.elapsed_ms:.0f} ms, {html.escape(result.model)}]</span></div>")
        if result.blocked:
            parts.append(f"<div class='blocked'>{html.escape(result.message or '')}</div>")
            continue
        if not result.hits:
            parts.append("<div class='meta'>nothing found</div>")
            continue
        parts.append("<div class='row'>")
        for rank, hit in enumerate(result.hits, start=1):
            uri = _thumbnail_uri(hit.path, cache)
            image = f"<img src='{uri}' alt=''>" if uri else "<div class='meta'>(unreadable)</div>"
            parts.append(f"<figure>{image}<figcaption>#{rank} · {hit.score:.3f}<br>"
                         f"{html.escape(hit.photo)}</figcaption></figure>")
        parts.append("</div>")
    return "\n".join(parts) + "\n"


def write_contact_sheet(path: Path, results: Sequence[SearchResult],
                        title: str = "Search results") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_contact_sheet(results, title), encoding="utf-8")
