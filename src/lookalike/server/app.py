"""The HTTP layer of ``lookalike serve``: a FastAPI app over one shared :class:`~lookalike.Index`.

Design notes (why it looks the way it does):

* Endpoints are plain ``def`` functions, so FastAPI runs them in its threadpool: decoding and
  embedding are CPU-bound and must not block the event loop.
* One :class:`ServerState` holds the index and a lock. SQLite connections and vector stores
  are not safe to use from several threads at once, so every use of the index is serialised;
  decoding an upload or fetching a URL happens *outside* the lock.
* Indexed images are only ever addressed by their id; no endpoint opens a path taken from a
  request, except the token-protected indexing endpoint, whose caller is trusted.
* Every error is JSON ``{"error": "..."}`` with a 4xx status the page can show as is.
"""

from __future__ import annotations

import io
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..api import Index
from ..embed.labels import imagenet_labels
from ..errors import ImageError, LookalikeError
from ..images import load_image, load_image_url
from ..pipeline import is_under
from ..query.candidates import resolve_label
from ..query.results import Match, SearchResult

STATIC_DIR = Path(__file__).with_name("static")
MAX_K = 500
MAX_IMAGE_ID = 2**63 - 1  # SQLite's integer range; larger ids would raise OverflowError
MULTIPART_OVERHEAD = 64 * 1024  # headers and boundaries around an uploaded file
PAGE_CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


@dataclass(frozen=True)
class ServerConfig:
    """What ``lookalike serve`` lets a client do, and how much it may send.

    ``token`` enables the write endpoints (None: read-only server). ``allowed_hosts`` guards
    against DNS rebinding when bound to loopback (None: any ``Host`` header).
    """

    token: str | None = None
    allow_private_urls: bool = False
    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000
    url_timeout: float = 10.0
    thumbnail_size: int = 320
    thumbnail_cache: int = 1024
    allowed_hosts: tuple[str, ...] | None = None


class LRUCache:
    """A small thread-safe LRU of encoded thumbnails (bytes), so a grid re-render is free."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._items: OrderedDict[Any, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> bytes | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
            return self._items.get(key)

    def put(self, key: Any, value: bytes) -> bytes:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return value


@dataclass
class IndexJob:
    """One background indexing run; its progress is polled by ``GET /api/index``."""

    paths: list[str]
    prune: bool
    missing: list[str] = field(default_factory=list)
    state: Literal["running", "done", "failed"] = "running"
    done: int = 0
    total: int = 0
    report: dict | None = None
    error: str | None = None
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    def progress(self, done: int, total: int) -> None:
        self.done, self.total = done, total

    def finish(self, report: dict | None = None, error: str | None = None) -> None:
        self.report, self.error = report, error
        self.state = "failed" if error else "done"
        self.finished_at = time.time()

    def as_dict(self) -> dict:
        return {
            "state": self.state,
            "paths": self.paths,
            "prune": self.prune,
            "missing": self.missing,
            "done": self.done,
            "total": self.total,
            "report": self.report,
            "error": self.error,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


class ServerState:
    """The shared index, the lock that serialises its use, and the thumbnail cache."""

    def __init__(self, index: Index, config: ServerConfig):
        self.index = index
        self.config = config
        self.lock = threading.Lock()
        self.thumbnails = LRUCache(config.thumbnail_cache)
        self.job: IndexJob | None = None
        self._job_lock = threading.Lock()

    @contextmanager
    def reading(self) -> Iterator[Index]:
        """The index, held exclusively for the duration of the block."""
        with self.lock:
            yield self.index

    def close(self) -> None:
        """Close the index in use (after an indexing run, not the one the app started with)."""
        with self.lock:
            self.index.close()

    def search(self, image: Image.Image, params: SearchParams) -> SearchResult:
        with self.reading() as index:
            return index.search(image, params.k, **params.as_kwargs())

    def locate(self, image_id: int) -> str:
        """A readable file of an indexed image, or 404: ids are the only way to name files."""
        with self.reading() as index:
            locations = known_locations(index, image_id)
        for location in locations:
            if os.path.isfile(location):
                return location
        raise HTTPException(404, f"the file of image {image_id} is no longer on disk")

    def start_job(self, paths: list[str], prune: bool, missing: list[str]) -> IndexJob:
        """Index ``paths`` in a background thread; 409 while another run is in progress."""
        with self._job_lock:
            if self.job is not None and self.job.state == "running":
                raise HTTPException(409, "an indexing run is already in progress")
            self.job = IndexJob(paths, prune, missing)
        threading.Thread(
            target=self._run_job, args=(self.job,), name="lookalike-index", daemon=True
        ).start()
        return self.job

    def _run_job(self, job: IndexJob) -> None:
        """Index with a second :class:`Index` (SQLite WAL lets searches go on meanwhile), then
        swap it in, so searches never see a half-updated vector store. A failed run is swapped
        in too: the batches it finished are committed and should be searchable."""
        try:
            fresh = Index.open(self.index.path, settings=self.index.settings, create=False)
        except Exception as exc:  # noqa: BLE001 - any failure is reported to the poller
            job.finish(error=str(exc))
            return
        outcome: dict[str, Any] = {}
        try:
            report = fresh.add(job.paths, prune=job.prune, progress=job.progress)
            outcome["report"] = report.as_dict()
        except Exception as exc:  # noqa: BLE001
            outcome["error"] = str(exc)
        with self.lock:
            old, self.index = self.index, fresh
            old.close()
        job.finish(**outcome)


# --- request and response models (they document /docs) ----------------------------------
class MatchOut(BaseModel):
    """The CLI's JSON match fields plus what the page needs to show and open the image."""

    rank: int
    path: str
    score: float
    labels: list[str]
    id: int
    thumbnail_url: str
    original_url: str


