"""The JSON the API accepts and returns: pydantic models (they document /docs) and the
functions that shape search results and images into it."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ..query.results import Match, SearchResult


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


def image_urls(image_id: int) -> dict[str, str]:
    """Where the page fetches an image: indexed images are only ever addressed by id."""
    base = f"/api/images/{image_id}"
    return {"thumbnail_url": f"{base}/thumbnail", "original_url": f"{base}/original"}


def match_out(match: Match) -> dict:
    """One match as :class:`MatchOut`."""
    return {**match.as_dict(), "id": match.image_id, **image_urls(match.image_id)}


def result_out(result: SearchResult, query: str | None = None) -> dict:
    """A search result as :class:`SearchOut`; ``query`` names an upload or URL."""
    return {
        "query": query if query is not None else result.query,
        "query_labels": result.query_labels,
        "route": result.route,
        "matches": [match_out(m) for m in result.matches],
    }
