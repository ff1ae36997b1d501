"""The web chat: a static page served by the stand-in's own server at `/`.

One server, one port: the bot polls `http://127.0.0.1:PORT/bot...` while a person opens
`http://127.0.0.1:PORT/` and talks to the bot through the `/_user/` API. The page is plain
HTML, CSS and JavaScript in `static/` (no build step, nothing fetched from the internet, since
the demo machine may be offline).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).resolve().parent / "static"


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", _index)
    app.router.add_static("/static/", STATIC_DIR, name="static")


async def _index(_: web.Request) -> web.StreamResponse:
    page = STATIC_DIR / "index.html"
    return web.FileResponse(page, headers={"Cache-Control": "no-cache"})