class SearchOut(BaseModel):
    query: str
    query_labels: list[str]
    route: str
    matches: list[MatchOut]


class ImageOut(BaseModel):
    id: int
    paths: list[str]
    labels: list[str]
    thumbnail_url: str
    original_url: str


class UrlQuery(BaseModel):
    url: str = Field(description="http(s) URL of the query image", max_length=4096)


class IndexRequest(BaseModel):
    paths: list[str] = Field(default_factory=list, description="absolute paths on the server")
    reindex: bool = Field(False, description="also rescan the folders already indexed")
    prune: bool = Field(True, description="forget files that were deleted from these folders")


@dataclass(frozen=True)
class SearchParams:
    k: int
    labels: list[str] | None
    min_score: float | None
    route: str
    rerank: str | None = None  # None: the index's settings, as in the CLI
    verify: int | None = None
    regions: int | None = None
    words: int | None = None

    def as_kwargs(self) -> dict:
        return {
            "label": self.labels, "route": self.route, "min_score": self.min_score,
            "rerank": self.rerank, "verify": self.verify, "regions": self.regions,
            "words": self.words,
        }


# --- dependencies ---------------------------------------------------------------------------
def get_state(request: Request) -> ServerState:
    return request.app.state.lookalike


State = Annotated[ServerState, Depends(get_state)]
ImageId = Annotated[int, PathParam(ge=1, le=MAX_IMAGE_ID, description="an indexed image's id")]
_bearer = HTTPBearer(auto_error=False, description="the token given to `lookalike serve --token`")


