"""The cascade: runs a query's stages in order and turns the ranking into scored ids.

Every query goes the same way: candidates (label filter, routing), the first cosine search
in the store's space, then each stage of the pipeline (:mod:`lookalike.query.spec`), then
the verified copies first (most matching points first), then the rest in the order of the
last re-ranking, the first ``k`` kept, each with its cosine score. This is the
public ranking that :meth:`lookalike.Index.rank`, :mod:`lookalike.evaluate` and the
benchmarks use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..index.catalogue import Catalogue
from .candidates import candidate_ids
from .options import SearchOptions
from .stages import Collection, Query, Ranking, Stage
from .threads import one_blas_thread

if TYPE_CHECKING:
    from ..settings import VerifyParams
    from ..verify import Features


@dataclass(frozen=True)
class Cosine:
    """``cosine``: the first ranking, by cosine similarity in the store's (transformed) space."""

    kind = "first"
    spec = "cosine"

    def depth(self, collection: Collection) -> int:
        return 0

    def apply(self, query: Query, ranking: Ranking, collection: Collection) -> None:
        """The first search is made by the cascade (it needs every stage's depth first)."""


@dataclass
class Ranked:
    """One query's ranking: image ids best first, their cosine scores, the matching-point
    counts of the candidates spatial verification checked, what count makes a copy, and the
    route taken (see :class:`~lookalike.query.results.SearchResult`)."""

    ids: np.ndarray
    scores: np.ndarray
    inliers: dict[int, int] = field(default_factory=dict)
    route: str = "global"
    min_inliers: int = 0  # VerifyParams.min_inliers (0: nothing is a copy)

    def pairs(self) -> list[tuple[int, float]]:
        return list(zip(self.ids.tolist(), self.scores.tolist(), strict=True))

    def is_copy(self, image_id: int) -> bool:
        """Whether verification found ``image_id`` to show the same picture as the query."""
        return 0 < self.min_inliers <= self.inliers.get(image_id, 0)


class Cascade:
    """A query pipeline: the stages of a spec string, in order."""

    def __init__(self, stages: Sequence[Stage]):
        self.stages = list(stages)

    @property
    def spec(self) -> str:
        return ",".join(stage.spec for stage in self.stages)

    def __repr__(self) -> str:
        return f"Cascade({self.spec!r})"

    def query_features(self, pictures: Sequence[Image.Image], params: VerifyParams) -> list[Features | None]:
        """The local features the stages will extract from each query picture (None: the
        pipeline verifies nothing, or the picture is too small to verify), extracted now."""
        from ..verify import extract

        verifies = any(stage.kind == "verify" for stage in self.stages)
        return [extract(p, params) if verifies and _big_enough(p, params.min_side) else None
                for p in pictures]

    def prepare(self, collection: Collection) -> None:
        """Load what the stages will read: the store (the first search's), and what a stage
        with a ``prepare`` reads besides."""
        _ = collection.store  # (opening it loads it)
        for stage in self.stages:
            prepare = getattr(stage, "prepare", None)
            if prepare is not None:
                prepare(collection)

    def rank(self, query: Query, collection: Collection) -> Ranked:
        """The first ``query.k`` matches of one query (without the excluded image)."""
        skip = query.skip
        depth = max([query.k + skip] + [stage.depth(collection) + skip for stage in self.stages])
        store = collection.store
        scores, ids = store.inner.search(query.vector[None, :], depth, candidates=query.allowed)
        scores, ids = scores[0], ids[0]
        if query.exclude is not None:
            keep = ids != query.exclude
            scores, ids = scores[keep], ids[keep]
        ranking = Ranking(ids, scores, order=ids, min_inliers=collection.settings.verify.min_inliers)
        for stage in self.stages:
            stage.apply(query, ranking, collection)
        order = np.asarray(ranking.verified_first()[: query.k], dtype=np.int64)
        scored = _cosines(order, ids, scores, query.vector, store)
        return Ranked(order, scored, ranking.inliers, min_inliers=ranking.min_inliers)


def _cosines(order: np.ndarray, ids: np.ndarray, scores: np.ndarray, query: np.ndarray, store) -> np.ndarray:
    """Scores stay cosines to the query: from the first search, else computed."""
    sorter = np.argsort(ids, kind="stable")
    pos = sorter[np.clip(np.searchsorted(ids, order, sorter=sorter), 0, max(len(ids) - 1, 0))]
    found = ids[pos] == order if len(ids) else np.zeros(len(order), bool)
    out = np.zeros(len(order), dtype=np.float32)
    out[found] = scores[pos[found]]
    if not found.all():
        out[~found] = store.vectors(order[~found]) @ query
    return out


def rank_queries(
    cascade: Cascade,
    collection: Collection,
    catalogue: Catalogue,
    vectors: np.ndarray,
    label_ids: np.ndarray,
    options: SearchOptions,
    *,
    pictures: Sequence[Callable[[], Image.Image | None]] | None = None,
    exclude: Sequence[int] | None = None,
    features: Sequence[Features | None] | None = None,
) -> list[Ranked]:
    """Rank raw query descriptors (``vectors``, with their predicted ``label_ids``).

    ``pictures[i]()`` loads query ``i``'s picture for verification (``features[i]``: its
    local features, if extracted already); ``exclude[i]`` is an indexed image left out of
    query ``i``'s ranking ("each image against the rest").
    """
    with one_blas_thread():
        return [
            _rank_one(cascade, collection, catalogue, vector, query_labels, options,
                      None if pictures is None else pictures[number],
                      None if exclude is None else int(exclude[number]),
                      None if features is None else features[number])
            for number, (vector, query_labels) in enumerate(
                zip(np.atleast_2d(vectors), label_ids, strict=False)
            )
        ]


def _rank_one(
    cascade: Cascade, collection: Collection, catalogue: Catalogue, vector: np.ndarray,
    query_labels: np.ndarray, options: SearchOptions,
    picture: Callable[[], Image.Image | None] | None, exclude: int | None,
    features: Features | None = None,
) -> Ranked:
    """One query of :func:`rank_queries`."""
    allowed, route = candidate_ids(
        catalogue, label=options.label, route=options.route,
        query_label_ids=query_labels, k=options.k,
    )
    query = Query(collection.store.transform.apply(vector[None, :])[0], options.k, allowed,
                  exclude=exclude, _features=features)
    if picture is not None:
        query.picture = _verifiable(picture, collection.settings.verify.min_side)
    ranked = cascade.rank(query, collection)
    ranked.route = route
    if options.min_score is not None:
        keep = ranked.scores >= options.min_score
        ranked.ids, ranked.scores = ranked.ids[keep], ranked.scores[keep]
    return ranked


def _verifiable(
    load: Callable[[], Image.Image | None], min_side: int
) -> Callable[[], Image.Image | None]:
    """``load``, giving None (no spatial verification: the descriptor alone ranks) for a
    picture whose shorter side is too small to cut into the regions verification compares."""

    def picture() -> Image.Image | None:
        image = load()
        return image if image is not None and _big_enough(image, min_side) else None

    return picture


def _big_enough(image: Image.Image, min_side: int) -> bool:
    """Whether ``image`` can be cut into the regions spatial verification compares."""
    return min(image.size) >= min_side
