"""``GET /api/search/text`` (tag search by words) and ``GET /api/tags`` (the words to
suggest as someone types). Not CLIP: words name ImageNet classes through WordNet and images
are ranked by their stored label probabilities (:mod:`lookalike.query.text`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel

from ..embed.tags import parse_text
from ..errors import LookalikeError
from ..query.text import SUGGESTIONS
from .dependencies import State
from .models import SearchOut, result_out
from .search_options import Options

tag_routes = APIRouter(prefix="/api", tags=["search"])
MAX_SUGGESTIONS = 100


class TagOut(BaseModel):
    word: str
    classes: int
    images: int


class TagsOut(BaseModel):
    tags: list[TagOut]


@tag_routes.get("/search/text", response_model=SearchOut, summary="Search by words (tags)")
def search_text(
    state: State,
    options: Options,
    q: Annotated[str, Query(min_length=1, max_length=200, description='words, e.g. "dog on a sofa"')],
) -> dict:
    """Images ranked by their stored label probabilities for the classes the words name;
    an unknown word is a 422 that lists the closest known words."""
    try:
        parse_text(q)
    except LookalikeError as exc:
        raise HTTPException(422, str(exc)) from None
    with state.reading() as index:
        result = index.search_text(q, options=options)
    return result_out(result, query=q)


@tag_routes.get("/tags", response_model=TagsOut, summary="Words to suggest for tag search")
def tags(
    state: State,
    prefix: Annotated[str, Query(max_length=100, description="only words starting with this")] = "",
    limit: Annotated[int, Query(ge=1, le=MAX_SUGGESTIONS, description="how many words")] = SUGGESTIONS,
) -> dict:
    """Known words starting with ``prefix``, those naming the most images here first."""
    with state.reading() as index:
        return {"tags": index.tags(prefix, limit)}
