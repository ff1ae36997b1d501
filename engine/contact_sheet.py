"""Contact sheets: one self-contained HTML page showing each query's ranked photos.

People judge a search by looking at it. Thumbnails are embedded as data URIs so the page can
be mailed or opened anywhere without the photo folder.
"""

from __future__ import annotations

import base64
import html
import json
import shlex
from collections.abc import Sequence
from pathlib import Path

from engine.images import UnreadablePhotoError, thumbnail_jpeg
from engine.moderation import ReviewItem
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
textarea{width:100%;height:90px;font-family:monospace;font-size:12px;position:sticky;top:0;z-index:1}
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


REVIEW_NOTE = "reviewed: no child"

# Builds the allow command from the ticked photos; POSIX shell quoting, like `shlex.quote`.
_REVIEW_SCRIPT = """
const base = {base};
const note = {note};
const quote = s => "'" + s.replace(/'/g, "'\\\\''") + "'";
function update() {
  const picked = [...document.querySelectorAll("input.pick:checked")].map(e => quote(e.value));
  document.getElementById("cmd").value = picked.length
    ? base + " --allow " + picked.join(" ") + " --note " + quote(note) : "";
}
document.querySelectorAll("input.pick").forEach(e => e.addEventListener("change", update));
"""


def _script_literal(value: str) -> str:
    """A JavaScript string literal that cannot end the <script> element early."""
    return json.dumps(value).replace("</", "<\\/")


def render_review_sheet(items: Sequence[ReviewItem], photo_dir: Path, index_dir: Path,
                        summary: str, title: str = "Photos hidden as possible children"
                        ) -> str:
    """HTML for the moderation queue: each hidden photo with its score and a tick box.

    Why a page and not a list of paths: whether a photo shows a child is decided by looking.
    Ticking photos fills in the `python -m engine moderate --allow ...` command to run, so the
    page itself changes nothing and needs no server; the command records who decided and why.
    """
    cache: dict[Path, str] = {}
    command = f"python -m engine moderate --index {shlex.quote(str(index_dir))}"
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_STYLE}</style><h1>{html.escape(title)}</h1>",
             f"<p>{html.escape(summary)}</p>",
             "<p class='meta'>Lowest child score first: the detector was least sure of these. "
             "Tick the photos that show no child, then run the command below. Leave a photo "
             "unticked when in doubt: it stays hidden.</p>",
             "<textarea id='cmd' readonly placeholder='tick photos to build the command'>"
             "</textarea>"]
    if not items:
        parts.append("<div class='meta'>nothing awaits review</div>")
    else:
        parts.append("<div class='row'>")
        for item in items:
            uri = _thumbnail_uri(photo_dir / item.photo, cache)
            image = f"<img src='{uri}' alt=''>" if uri else "<div class='meta'>(unreadable)</div>"
            name = html.escape(item.photo, quote=True)
            parts.append(f"<figure>{image}<figcaption><label><input type='checkbox' "
                         f"class='pick' value='{name}'> no child</label><br>score "
                         f"{item.score:.3f}<br>{name}</figcaption></figure>")
        parts.append("</div>")
    parts.append("<script>" + _REVIEW_SCRIPT.replace("{base}", _script_literal(command))
                 .replace("{note}", _script_literal(REVIEW_NOTE)) + "</script>")
    return "\n".join(parts) + "\n"
