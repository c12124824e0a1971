"""Per-query options over HTTP: the query string becomes one
:class:`~lookalike.query.options.SearchOptions`, and :func:`search_index` is the one place
that hands it to the :class:`~lookalike.Index`.

Help texts say what each option does; the schema shows the defaults, read from
:class:`SearchOptions` (``None``: the index's settings decide, as in the CLI).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Query
from PIL import Image

from ..api import Index
from ..errors import LookalikeError
from ..query.candidates import label_classes
from ..query.options import RERANK_METHODS, ROUTES, SearchOptions
from ..query.results import SearchResult
from ..query.spec import parse
from .config import MAX_K, MAX_REGIONS, MAX_VERIFY, MAX_WORDS

_INDEX_DEFAULT = "(default: the index's setting)"
_default = SearchOptions.default


Labels = Annotated[
    list[str] | None,
    Query(description="keep images with a label one of these words names: an ImageNet "
          "label or a broader word such as dog (repeatable; GET /api/tags lists words)"),
]


def resolve_labels(labels: list[str] | None) -> list[int] | None:
    """Class ids the label words name (None: no filter); an unknown one is a 422 with hints."""
    try:
        return sorted(label_classes(labels)) if labels else None
    except LookalikeError as exc:
        raise HTTPException(422, str(exc)) from None


def search_options(
    k: Annotated[int, Query(ge=1, le=MAX_K, description="how many matches")] = _default("k"),
    label: Labels = None,
    min_score: Annotated[
        float | None,
        Query(ge=-1.0, le=1.0, description="drop matches whose cosine similarity is below this"),
    ] = _default("min_score"),
    route: Annotated[
        Literal[ROUTES],  # the choices, from their one source
        Query(
            description="global: every image; categories: only images sharing a predicted "
            "ImageNet category with the query (every image when too few do)"
        ),
    ] = _default("route"),
    pipeline: Annotated[
        str | None,
        Query(
            max_length=200,
            description="the ranking stages as a spec string, e.g. cosine,qe,verify:5 "
            f"(docs/descriptor.md) {_INDEX_DEFAULT}",
        ),
    ] = _default("pipeline"),
    rerank: Annotated[
        Literal[RERANK_METHODS] | None,
        Query(
            description="re-ranking of the cosine ranking: auto picks diffusion or query "
            f"expansion by collection size; none: off {_INDEX_DEFAULT}"
        ),
    ] = _default("rerank"),
    verify: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_VERIFY,
            description=f"spatially verify this many first matches; 0: off {_INDEX_DEFAULT}",
        ),
    ] = _default("verify"),
    regions: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_REGIONS,
            description="regional candidates to verify when none of the first matches is a "
            f"sure copy; 0: off {_INDEX_DEFAULT}",
        ),
    ] = _default("regions"),
    words: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_WORDS,
            description="visual-word candidates to verify with the first matches; 0: off "
            f"{_INDEX_DEFAULT}",
        ),
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
            pipeline=pipeline,
            rerank=rerank,
            verify=verify,
            regions=regions,
            words=words,
        )
        resolve_labels(label)
        if options.pipeline is not None:
            parse(options.pipeline)
    except LookalikeError as exc:
        raise HTTPException(422, str(exc)) from None
    return options


Options = Annotated[SearchOptions, Depends(search_options)]


def search_index(index: Index, query: Image.Image | int, options: SearchOptions) -> SearchResult:
    """Search ``index`` for an image or, given an id, for more like an indexed image (call
    with the index lock held)."""
    if isinstance(query, int):
        return index.search_by_id(query, options=options)
    return index.search(query, options=options)
