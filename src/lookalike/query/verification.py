"""Spatial verification stages: do the candidates show the *same* picture as the query?

* ``verify:N`` checks the first ``N`` matches of the cosine ranking (the list most likely
  to hold the original of an edited copy);
* ``words:N`` also checks the ``N`` images that share the most visual words with the query
  (:mod:`lookalike.index.words`): originals of thumbnails, small crops and blurred copies
  whose global descriptor changed too much;
* ``regions:N`` runs when no candidate so far is a *sure* copy (``VerifyParams.
  sure_inliers``: a weaker match may be only the background of a collage): ``N`` candidates
  of the regional search (:mod:`lookalike.query.regions`) are checked, each against the
  part of the query that resembles it.

All three run only when a cheap signal says the collection may hold a copy of the query
(:func:`may_hold_copy`, ``Settings.gate``): otherwise nothing would verify and they would
leave the ranking as it is, at most of a query's cost. Each stage adds matching-point counts
to the ranking (:meth:`lookalike.verify.Fit.counted`: 0 unless the candidate shows the same
picture); the cascade then moves the verified
candidates (``VerifyParams.min_inliers`` or more) to the front, most inliers first, so
class-level rankings where nothing verifies are left exactly as they were.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..index.words import shipped_vocabulary
from ..verify import Features
from .regions import regional_checks
from .stages import Collection, Query, Ranking

GATE_WORDS = 10  # word candidates the gate searches (the words stage then reuses them)


def check(ranking: Ranking, collection: Collection, features: Features, ids: list[int]) -> None:
    """Verify the candidates among ``ids`` not checked yet; record their inlier counts."""
    new = [i for i in dict.fromkeys(ids) if i not in ranking.inliers]
    if not new:
        return
    counts = collection.verifier.count_copies(features, new, collection.feature_loader(new))
    ranking.inliers.update(zip(new, counts, strict=True))


def word_hits(query: Query, collection: Collection, k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The ``k`` images sharing the most visual words with the query, ``(ids, scores)``
    (searched once per query); None without query features or a word index."""
    features = query.features(collection)
    if features is None or features.descriptors is None:
        return None
    if len(collection.store) > collection.settings.words.max_images:
        return None
    if query._word_hits is None or query._word_hits[0] < k:
        exclude = () if query.exclude is None else (query.exclude,)
        found, scores = collection.word_index().search(
            shipped_vocabulary().quantise(features.descriptors), k,
            allowed=query.allowed, exclude=exclude,
        )
        query._word_hits = (k, found, scores)
    _, found, scores = query._word_hits
    return found[:k], scores[:k]


def may_hold_copy(query: Query, ranking: Ranking, collection: Collection) -> bool:
    """Whether the verification stages should run: the first cosine score or the best
    visual-word score reaches its ``Settings.gate`` threshold (or there are no words to
    tell). Decided once per query."""
    if query._gate is None:
        gate = collection.settings.gate
        cosine = float(ranking.scores[0]) if len(ranking.scores) else 0.0
        query._gate = cosine >= gate.cosine
        if not query._gate:
            hits = word_hits(query, collection, max(GATE_WORDS, 1))
            best = float(hits[1][0]) if hits is not None and len(hits[1]) else 0.0
            query._gate = hits is None or best >= gate.words
    return query._gate


@dataclass(frozen=True)
class Verify:
    """``verify:N``: verify the first ``N`` matches of the cosine ranking."""

    n: int
    kind = "verify"

    @property
    def spec(self) -> str:
        return f"verify:{self.n}"

    def depth(self, collection: Collection) -> int:
        return self.n

    def apply(self, query: Query, ranking: Ranking, collection: Collection) -> None:
        features = query.features(collection)
        if features is not None and may_hold_copy(query, ranking, collection):
            check(ranking, collection, features, [int(i) for i in ranking.ids[: self.n]])


@dataclass(frozen=True)
class Words:
    """``words:N``: verify the ``N`` images sharing the most visual words with the query."""

    n: int
    kind = "verify"

    @property
    def spec(self) -> str:
        return f"words:{self.n}"

    def depth(self, collection: Collection) -> int:
        return 0

    def prepare(self, collection: Collection) -> None:
        if len(collection.store) <= collection.settings.words.max_images:
            collection.word_index()
            shipped_vocabulary()

    def apply(self, query: Query, ranking: Ranking, collection: Collection) -> None:
        hits = word_hits(query, collection, self.n)
        if hits is not None and may_hold_copy(query, ranking, collection):
            check(ranking, collection, query.features(collection), [int(i) for i in hits[0]])


@dataclass(frozen=True)
class Regions:
    """``regions:N``: when no match is sure, verify ``N`` candidates of the regional search."""

    n: int
    kind = "verify"

    @property
    def spec(self) -> str:
        return f"regions:{self.n}"

    def depth(self, collection: Collection) -> int:
        return 0

    def apply(self, query: Query, ranking: Ranking, collection: Collection) -> None:
        features = query.features(collection)
        image = query.image()
        settings = collection.settings
        if features is None or image is None or not may_hold_copy(query, ranking, collection):
            return
        if max(ranking.inliers.values(), default=0) >= settings.verify.sure_inliers:
            return
        params, store = settings.regions, collection.store
        size = params.size if store.inner.kind == "flat" else params.size_approximate
        vectors, boxes = collection.embedder.region_vectors(image, size, params.levels)
        exclude = set() if query.exclude is None else {query.exclude}
        found = regional_checks(  # transformed once, then searched in the store's own space
            store.transform.apply(vectors), boxes, store.inner.search, store.vectors, self.n,
            allowed=query.allowed, exclude=exclude, params=params,
        )
        # A candidate checked already is checked again against its region: the original of
        # a pasted photo can rank first and still fail against the whole collage.
        pairs = [(i, box) for i, box in found if box is not None or i not in ranking.inliers]
        load = collection.feature_loader([i for i, _ in found])
        counts = collection.verifier.count_region_inliers(image, features, pairs, load)
        for (image_id, _), count in zip(pairs, counts, strict=True):
            ranking.inliers[image_id] = max(count, ranking.inliers.get(image_id, 0))
