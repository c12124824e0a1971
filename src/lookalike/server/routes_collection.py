"""``/api/info`` and ``/api/index``: collection statistics and server limits, and indexing
server-side paths and web images (by URL) in the background (the write endpoint; its caller holds the token and is
trusted with server paths)."""

from __future__ import annotations

import os

from fastapi import APIRouter, Depends, HTTPException

from ..discovery import is_under
from ..embed.labels import imagenet_labels
from ..images import is_url
from ..sources import read_url_list
from ..version import __version__
from .config import MAX_K
from .dependencies import State, require_token
from .models import IndexRequest
from .openapi import error_responses

collection_routes = APIRouter(prefix="/api", tags=["collection"])


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


@collection_routes.get("/info", summary="Collection statistics and server limits")
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


@collection_routes.post(
    "/index",
    status_code=202,
    dependencies=[Depends(require_token)],
    responses=error_responses(401, 403, 409, 413),
    summary="Add server-side paths and/or re-index the indexed folders (needs the token)",
)
def start_indexing(state: State, body: IndexRequest) -> dict:
    paths, urls = check_paths(body.paths), read_url_list(body.urls)
    missing: list[str] = []
    if body.reindex:
        with state.reading() as index:
            known = list(index.catalogue.files_by_location())
        urls += [loc for loc in known if is_url(loc) and loc not in urls]  # asked again
        for folder in indexed_folders([loc for loc in known if not is_url(loc)]):
            (paths if os.path.isdir(folder) else missing).append(folder)
    if not paths and not urls:
        raise HTTPException(
            422, "nothing to index: give paths or urls, or reindex=true on a non-empty index"
        )
    return state.start_job(paths, body.prune, missing, urls=urls, exclude=body.exclude).as_dict()


@collection_routes.get("/index", summary="Progress of the latest indexing run")
def indexing_status(state: State) -> dict:
    job = state.job
    return job.as_dict() if job else {"state": "idle"}
