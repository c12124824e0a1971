"""``/api/images/{id}...``: an indexed image's details, thumbnail, original file, and
"more like this". Images are addressed only by id: no endpoint opens a path from a request,
and a file is served only while its content is the image that was indexed
(:meth:`~lookalike.server.state.ServerState.open_indexed`); an image indexed by URL is
fetched by the server and checked the same way (:mod:`lookalike.server.remote`)."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import BinaryIO
from urllib.parse import quote

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response, StreamingResponse
from PIL import Image

from ..embed.labels import imagenet_labels
from ..errors import ImageError
from ..images import load_image
from ..query.results import shown_path
from .dependencies import ImageId, State
from .models import ImageOut, SearchOut, details_out, image_urls, result_out
from .openapi import error_responses
from .remote import fetch_indexed, remote_locations
from .search_options import Options
from .state import known_locations

image_routes = APIRouter(prefix="/api/images", tags=["images"], responses=error_responses(404))


def make_thumbnail(source: str | BinaryIO, size: int, max_pixels: int) -> bytes:
    """A JPEG no larger than ``size`` on either side, of a path or an open file. 404 when it
    no longer decodes (the message names no path: it would be the server's)."""
    try:
        image = load_image(source, max_pixels=max_pixels, target_size=size)
    except ImageError:
        raise HTTPException(404, "the indexed file is no longer a readable image") from None
    image.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=2.0)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85, optimize=True)
    return buffer.getvalue()


def sniff_media_type(source: str | BinaryIO) -> str:
    """The media type from the file's content, so a renamed file is served as what it is
    (an open file is left at its start)."""
    try:
        with Image.open(source) as image:
            return Image.MIME.get(image.format or "", "application/octet-stream")
    except (OSError, ValueError, SyntaxError):
        raise HTTPException(404, "the indexed file is no longer a readable image") from None
    finally:
        if not isinstance(source, str):
            source.seek(0)


def _chunks(file: BinaryIO) -> Iterator[bytes]:
    with file:
        while chunk := file.read(1 << 16):
            yield chunk


def _inline(filename: str) -> str:
    """A Content-Disposition header that shows the file, with its name (RFC 6266)."""
    quoted = quote(filename)
    if quoted != filename:
        return f"inline; filename*=utf-8''{quoted}"
    return f'inline; filename="{filename}"'


@image_routes.get("/{image_id}/similar", response_model=SearchOut, summary="More like this")
def search_similar(state: State, options: Options, image_id: ImageId) -> dict:
    return result_out(state.search(image_id, options))


@image_routes.get("/{image_id}", response_model=ImageOut, summary="An indexed image's details")
def image_details(state: State, image_id: ImageId) -> dict:
    with state.reading() as index:
        paths = known_locations(index, image_id)
        stored = index.catalogue.labels_for([image_id])[image_id]
        details = index.catalogue.image_details(image_id)
    if details is None:  # its files were forgotten since known_locations
        raise HTTPException(404, f"no indexed image with id {image_id}")
    names = imagenet_labels()
    labels = [names[c] for c, _ in stored]
    return {
        "id": image_id,
        "paths": paths,
        "labels": labels,
        **details_out(details),
        **image_urls(image_id),
    }


@image_routes.get(
    "/{image_id}/thumbnail",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}},
    summary="A JPEG thumbnail",
)
def thumbnail(state: State, image_id: ImageId) -> Response:
    size, max_pixels = state.config.thumbnail_size, state.index.settings.max_pixels
    urls = remote_locations(state, image_id)
    if urls:  # indexed by reference: fetched once, then cached like a file's
        data = state.thumbnails.get((image_id, urls[0]))
        if data is None:
            url, body = fetch_indexed(state, image_id, urls)
            data = state.thumbnails.put((image_id, url), make_thumbnail(io.BytesIO(body), size, max_pixels))
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})
    path, file = state.open_indexed(image_id)
    with file:
        key = (image_id, path)
        data = state.thumbnails.get(key)
        if data is None:
            data = state.thumbnails.put(key, make_thumbnail(file, size, max_pixels))
    return Response(
        data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"}
    )


@image_routes.get(
    "/{image_id}/original",
    response_class=StreamingResponse,
    responses={200: {"content": {"image/*": {}}}},
    summary="The original file",
)
def original(state: State, image_id: ImageId) -> Response:
    urls = remote_locations(state, image_id)
    if urls:
        url, body = fetch_indexed(state, image_id, urls)
        name = _inline(url.rstrip("/").rsplit("/", 1)[-1] or "image")
        return Response(body, media_type=sniff_media_type(io.BytesIO(body)),
                        headers={"Content-Disposition": name})
    path, file = state.open_indexed(image_id)
    try:
        media_type = sniff_media_type(file)
        size = os.fstat(file.fileno()).st_size
    except BaseException:
        file.close()
        raise
    headers = {"Content-Length": str(size), "Content-Disposition": _inline(shown_path(os.path.basename(path)))}
    return StreamingResponse(_chunks(file), media_type=media_type, headers=headers)
