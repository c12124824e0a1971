"""``GET /api/images``: the collection page by page, for the page's browse grid (newest
first or by folder, optionally only images with some labels)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from ..index.catalogue_browse import BROWSE_ORDERS
from .dependencies import State
from .models import BrowseOut, browse_item_out
from .search_options import Labels, resolve_labels

MAX_PAGE = 200  # most images one page may list

browse_routes = APIRouter(prefix="/api", tags=["images"])


@browse_routes.get("/images", response_model=BrowseOut, summary="The indexed images, paged")
def browse(
    state: State,
    label: Labels = None,
    offset: Annotated[int, Query(ge=0, le=2**62, description="images to skip")] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="images per page")] = 60,
    order: Annotated[
        Literal[tuple(BROWSE_ORDERS)],  # type: ignore[valid-type]
        Query(description="added: newest first; folder: by path"),
    ] = "added",
) -> dict:
    class_ids = resolve_labels(label)
    with state.reading() as index:
        total, images = index.catalogue.browse(offset, limit, order, class_ids)
    return {
        "total": total,
        "offset": offset,
        "limit": limit,
        "order": order,
        "images": [browse_item_out(image) for image in images],
    }
