"""The inspector's web page: one static page at `/`, its script and styles under `/static/`; and the
API's interactive docs at `/docs` (Swagger UI) and `/redoc`, their files under `/docs/assets/`.

Plain files shipped inside the packages (no build step, no CDN): the page and the docs work offline on
the site's network, with only the server. Call `install_web(app)` from create_app, whose FastAPI(...)
leaves out its own docs pages, which load from a CDN (docs_url=None, redoc_url=None).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
INDEX = STATIC / "index.html"
DOCS_ASSETS = "/docs/assets"

# The page must always be fresh (it names the assets); the assets revalidate by ETag.
NO_CACHE = {"Cache-Control": "no-cache"}


def install_web(app: FastAPI) -> None:
    """GET / -> the page; GET /static/<file> -> its assets; and the API docs. All open: the page holds
    no secrets, the API key is typed into it and sent by the page with each API call."""

    def index() -> FileResponse:
        return FileResponse(INDEX, media_type="text/html; charset=utf-8", headers=NO_CACHE)

    app.add_api_route("/", index, methods=["GET"], include_in_schema=False, response_class=FileResponse)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    install_docs(app)


def install_docs(app: FastAPI) -> None:
    """GET /docs (Swagger UI) and GET /redoc (ReDoc) over the app's OpenAPI schema, open like the schema
    itself: they only describe the API, and a call tried from them needs a key where the API does."""

    def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")  # behind a proxy that serves the app under a prefix
        return get_swagger_ui_html(
            openapi_url=root + app.openapi_url, title=f"{app.title} · API docs",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from validator.swagger.io
        )

    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(openapi_url=root + app.openapi_url, title=f"{app.title} · API reference",
                              redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png", with_google_fonts=False)
        # ReDoc always asks cdn.redoc.ly for its logo (and hides it when that fails): images from this
        # server only, so the browser does not even try.
        page.headers["Content-Security-Policy"] = "img-src 'self' data:"
        return page

    app.add_api_route("/docs", docs, methods=["GET"], include_in_schema=False, response_class=HTMLResponse)
    app.add_api_route("/redoc", redoc, methods=["GET"], include_in_schema=False, response_class=HTMLResponse)
    app.mount(DOCS_ASSETS, StaticFiles(directory=docs_files()), name="docs-assets")


def docs_files() -> Path:
    """Swagger UI 5 and ReDoc 2, as the fastapi-offline package ships them. (swagger-ui-bundle's Swagger
    UI 4 cannot read the OpenAPI 3.1 schemas FastAPI writes: "Unable to render this definition".)"""
    return Path(str(resources.files("fastapi_offline") / "static"))
