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

Each stage adds matching-point counts to the ranking (:meth:`lookalike.verify.Fit.counted`:
0 unless the candidate shows the same picture); the cascade then moves the verified
candidates (``VerifyParams.min_inliers`` or more) to the front, most inliers first, so
class-level rankings where nothing verifies are left exactly as they were.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..index.words import shipped_vocabulary
from ..verify import Features
from .regions import regional_checks
from .stages import Collection, Query, Ranking


def check(ranking: Ranking, collection: Collection, features: Features, ids: list[int]) -> None:
    """Verify the candidates among ``ids`` not checked yet; record their inlier counts."""
    new = [i for i in dict.fromkeys(ids) if i not in ranking.inliers]
    if not new:
        return
    counts = collection.verifier.count_copies(features, new, collection.feature_loader(new))
    ranking.inliers.update(zip(new, counts, strict=True))


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
        if features is not None:
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

    def apply(self, query: Query, ranking: Ranking, collection: Collection) -> None:
        features = query.features(collection)
        if features is None or features.descriptors is None:
            return
        if len(collection.store) > collection.settings.words.max_images:
            return
        exclude = () if query.exclude is None else (query.exclude,)
        found, _ = collection.word_index().search(
            shipped_vocabulary().quantise(features.descriptors), self.n,
            allowed=query.allowed, exclude=exclude,
        )
        check(ranking, collection, features, [int(i) for i in found])


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
        if features is None or image is None:
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