def search_params(
    k: Annotated[int, Query(ge=1, le=MAX_K, description="how many matches")] = 10,
    label: Annotated[
        list[str] | None, Query(description="keep images with one of these ImageNet labels")
    ] = None,
    min_score: Annotated[
        float | None, Query(ge=-1.0, le=1.0, description="drop matches scoring below this")
    ] = None,
    route: Literal["global", "categories"] = "global",
    rerank: Annotated[
        Literal["auto", "diffusion", "qe", "none"] | None,
        Query(description="re-ranking (default: the index's, auto: diffusion for 500-50,000 images, else qe)"),
    ] = None,
    verify: Annotated[
        int | None,
        Query(ge=0, le=100, description="spatially verify this many first matches (default 20; 0: off)"),
    ] = None,
    regions: Annotated[
        int | None,
        Query(ge=0, le=50, description="regional candidates to verify when none of those verifies surely, with 60+ inliers (default 10; 0: off)"),
    ] = None,
    words: Annotated[
        int | None,
        Query(ge=0, le=100, description="visual-word candidates to verify with the first matches (default 10; 0: off)"),
    ] = None,
) -> SearchParams:
    """Shared query parameters; unknown labels are a 422 here rather than a 400 later."""
    labels = [name for name in (label or []) if name.strip()]
    for name in labels:
        try:
            resolve_label(name)
        except LookalikeError as exc:
            raise HTTPException(422, str(exc)) from None
    return SearchParams(k, labels or None, min_score, route, rerank, verify, regions, words)


Params = Annotated[SearchParams, Depends(search_params)]


