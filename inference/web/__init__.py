"""The inspector's web page: one static page at `/`, its script and styles under `/static/`.

Plain files shipped inside the package (no build step, no CDN): the page works offline on the
site's network, with only the server. Call `install_web(app)` from create_app.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
INDEX = STATIC / "index.html"

# The page must always be fresh (it names the assets); the assets revalidate by ETag.
NO_CACHE = {"Cache-Control": "no-cache"}


def install_web(app: FastAPI) -> None:
    """GET / -> the page; GET /static/<file> -> its assets. Both open: the page holds no secrets,
    the API key is typed into it and sent by the page with each API call."""

    def index() -> FileResponse:
        return FileResponse(INDEX, media_type="text/html; charset=utf-8", headers=NO_CACHE)

    app.add_api_route("/", index, methods=["GET"], include_in_schema=False, response_class=FileResponse)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
