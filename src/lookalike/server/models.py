"""The JSON the API accepts and returns: pydantic models (they document /docs) and the
functions that shape search results and images into it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from ..errors import ImageError
from ..images import image_header
from ..index.catalogue_browse import BrowsedImage
from ..query.results import Match, SearchResult, path_fields, shown_path

BYTES_NOTE = "base64 of the raw bytes, only for file names that are not valid UTF-8"
UNKNOWN_SIZE = "null when unknown (indexed by an older version, and the file cannot be read now)"


class _OmitsAbsentBytes(BaseModel):
    """``*_bytes`` fields are left out of the JSON unless set (most names are valid UTF-8),
    and so is ``matched_labels`` (only a label filter or a text query sets it)."""

    @model_serializer(mode="wrap")
    def _omit_absent_bytes(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        optional = [k for k in data if k.endswith("_bytes") or k == "matched_labels"]
        for key in [k for k in optional if data[k] is None]:
            del data[key]
        return data


class MatchOut(_OmitsAbsentBytes):
    """The CLI's JSON match fields plus what the page needs to show and open the image.
    ``path`` shows undecodable bytes of a file name escaped as ``\\xNN``."""

    rank: int
    path: str
    path_bytes: str | None = Field(None, description=BYTES_NOTE)
    score: float
    labels: list[str]
    kind: Literal["copy", "similar"] = Field(
        description="copy: spatial verification found the same picture (copies come first)"
    )
    inliers: int | None = Field(
        description="matching points found by spatial verification (null: not checked)"
    )
    why: str = Field(description='why the match is here, for people: "same picture, 212 '
                     'matching points" or "similar"')
    matched_labels: list[str] | None = Field(
        None, description="the labels that a label filter or a text query chose this match "
        "by; only then"
    )
    id: int
    thumbnail_url: str
    original_url: str


class SearchOut(BaseModel):
    query: str
    query_labels: list[str]
    route: str
    matches: list[MatchOut]


class ErrorOut(BaseModel):
    """The one shape of every error the server sends."""

    error: str = Field(description="one line saying what went wrong and what to do")


class FileDetails(BaseModel):
    """What the viewer shows about an image and its first file (by path)."""

    width: int | None = Field(description=f"pixels at full resolution; {UNKNOWN_SIZE}")
    height: int | None = Field(description=f"pixels at full resolution; {UNKNOWN_SIZE}")
    added_at: float = Field(description="when it was indexed, seconds since the Unix epoch")
    size: int = Field(description="the first file's size in bytes")
    modified: float = Field(description="the first file's mtime, seconds since the Unix epoch")


class ImageOut(_OmitsAbsentBytes, FileDetails):
    id: int
    paths: list[str]
    paths_bytes: list[str | None] | None = Field(
        None, description=f"for each of paths: {BYTES_NOTE} (else null); only if one is such"
    )
    labels: list[str]
    thumbnail_url: str
    original_url: str

    @model_validator(mode="before")
    @classmethod
    def _shown_paths(cls, data: Any) -> Any:
        """Paths as :func:`~lookalike.query.results.shown_path` text, raw bytes aside."""
        if isinstance(data, dict) and data.get("paths") and "paths_bytes" not in data:
            fields = [path_fields(p) for p in data["paths"]]
            data = {**data, "paths": [f["path"] for f in fields]}
            if any("path_bytes" in f for f in fields):
                data["paths_bytes"] = [f.get("path_bytes") for f in fields]
        return data


class BrowseItem(_OmitsAbsentBytes, FileDetails):
    """One image of a browse page: its first file by path."""

    id: int
    path: str
    path_bytes: str | None = Field(None, description=BYTES_NOTE)
    thumbnail_url: str
    original_url: str


class BrowseOut(BaseModel):
    total: int = Field(description="images matching the filter, over all pages")
    offset: int
    limit: int
    order: str
    images: list[BrowseItem]


class UrlQuery(BaseModel):
    url: str = Field(description="http(s) URL of the query image", max_length=4096)


class IndexRequest(BaseModel):
    paths: list[str] = Field(default_factory=list, description="absolute paths on the server")
    reindex: bool = Field(False, description="also rescan the folders already indexed")
    prune: bool = Field(True, description="forget files that were deleted from these folders")
    urls: list[str] = Field(default_factory=list, description="http(s) images to index by reference")
    exclude: list[str] = Field(default_factory=list, description="globs of files and folders to skip")


def image_urls(image_id: int) -> dict[str, str]:
    """Where the page fetches an image: indexed images are only ever addressed by id."""
    base = f"/api/images/{image_id}"
    return {"thumbnail_url": f"{base}/thumbnail", "original_url": f"{base}/original"}


def details_out(image: BrowsedImage) -> dict:
    """An image's :class:`FileDetails`."""
    width, height = pixel_size(image)
    return {
        "width": width,
        "height": height,
        "added_at": image.added_at,
        "size": image.size,
        "modified": image.mtime_ns / 1e9,
    }


def pixel_size(image: BrowsedImage) -> tuple[int, int] | tuple[None, None]:
    """The stored size at full resolution; for an image indexed before catalogue format 7
    (stored as 0 x 0), its first file's header, read now (None where it cannot be)."""
    if image.width and image.height:
        return image.width, image.height
    try:
        return image_header(image.location)[0]
    except ImageError:
        return None, None


def browse_item_out(image: BrowsedImage) -> dict:
    """One image of a browse page as :class:`BrowseItem`."""
    return {
        "id": image.image_id,
        **path_fields(image.location),
        **details_out(image),
        **image_urls(image.image_id),
    }


def match_out(match: Match) -> dict:
    """One match as :class:`MatchOut`."""
    return {**match.as_dict(), "id": match.image_id, **image_urls(match.image_id)}


def result_out(result: SearchResult, query: str | None = None) -> dict:
    """A search result as :class:`SearchOut`; ``query`` names an upload or URL."""
    return {
        "query": query if query is not None else shown_path(result.query),
        "query_labels": result.query_labels,
        "route": result.route,
        "matches": [match_out(m) for m in result.matches],
    }
