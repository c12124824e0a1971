"""Re-ranking stages: alpha query expansion, diffusion, and ``auto`` which picks one.

* ``qe[:n]``: the query becomes ``L2(q + sum_{i<n} max(s_i, 0)^alpha x_i)`` over its ``n``
  best matches and the store is searched again; it needs nothing at index time.
* ``diffusion[:depth]``: the first ``depth`` matches re-ordered by diffusion on the
  collection's neighbour graph (:class:`lookalike.index.graph.KnnGraph`), the cosine top-1
  kept first (:func:`pin_first`). Below ``RerankParams.min_images`` images the graph means
  little and query expansion is used instead.
* ``auto``: diffusion for collections of ``RerankParams.min_images`` to ``max_images``
  images, where its graph is affordable, query expansion outside that range.

Re-ranking only changes the *order*; a match's score stays its cosine similarity to the
query, so ``min_score`` keeps its meaning. Why these methods and parameters:
docs/descriptor.md.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..embed.pooling import l2_normalise
from ..settings import RerankParams
from .stages import Collection, Query, Ranking


def expand_query(
    query: np.ndarray, scores: np.ndarray, vectors: np.ndarray, n: int, alpha: float
) -> np.ndarray:
    """Alpha query expansion of one query with its best matches (``scores``, ``vectors``)."""
    n = min(n, len(scores))
    if n == 0:
        return query
    weights = np.maximum(scores[:n], 0.0) ** alpha
    expanded = query + weights @ vectors[:n]
    return l2_normalise(expanded[None, :])[0]


def pin_first(order: np.ndarray, ids: np.ndarray, exclude: int | None = None) -> np.ndarray:
    """``order`` with the cosine ranking's first id (``ids[0]``, skipping ``exclude``) first.

    Diffusion spreads a query's score over its neighbours' neighbours, which helps category
    browsing but demotes a lone near-copy of the query that has no "class" to support it.
    Keeping the cosine top-1 in place restores instance recall@1 at a negligible class-level
    cost (docs/descriptor.md).
    """
    first = next((int(i) for i in ids if exclude is None or int(i) != exclude), None)
    if first is None:
        return order
    return np.concatenate([[first], order[order != first]]).astype(order.dtype, copy=False)


def _without(order: np.ndarray, exclude: int | None) -> np.ndarray:
    return order if exclude is None else order[order != exclude]


@dataclass(frozen=True)
class QueryExpansion:
    """``qe[:n]``: search again with the query expanded by its ``n`` best matches."""

    n: int | None = None
    kind = "rerank"

    @property
    def spec(self) -> str:
        return "qe" if self.n is None else f"qe:{self.n}"

    def params(self, collection: Collection) -> RerankParams:
        params = collection.settings.rerank
        return params if self.n is None else replace(params, qe_n=self.n)

    def depth(self, collection: Collection) -> int:
        return self.params(collection).qe_n

    def apply(self, query: Query, ranking: Ranking, collection: Collection) -> None:
        ranking.order = _without(self.reorder(query, ranking, collection), query.exclude)

    def reorder(self, query: Query, ranking: Ranking, collection: Collection) -> np.ndarray:
        ids, scores = ranking.ids, ranking.scores
        if len(ids) == 0:
            return ids[: query.k + query.skip]
        params = self.params(collection)
        keep = ids != query.exclude if query.exclude is not None else np.ones(len(ids), bool)
        top_ids, top_scores = ids[keep][: params.qe_n], scores[keep][: params.qe_n]
        store = collection.store
        expanded = expand_query(
            query.vector, top_scores, store.vectors(top_ids), params.qe_n, params.qe_alpha
        )
        _, new_ids = store.inner.search(expanded[None, :], query.k + query.skip, query.allowed)
        return new_ids[0]


@dataclass(frozen=True)
class Diffusion:
    """``diffusion[:depth]``: re-order the first ``depth`` matches on the neighbour graph."""

    depth_: int | None = None
    kind = "rerank"

    @property
    def spec(self) -> str:
        return "diffusion" if self.depth_ is None else f"diffusion:{self.depth_}"

    def params(self, collection: Collection) -> RerankParams:
        params = collection.settings.rerank
        return params if self.depth_ is None else replace(params, depth=self.depth_)

    def depth(self, collection: Collection) -> int:
        return self.params(collection).depth

    def prepare(self, collection: Collection) -> None:
        collection.graph()

    def apply(self, query: Query, ranking: Ranking, collection: Collection) -> None:
        ids = ranking.ids
        if len(ids) == 0:
            ranking.order = ids[: query.k + query.skip]
            return
        params = self.params(collection)
        graph = collection.graph()
        if len(graph) < params.min_images:  # too few images for a meaningful graph
            QueryExpansion().apply(query, ranking, collection)
            return
        order = graph.diffuse(ids, ranking.scores, params, exclude=query.exclude)
        order = pin_first(order, ids, query.exclude)[: query.k + query.skip]
        ranking.order = _without(order, query.exclude)


@dataclass(frozen=True)
class Auto:
    """``auto``: diffusion where the collection's size suits its graph, else query expansion."""

    kind = "rerank"
    spec = "auto"

    def resolve(self, collection: Collection) -> Diffusion | QueryExpansion:
        params = collection.settings.rerank
        if params.min_images <= len(collection.store) <= params.max_images:
            return Diffusion()
        return QueryExpansion()

    def depth(self, collection: Collection) -> int:
        return self.resolve(collection).depth(collection)

    def prepare(self, collection: Collection) -> None:
        if isinstance(chosen := self.resolve(collection), Diffusion):
            chosen.prepare(collection)

    def apply(self, query: Query, ranking: Ranking, collection: Collection) -> None:
        self.resolve(collection).apply(query, ranking, collection)
