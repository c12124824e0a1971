"""Exact re-scoring of candidates an approximate index proposed.

An approximate index (usearch's int8 graph, Milvus's IVF_PQ codes) ranks by lossy codes; the
best few it proposes are re-scored with their exact descriptors from the catalogue (the
source of truth), so scores equal the exact store's and recall depends on the proposals alone.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .vectors import top_k

# ids -> (ids found, their float32 descriptors): where exact vectors are read from.
VectorSource = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
# ids -> (those of them held outside the source, their vectors): e.g. a store's unsaved buffer.
ExtraVectors = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]

# Exact descriptors read from the catalogue at once to re-score a batch of queries
# (about 10 MiB as float32): one read for many queries, not one each.
RESCORE_READ = 2048


def rescore(
    queries: np.ndarray,
    proposals: list[np.ndarray],
    k: int,
    exact: VectorSource,
    *,
    held: np.ndarray | None = None,
    extra: ExtraVectors | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact scores for each query's proposed ids; top ``k`` of them, best first.

    The proposals of several queries are read from ``exact`` at once (up to
    ``RESCORE_READ`` descriptors), then each query is scored as if alone: its ids found in
    the source, ascending (as the catalogue answers), then those ``extra`` holds. Ids in
    ``held`` are not asked of the source (``extra`` has them); ids gone meanwhile are skipped.
    """
    rows_s, rows_i = [], []
    dims = queries.shape[1]
    held = held if held is not None and len(held) else None
    per_read = max(1, RESCORE_READ // max(1, max((len(p) for p in proposals), default=1)))
    for start in range(0, len(queries), per_read):
        part = proposals[start : start + per_read]
        stored = [np.unique(ids[~np.isin(ids, held)] if held is not None else ids) for ids in part]
        wanted = np.unique(np.concatenate(stored))
        found, vectors = exact(wanted) if len(wanted) else (wanted, queries[:0])
        vectors = vectors.reshape(len(found), dims)
        if np.any(found[1:] < found[:-1]):
            order = np.argsort(found)
            found, vectors = found[order], vectors[order]
        for query, own, ids in zip(queries[start : start + per_read], stored, part, strict=True):
            at = np.minimum(np.searchsorted(found, own), max(len(found) - 1, 0))
            at = at[found[at] == own] if len(found) else at[:0]  # gone meanwhile: skipped
            candidates, rows = found[at], vectors[at]
            if extra is not None:
                more, more_rows = extra(ids)
                candidates = np.concatenate([candidates, more])
                rows = np.concatenate([rows, more_rows.reshape(-1, dims)])
            scores = rows @ query
            best = top_k(scores[None, :], k)[0]
            rows_s.append(scores[best])
            rows_i.append(candidates[best])
    width = min(len(r) for r in rows_i) if rows_i else 0
    return (
        np.stack([r[:width] for r in rows_s]).astype(np.float32),
        np.stack([r[:width] for r in rows_i]).astype(np.int64),
    )
