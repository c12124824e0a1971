"""The HTTP layer of ``lookalike serve``: :func:`create_app` builds a FastAPI app over one
shared :class:`~lookalike.Index` from the modules of this package.

* :mod:`.config`: :class:`ServerConfig` and the request limits.
* :mod:`.state`: the shared index and its lock, the indexing job, the thumbnail cache.
* :mod:`.search_options`: query parameters -> ``SearchOptions`` -> the Index.
* :mod:`.routes_search`, :mod:`.routes_tags`, :mod:`.routes_browse`, :mod:`.routes_images`,
  :mod:`.routes_collection`, :mod:`.routes_dupes`: the endpoints.
* :mod:`.models`: the JSON in and out. :mod:`.errors`: every error as ``{"error": "..."}``;
  :mod:`.openapi`: the OpenAPI 3.0 document that says so, for /docs.
* :mod:`.middleware`: body limit, Host guard, security headers.

This module adds the page, the offline /docs and the middleware.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from ..api import Index
from ..version import __version__
from .config import MULTIPART_OVERHEAD, ServerConfig
from .errors import install_error_handlers
from .middleware import BodyLimit, HostGuard, SecurityHeaders
from .openapi import COMMON_ERRORS, error_responses, install_openapi
from .routes_browse import browse_routes
from .routes_collection import collection_routes
from .routes_dupes import dupes_routes
from .routes_images import image_routes
from .routes_search import search_routes
from .routes_tags import tag_routes
from .state import ServerState

__all__ = ["ServerConfig", "create_app"]

STATIC_DIR = Path(__file__).with_name("static")
PAGE_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def page() -> FileResponse:
    """The single-page UI; its strict CSP allows only this server's scripts and images."""
    return FileResponse(STATIC_DIR / "index.html", headers={"Content-Security-Policy": PAGE_CSP})


def dupes_page() -> FileResponse:
    """The duplicates view (``/dupes``), under the same CSP as the main page."""
    return FileResponse(STATIC_DIR / "dupes.html", headers={"Content-Security-Policy": PAGE_CSP})


def docs_page() -> HTMLResponse:
    """Swagger UI from the ``swagger-ui-bundle`` package, so /docs works offline (FastAPI's
    default page loads its scripts from a CDN)."""
    from fastapi.openapi.docs import get_swagger_ui_html

    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="lookalike API",
        swagger_js_url="/docs-assets/swagger-ui-bundle.js",
        swagger_css_url="/docs-assets/swagger-ui.css",
        swagger_favicon_url="data:,",
    )


def _mount_docs(app: FastAPI) -> None:
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:  # the page still lists endpoints at /openapi.json
        return
    app.mount("/docs-assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")
    app.add_api_route("/docs", docs_page, include_in_schema=False)


def create_app(index: Index, config: ServerConfig | None = None) -> FastAPI:
    """The ASGI app serving ``index``.

    An indexing run swaps in a fresh :class:`Index` and closes the one it replaces, so call
    ``app.state.lookalike.close()`` when done rather than closing ``index`` yourself.
    """
    config = config or ServerConfig()
    app = FastAPI(
        title="lookalike",
        version=__version__,
        description="Reverse image search over a local image collection.",
        docs_url=None,
        redoc_url=None,
        responses=error_responses(*COMMON_ERRORS),
    )
    install_openapi(app)
    _mount_docs(app)
    app.state.lookalike = ServerState(index, config)
    install_error_handlers(app)
    for router in (search_routes, tag_routes, browse_routes, image_routes, collection_routes,
                   dupes_routes):
        app.include_router(router)
    app.add_api_route("/", page, include_in_schema=False)
    app.add_api_route("/dupes", dupes_page, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(
        BodyLimit,
        max_bytes=config.max_upload_bytes + MULTIPART_OVERHEAD,
        upload_limit=config.max_upload_bytes,
    )
    app.add_middleware(SecurityHeaders)
    if config.allowed_hosts is not None:
        app.add_middleware(HostGuard, allowed=config.allowed_hosts)
    return app
