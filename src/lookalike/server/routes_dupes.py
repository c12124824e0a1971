"""``/api/dupes``: groups of duplicate files, a page at a time; storing the check of newly
added images, and marking a group "not a duplicate" (writes: they need the token). A GET
writes nothing: images added since the last stored check are checked for its answer only.
Nothing is ever deleted through the API."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from ..dupes import checks_in_memory, pending
from ..settings import DEFAULT_DUPE_LEVEL, DUPE_LEVELS
from .dependencies import State, require_token
from .models import image_urls
from .openapi import error_responses

dupes_routes = APIRouter(prefix="/api/dupes", tags=["duplicates"])


class NotDuplicateRequest(BaseModel):
    image_ids: list[int] = Field(min_length=2, max_length=1000,
                                 description="images that are not duplicates of each other (a group's image_ids)")


@dupes_routes.get("", summary="Groups of duplicate files, a page at a time")
def duplicates(
    state: State,
    level: Literal[DUPE_LEVELS] = DEFAULT_DUPE_LEVEL,  # type: ignore[valid-type]
    offset: int = Query(0, ge=0, description="groups to skip"),
    limit: int | None = Query(None, ge=1, le=500, description="groups per page (default: the index's setting)"),
    min_group: int | None = Query(None, ge=2, le=10_000, description="only groups of at least this many files (default: the index's setting)"),
) -> dict:
    with state.reading() as index:
        unchecked = pending(index.folder) if level != "exact" else 0
        groups = index.duplicates(level, min_group=min_group, save=False)
        limit = limit or index.settings.dupes.page_size
        included = checks_in_memory(unchecked, index.settings.dupes)
    page = []
    for group in groups[offset : offset + limit]:
        out = group.as_dict()
        out["files"] = [{**f, **image_urls(f["image_id"])} for f in out["files"]]
        page.append(out)
    return {"level": level, "total_groups": len(groups), "offset": offset, "limit": limit,
            "pending": unchecked, "pending_included": included, "groups": page}


@dupes_routes.post(
    "/check",
    dependencies=[Depends(require_token)],
    responses=error_responses(401, 403),
    summary="Check the images added since the last stored check and store their pairs (needs the token)",
)
def check(state: State) -> dict:
    with state.reading() as index:
        checked = pending(index.folder)
        index.duplicates(min_group=2)
        return {"checked": checked, "pending": pending(index.folder)}


@dupes_routes.post(
    "/not-duplicate",
    dependencies=[Depends(require_token)],
    responses=error_responses(400, 401, 403),
    summary="Mark images as not duplicates of each other (needs the token); survives re-indexing",
)
def not_duplicate(state: State, body: NotDuplicateRequest) -> dict:
    with state.reading() as index:
        marked = index.not_duplicate(body.image_ids)
    return {"marked_pairs": marked}
