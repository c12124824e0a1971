"""``POST /api/search`` and ``/api/search/url``: search by an uploaded image or an image URL.

Endpoints are plain ``def`` functions, so FastAPI runs them in its threadpool: decoding and
embedding are CPU-bound and must not block the event loop. Decoding happens outside the
index lock.
"""

from __future__ import annotations

import io
from typing import Annotated

from fastapi import APIRouter, File, HTTPException, UploadFile
from PIL import Image

from ..errors import ImageError
from ..fetch import load_image_url
from ..images import load_image
from .dependencies import State
from .models import SearchOut, UrlQuery, result_out
from .openapi import error_responses
from .search_options import Options
from .state import ServerState

search_routes = APIRouter(prefix="/api", tags=["search"], responses=error_responses(413))


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


@search_routes.post("/search", response_model=SearchOut, summary="Search by an uploaded image")
def search_upload(
    state: State,
    options: Options,
    file: Annotated[UploadFile, File(description="the query image (JPEG, PNG, WebP, GIF, TIFF, BMP, ...)")],
) -> dict:
    result = state.search(decode_upload(state, file), options)
    return result_out(result, query=file.filename or "<upload>")


@search_routes.post("/search/url", response_model=SearchOut, summary="Search by an image URL")
def search_url(state: State, options: Options, body: UrlQuery) -> dict:
    result = state.search(fetch_url(state, body.url), options)
    return result_out(result, query=body.url)