def require_token(
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Write endpoints: 403 on a read-only server, 401 for a missing or wrong token."""
    token = state.config.token
    if token is None:
        raise HTTPException(
            403, "this server is read-only: restart `lookalike serve` with --token to enable it"
        )
    given = credentials.credentials if credentials else ""
    if not secrets.compare_digest(given.encode(), token.encode()):
        raise HTTPException(
            401,
            "missing or wrong token: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


# --- helpers --------------------------------------------------------------------------------
def known_locations(index: Index, image_id: int) -> list[str]:
    """The files of an indexed image, or 404. Call with the index lock held."""
    locations = index.catalogue.locations_for([image_id])[image_id]
    if not locations:
        raise HTTPException(404, f"no indexed image with id {image_id}")
    return locations


def image_urls(image_id: int) -> dict[str, str]:
    base = f"/api/images/{image_id}"
    return {"thumbnail_url": f"{base}/thumbnail", "original_url": f"{base}/original"}


def match_out(match: Match) -> dict:
    return {**match.as_dict(), "id": match.image_id, **image_urls(match.image_id)}


def result_out(result: SearchResult, query: str | None = None) -> dict:
    return {
        "query": query if query is not None else result.query,
        "query_labels": result.query_labels,
        "route": result.route,
        "matches": [match_out(m) for m in result.matches],
    }


def decode_upload(state: ServerState, upload: UploadFile) -> Image.Image:
    """Read at most the size limit (413 beyond) and decode by content, not by file name."""
    limit = state.config.max_upload_bytes
    data = io.BytesIO(upload.file.read(limit + 1))
    if len(data.getbuffer()) > limit:
        raise HTTPException(413, f"upload too large: the limit is {limit:,} bytes")
    data.name = upload.filename or "upload"  # what error messages call it
    return load_image(
        data,
        max_pixels=state.config.max_pixels,
        max_bytes=limit,
        target_size=state.index.query_size,
    )


def make_thumbnail(path: str, size: int, max_pixels: int) -> bytes:
    image = load_image(path, max_pixels=max_pixels, target_size=size)
    image.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=2.0)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85, optimize=True)
    return buffer.getvalue()


def sniff_media_type(path: str) -> str:
    """The media type from the file's content, so a renamed file is served as what it is."""
    try:
        with Image.open(path) as image:
            return Image.MIME.get(image.format or "", "application/octet-stream")
    except (OSError, ValueError, SyntaxError):
        raise HTTPException(404, "the indexed file is no longer a readable image") from None


def indexed_folders(locations: list[str]) -> list[str]:
    """The fewest folders covering every indexed file: what a re-index rescans."""
    roots: list[str] = []
    for folder in sorted({os.path.dirname(loc) for loc in locations}):
        if not is_under(folder, roots):  # sorted, so parents come before their children
            roots.append(folder)
    return roots


def check_paths(paths: list[str]) -> list[str]:
    """Absolute, existing server-side paths (400 otherwise: relative to what?)."""
    out = []
    for raw in paths:
        path = os.path.expanduser(raw)
        if not os.path.isabs(path):
            raise HTTPException(400, f"paths must be absolute on the server: {raw}")
        if not os.path.exists(path):
            raise HTTPException(400, f"no such file or folder on the server: {raw}")
        out.append(os.path.abspath(path))
    return out


# --- routes ---------------------------------------------------------------------------------
search_routes = APIRouter(prefix="/api", tags=["search"])
image_routes = APIRouter(prefix="/api/images", tags=["images"])
admin_routes = APIRouter(prefix="/api", tags=["collection"])
# Near-duplicate groups (a later issue) get their own router here, e.g.
# ``duplicate_routes = APIRouter(prefix="/api/duplicates", tags=["duplicates"])`` with
# ``GET /api/duplicates?threshold=`` listing groups of image ids (each with image_urls()),
# included in create_app() next to the others.


@search_routes.post("/search", response_model=SearchOut, summary="Search by an uploaded image")
def search_upload(
    state: State,
    params: Params,
    file: Annotated[UploadFile, File(description="the query image (any format Pillow reads)")],
) -> dict:
    result = state.search(decode_upload(state, file), params)
    return result_out(result, query=file.filename or "<upload>")


def fetch_url(state: ServerState, url: str) -> Image.Image:
    """Download with the server's limits; private addresses only with --allow-private-urls."""
    config = state.config
    try:
        return load_image_url(
            url,
            timeout=config.url_timeout,
            max_bytes=config.max_upload_bytes,
            allow_private=config.allow_private_urls,
            max_pixels=config.max_pixels,
            target_size=state.index.query_size,
        )
    except ImageError as exc:
        message = str(exc).replace(
            "pass allow_private=True", "start the server with --allow-private-urls"
        )
        raise ImageError(message) from None


@search_routes.post("/search/url", response_model=SearchOut, summary="Search by an image URL")
def search_url(state: State, params: Params, body: UrlQuery) -> dict:
    result = state.search(fetch_url(state, body.url), params)
    return result_out(result, query=body.url)


@image_routes.get("/{image_id}/similar", response_model=SearchOut, summary="More like this")
def search_similar(state: State, params: Params, image_id: ImageId) -> dict:
    with state.reading() as index:
        known_locations(index, image_id)
        result = index.search_by_id(image_id, params.k, **params.as_kwargs())
    return result_out(result)


@image_routes.get("/{image_id}", response_model=ImageOut, summary="An indexed image's details")
def image_details(state: State, image_id: ImageId) -> dict:
    with state.reading() as index:
        paths = known_locations(index, image_id)
        stored = index.catalogue.labels_for([image_id])[image_id]
    names = imagenet_labels()
    labels = [names[c] for c, _ in stored]
    return {"id": image_id, "paths": paths, "labels": labels, **image_urls(image_id)}


@image_routes.get(
    "/{image_id}/thumbnail",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
    summary="A JPEG thumbnail",
)
def thumbnail(state: State, image_id: ImageId) -> Response:
    path = state.locate(image_id)
    key = (image_id, path)
    data = state.thumbnails.get(key)
    if data is None:
        size, max_pixels = state.config.thumbnail_size, state.index.settings.max_pixels
        data = state.thumbnails.put(key, make_thumbnail(path, size, max_pixels))
    return Response(
        data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"}
    )


@image_routes.get(
    "/{image_id}/original",
    response_class=FileResponse,
    responses={200: {"content": {"image/*": {}}}},
    summary="The original file",
)
def original(state: State, image_id: ImageId) -> FileResponse:
    path = state.locate(image_id)
    return FileResponse(
        path,
        media_type=sniff_media_type(path),
        filename=os.path.basename(path),
        content_disposition_type="inline",
    )


@admin_routes.get("/info", summary="Collection statistics and server limits")
def info(state: State) -> dict:
    with state.reading() as index:
        stats = index.info()
        histogram = index.catalogue.label_histogram(top=1000)
    names = imagenet_labels()
    config = state.config
    return {
        **stats,
        "labels": [names[c] for c, _ in histogram],
        "read_only": config.token is None,
        "allow_private_urls": config.allow_private_urls,
        "limits": {
            "max_upload_bytes": config.max_upload_bytes,
            "max_pixels": config.max_pixels,
            "max_k": MAX_K,
        },
        "version": __version__,
    }


@admin_routes.post(
    "/index",
    status_code=202,
    dependencies=[Depends(require_token)],
    summary="Add server-side paths and/or re-index the indexed folders (needs the token)",
)
def start_indexing(state: State, body: IndexRequest) -> dict:
    paths = check_paths(body.paths)
    missing: list[str] = []
    if body.reindex:
        with state.reading() as index:
            known = list(index.catalogue.files_by_location())
        for folder in indexed_folders(known):
            (paths if os.path.isdir(folder) else missing).append(folder)
    if not paths:
        raise HTTPException(
            422, "nothing to index: give paths, or reindex=true on a non-empty index"
        )
    return state.start_job(paths, body.prune, missing).as_dict()


@admin_routes.get("/index", summary="Progress of the latest indexing run")
def indexing_status(state: State) -> dict:
    job = state.job
    return job.as_dict() if job else {"state": "idle"}


# --- errors ---------------------------------------------------------------------------------
def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", ""))
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Every failure becomes ``{"error": message}`` with a meaningful status code."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, _validation_message(exc))

    @app.exception_handler(LookalikeError)  # ImageError included: a bad image is a bad request
    async def lookalike_error(_: Request, exc: LookalikeError) -> JSONResponse:
        return error_response(400, str(exc))

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        return error_response(500, f"internal error ({type(exc).__name__})")


# --- middleware -----------------------------------------------------------------------------
class BodyLimit:
    """Refuse request bodies over ``max_bytes`` (413) before they are spooled to disk,
    whether or not the client sent a Content-Length."""

    def __init__(self, app: Any, max_bytes: int, upload_limit: int):
        self.app, self.max_bytes = app, max_bytes
        self.message = f"request too large: uploads are limited to {upload_limit:,} bytes"

    def _too_large(self) -> HTTPException:
        return HTTPException(413, self.message)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            exc = self._too_large()
            await error_response(exc.status_code, exc.detail)(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise self._too_large()  # FastAPI re-raises HTTPExceptions from body parsing
            return message

        await self.app(scope, limited_receive, send)


def host_name(header: str) -> str:
    """``Host`` header without its port: ``[::1]:8000`` -> ``[::1]``, ``a.b:80`` -> ``a.b``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[: header.find("]") + 1]
    return header.split(":", 1)[0]


class HostGuard:
    """Answer only to the expected host names (JSON 400 otherwise): on loopback this stops
    DNS rebinding, where a web page in the user's own browser reads their collection."""

    def __init__(self, app: Any, allowed: tuple[str, ...]):
        self.app, self.allowed = app, {name.lower() for name in allowed}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            host = host_name(dict(scope["headers"]).get(b"host", b"").decode("latin-1"))
            if host not in self.allowed:
                message = f"unexpected Host header '{host}': this server answers to {', '.join(sorted(self.allowed))}"
                await error_response(400, message)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class SecurityHeaders:
    """No MIME sniffing by browsers, no referrer leaks, no framing of the page."""

    HEADERS = (
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
    )

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers if scope["type"] == "http" else send)


# --- the app --------------------------------------------------------------------------------
def page() -> FileResponse:
    """The single-page UI; its strict CSP allows only this server's scripts and images."""
    return FileResponse(STATIC_DIR / "index.html", headers={"Content-Security-Policy": PAGE_CSP})


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
    )
    _mount_docs(app)
    app.state.lookalike = ServerState(index, config)
    install_error_handlers(app)
    for router in (search_routes, image_routes, admin_routes):
        app.include_router(router)
    app.add_api_route("/", page, include_in_schema=False)
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
