"""Answering queries: exact nearest neighbours, label filters and category routing.

The searcher works on image ids and scores; :func:`expand_matches` turns them into one match
per file location (two copies of one photo are two results with the same score).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .embed.labels import imagenet_labels, label_ids
from .errors import LookalikeError
from .index.catalogue import Catalogue
from .index.vectors import VectorStore
from .query.results import Match, SearchResult  # noqa: F401 - re-exported

Route = Literal["global", "categories"]
ROUTES: tuple[str, ...] = ("global", "categories")


@dataclass(frozen=True)
class SearchOptions:
    """What a query asks for; one object carried from the public methods to the ranking.

    ``rerank``, ``verify``, ``regions`` and ``words`` of None mean "the index's settings"
    (``Settings.rerank``, ``Settings.verify_top``, ``Settings.regions``,
    ``Settings.word_candidates``).
    """

    k: int = 10
    labels: list[str] | None = None
    route: str = "global"
    min_score: float | None = None
    rerank: str | None = None
    verify: int | None = None
    regions: int | None = None
    words: int | None = None


@dataclass(frozen=True)
class RegionParams:
    """The regional search behind ``Settings.regions`` (measured in docs/benchmarks.md)."""

    # Input side of the query's second pass: a 16x16 feature map. A photo pasted at 40 % of
    # a picture's side is then ~200 px, as many as the original at the model's usual input.
    size: int = 512
    # On the approximate store (from Settings.ann_threshold images) each window's search is
    # a graph search plus re-scoring from the catalogue, and the pass keeps 384 px (12x12)
    # so that a query at 100,000 images stays within its latency budget (docs/benchmarks.md).
    size_approximate: int = 384
    levels: tuple[int, ...] = (1, 2, 3, 4)  # R-MAC grid: 1 + 4 + 9 + 16 windows
    per_region: int = 3  # nearest images per window, merged by their best contrast
    # A window's match counts by how far it stands out: its score minus the window's
    # ``contrast_rank``-th best score (0-based), not the raw score.
    contrast_rank: int = 10
    verify_regions: int = 1  # each candidate is verified against its closest window(s)


def regional_candidates(
    region_vectors: np.ndarray,
    search: Callable,
    count: int,
    *,
    allowed: np.ndarray | None = None,
    exclude: set[int] | frozenset[int] = frozenset(),
    params: RegionParams = RegionParams(),
) -> list[int]:
    """The ``count`` images that stand out most among the matches of any region of the query.

    ``search(vectors, k, candidates=allowed, rough=True)`` is the store's search in the
    space of ``region_vectors`` (rough: these are candidates for verification, an
    approximate store need not re-score many); ids in ``exclude`` are skipped.

    Each window's matches are scored by their *contrast*, the similarity minus that of the
    window's ``contrast_rank``-th match. Windows of background or texture resemble many
    photos about equally, while the window that holds a pasted photo resembles its original
    much more than anything else; raw scores let the first kind crowd out the second. On the
    instance benchmark's 60 pasted photos the original is among the 10 candidates for 49
    instead of 46 (512 px; 43 instead of 38 at 384 px), the same effect as hubness
    corrections such as CSLS.
    """
    depth = max(params.per_region, params.contrast_rank + 1)
    scores, ids = search(region_vectors, depth, candidates=allowed, rough=True)
    best: dict[int, float] = {}
    for row_scores, row_ids in zip(scores.tolist(), ids.tolist(), strict=True):
        floor = row_scores[min(params.contrast_rank, len(row_scores) - 1)] if row_scores else 0.0
        for score, image_id in zip(row_scores[: params.per_region], row_ids[: params.per_region], strict=True):
            contrast = score - floor
            if image_id not in exclude and contrast > best.get(image_id, -np.inf):
                best[image_id] = contrast
    return sorted(best, key=lambda i: -best[i])[:count]


def regional_checks(
    region_vectors: np.ndarray,
    boxes: np.ndarray,
    search: Callable,
    vectors_of: Callable[[np.ndarray], np.ndarray],
    count: int,
    *,
    allowed: np.ndarray | None = None,
    exclude: set[int] | frozenset[int] = frozenset(),
    params: RegionParams = RegionParams(),
) -> list[tuple[int, tuple[float, ...]]]:
    """The :func:`regional_candidates`, each paired with the box of every query window it is
    to be verified against (its ``params.verify_regions`` closest): ``[(image_id, box)]``.

    ``region_vectors`` are in the space that ``search`` searches and ``vectors_of`` gives
    candidates' descriptors in (the store's inner space: transformed once by the caller).
    """
    found = regional_candidates(
        region_vectors, search, count, allowed=allowed, exclude=exclude, params=params
    )
    if not found:
        return []
    ids = np.asarray(found, dtype=np.int64)
    closest = closest_regions(vectors_of(ids), region_vectors, params.verify_regions)
    return [(int(i), tuple(boxes[w])) for i, row in zip(ids, closest, strict=True) for w in row]


def closest_regions(candidate_vectors: np.ndarray, region_vectors: np.ndarray, n: int) -> np.ndarray:
    """For each candidate, the ``n`` regions most similar to it, best first: ``(C, n)``.

    The window whose search *found* a candidate is often not the one that shows it: the
    whole picture may rank the original of a pasted photo among its neighbours while only a
    small window contains the photo at a usable resolution. On the instance benchmark's 60
    pasted photos (30 windows), verifying the original against the window closest to it
    succeeds for 46, against the two closest for 51, against the window that found it for 19.
    """
    similarity = np.atleast_2d(candidate_vectors) @ np.atleast_2d(region_vectors).T
    return np.argsort(-similarity, axis=1, kind="stable")[:, :n]


def resolve_label(name: str) -> int:
    """Class id of an ImageNet label name (case-insensitive), with a helpful error."""
    key = name.strip().lower()
    ids = label_ids()
    if key in ids:
        return ids[key]
    close = sorted(n for n in ids if key in n)[:5]
    hint = f"; did you mean: {', '.join(close)}" if close else "; `lookalike info` lists labels"
    raise LookalikeError(f"unknown label '{name}'{hint}")


def candidate_ids(
    catalogue: Catalogue,
    *,
    labels: list[str] | None = None,
    route: str = "global",
    query_label_ids: np.ndarray | None = None,
) -> tuple[np.ndarray | None, str]:
    """Image ids a query may match (None: all), and the route that was taken."""
    if route not in ROUTES:
        raise LookalikeError(f"unknown route '{route}'; choose one of: {', '.join(ROUTES)}")
    allowed: np.ndarray | None = None
    if labels:
        allowed = catalogue.image_ids_with_labels([resolve_label(n) for n in labels])
    if route == "categories" and query_label_ids is not None:
        routed = catalogue.image_ids_with_labels([int(c) for c in query_label_ids])
        allowed = routed if allowed is None else np.intersect1d(allowed, routed)
    return allowed, route


# (query number, query vector, first scores, first ids, allowed ids) -> [(image_id, score)]
Reorder = Callable[[int, np.ndarray, np.ndarray, np.ndarray, "np.ndarray | None"], list[tuple[int, float]]]


def search_vectors(
    catalogue: Catalogue,
    store: VectorStore,
    vectors: np.ndarray,
    query_label_ids: np.ndarray,
    *,
    k: int,
    labels: list[str] | None = None,
    route: str = "global",
    min_score: float | None = None,
    depth: int = 0,
    reorder: Reorder | None = None,
) -> list[tuple[list[tuple[int, float]], str]]:
    """Rank images for each query vector: a list of ``([(image_id, score)], route)``.

    With ``reorder`` the store is asked for ``max(k, depth)`` matches and
    ``reorder(query_number, vector, scores, ids, allowed)`` turns them into the final
    ``[(image_id, score)]`` (re-ranking, spatial verification: see :mod:`lookalike.rerank`).
    """
    out = []
    for number, (vector, query_labels) in enumerate(
        zip(np.atleast_2d(vectors), query_label_ids, strict=False)
    ):
        allowed, taken = candidate_ids(
            catalogue, labels=labels, route=route, query_label_ids=query_labels
        )
        if route == "categories" and allowed is not None and len(allowed) < k:
            # The seed raised an error here; we fall back to the whole collection instead.
            allowed, _ = candidate_ids(catalogue, labels=labels, route="global")
            taken = "categories+global"
        scores, ids = store.search(vector[None, :], max(k, depth), candidates=allowed)
        if reorder is not None:
            pairs = reorder(number, vector, scores[0], ids[0], allowed)[:k]
        else:
            pairs = [(int(i), float(s)) for i, s in zip(ids[0][:k], scores[0][:k], strict=False)]
        if min_score is not None:
            pairs = [(i, s) for i, s in pairs if s >= min_score]
        out.append((pairs, taken))
    return out


def expand_matches(
    catalogue: Catalogue,
    ranked: list[tuple[int, float]],
    k: int,
    inliers: dict[int, int] | None = None,
) -> list[Match]:
    """One :class:`Match` per file location of each ranked image, at most ``k``.

    ``inliers`` gives spatial verification's inlier counts of the images it checked.
    """
    inliers = inliers or {}
    image_ids = [i for i, _ in ranked]
    locations = catalogue.locations_for(image_ids)
    stored = catalogue.labels_for(image_ids)
    names = imagenet_labels()
    matches: list[Match] = []
    for image_id, score in ranked:
        labels = [names[c] for c, _ in stored.get(image_id, [])]
        for location in locations.get(image_id, []):
            if len(matches) >= k:
                return matches
            matches.append(
                Match(len(matches) + 1, location, score, labels, image_id, inliers.get(image_id))
            )
    return matches
