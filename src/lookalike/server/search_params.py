"""The query parameters every search endpoint shares, as one :class:`SearchParams`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Query

from ..errors import LookalikeError
from ..search import resolve_label
from .config import MAX_K


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
            "labels": self.labels, "route": self.route, "min_score": self.min_score,
            "rerank": self.rerank, "verify": self.verify, "regions": self.regions,
            "words": self.words,
        }


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

