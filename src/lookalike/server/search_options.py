"""Per-query options over HTTP: the query string becomes one
:class:`~lookalike.query.options.SearchOptions`, and :func:`search_index` is the one place
that hands it to the :class:`~lookalike.Index`.

The schema shows the defaults, read from :class:`SearchOptions` (``None``: the index's
settings decide, as in the CLI).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Query
from PIL import Image

from ..api import Index
from ..errors import LookalikeError
from ..query.options import SearchOptions
from ..search import SearchResult, resolve_label
from .config import MAX_K

_default = SearchOptions.default


def search_options(
    k: Annotated[int, Query(ge=1, le=MAX_K, description="how many matches")] = _default("k"),
    label: Annotated[
        list[str] | None, Query(description="keep images with one of these ImageNet labels")
    ] = None,
    min_score: Annotated[
        float | None, Query(ge=-1.0, le=1.0, description="drop matches scoring below this")
    ] = _default("min_score"),
    route: Literal["global", "categories"] = _default("route"),
    rerank: Annotated[
        Literal["auto", "diffusion", "qe", "none"] | None,
        Query(description="re-ranking (default: the index's, auto: diffusion for 500-50,000 images, else qe)"),
    ] = _default("rerank"),
    verify: Annotated[
        int | None,
        Query(ge=0, le=100, description="spatially verify this many first matches (default 20; 0: off)"),
    ] = _default("verify"),
    regions: Annotated[
        int | None,
        Query(ge=0, le=50, description="regional candidates to verify when none of those verifies surely, with 60+ inliers (default 10; 0: off)"),
    ] = _default("regions"),
    words: Annotated[
        int | None,
        Query(ge=0, le=100, description="visual-word candidates to verify with the first matches (default 10; 0: off)"),
    ] = _default("words"),
) -> SearchOptions:
    """The query parameters as :class:`SearchOptions`; bad values, unknown labels included,
    are a 422 here rather than a 400 later."""
    try:
        options = SearchOptions(
            k=k,
            label=tuple(label) if label else None,
            route=route,
            min_score=min_score,
            rerank=rerank,
            verify=verify,
            regions=regions,
            words=words,
        )
        for name in options.label or ():
            resolve_label(name)
    except LookalikeError as exc:
        raise HTTPException(422, str(exc)) from None
    return options


Options = Annotated[SearchOptions, Depends(search_options)]


def search_index(index: Index, query: Image.Image | int, options: SearchOptions) -> SearchResult:
    """Search ``index`` for an image or, given an id, for more like an indexed image.

    The only call into the Index's search API, so its move to ``options=`` changes one place.
    Call with the index lock held.
    """
    # TODO(api): index.search(image, options=options) / index.search_by_id(image_id, options=options)
    kwargs = {
        "labels": list(options.label) if options.label else None,
        "route": options.route,
        "min_score": options.min_score,
        "rerank": options.rerank,
        "verify": options.verify,
        "regions": options.regions,
        "words": options.words,
    }
    if isinstance(query, int):
        return index.search_by_id(query, options.k, **kwargs)
    return index.search(query, options.k, **kwargs)
