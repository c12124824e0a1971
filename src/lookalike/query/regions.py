"""Regional search: finds the original of a photo pasted into a larger picture, or of a crop.

The query is run once more at a larger size and its feature map pooled over an R-MAC grid of
windows (:meth:`lookalike.embed.embedder.Embedder.region_vectors`); each window searches the
store, and the images that stand out most among the windows' matches become candidates for
spatial verification, each against the window closest to it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..settings import RegionParams


def regional_candidates(
    region_vectors: np.ndarray,
    search: Callable,
    count: int,
    *,
    allowed: np.ndarray | None = None,
    exclude: set[int] | frozenset[int] = frozenset(),
    params: RegionParams,
) -> list[int]:
    """The ``count`` images that stand out most among the matches of any region of the query.

    ``search(vectors, k, candidates=allowed, rough=True)`` is the store's search in the
    space of ``region_vectors`` (rough: these are candidates for verification, an
    approximate store need not re-score many); ids in ``exclude`` are skipped.

    Each window's matches are scored by their *contrast*, the similarity minus that of the
    window's ``contrast_rank``-th match. Windows of background or texture resemble many
    photos about equally, while the window that holds a pasted photo resembles its original
    much more than anything else; raw scores let the first kind crowd out the second (the
    same effect as hubness corrections such as CSLS; measured in docs/descriptor.md).
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
    params: RegionParams,
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
    small window contains the photo at a usable resolution, so a candidate is verified
    against the window closest to it, not the one that found it (docs/descriptor.md).
    """
    similarity = np.atleast_2d(candidate_vectors) @ np.atleast_2d(region_vectors).T
    return np.argsort(-similarity, axis=1, kind="stable")[:, :n]
