"""Retrieval quality of an index: mAP, precision@K and recall@K against ground truth.

Ground truth is either the class folders (relevant = same parent folder, as in Caltech-101)
or a CSV of ``query,relevant_path[;relevant_path...]``. Every query is ranked against the
whole collection through the index's own search path, with the query itself left out.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import LookalikeError
from .query.options import SearchOptions

if TYPE_CHECKING:
    from .api import Index

RankFn = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


@dataclass
class EvalReport:
    """Mean metrics over all queries (``recall`` maps K to recall@K)."""

    queries: int
    map: float
    p_at_1: float
    p_at_10: float
    recall: dict[int, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "queries": self.queries,
            "mAP": round(self.map, 4),
            "P@1": round(self.p_at_1, 4),
            "P@10": round(self.p_at_10, 4),
            **{f"recall@{k}": round(v, 4) for k, v in sorted(self.recall.items())},
        }


def average_precision(hits: np.ndarray, n_relevant: int) -> float:
    """AP of one ranking given as a boolean hit vector over the full ranking."""
    if n_relevant == 0:
        return 0.0
    positions = np.flatnonzero(hits) + 1
    precision_at_hits = np.arange(1, len(positions) + 1) / positions
    return float(precision_at_hits.sum() / n_relevant)


def score_hits(hits: Sequence[np.ndarray], n_relevant: np.ndarray, ks: Sequence[int] = (1, 10, 100)):
    """Per-query (AP, P@1, P@10, {K: recall@K}) from boolean hit rows.

    Each row is one query's full ranking (the query itself already removed).
    """
    out = []
    for row, n in zip(hits, n_relevant, strict=False):
        n = int(n)
        out.append(
            (
                average_precision(row, n),
                float(row[:1].mean()) if len(row) else 0.0,
                float(row[:10].mean()) if len(row) else 0.0,
                {k: float(row[:k].sum() / n) if n else 0.0 for k in ks},
            )
        )
    return out


def summarise(per_query: list[tuple[float, float, float, dict[int, float]]]) -> EvalReport:
    if not per_query:
        raise LookalikeError("no query has a relevant image: check the ground truth")
    aps, p1, p10, recalls = zip(*per_query, strict=False)
    ks = recalls[0].keys()
    return EvalReport(
        queries=len(per_query),
        map=float(np.mean(aps)),
        p_at_1=float(np.mean(p1)),
        p_at_10=float(np.mean(p10)),
        recall={k: float(np.mean([r[k] for r in recalls])) for k in ks},
    )


def folder_ground_truth(locations: dict[int, list[str]]) -> dict[int, set[int]]:
    """Relevant images of each image: those in the same parent folder (its class)."""
    by_folder: dict[str, set[int]] = {}
    folder_of: dict[int, str] = {}
    for image_id, paths in locations.items():
        folder = os.path.dirname(paths[0])
        folder_of[image_id] = folder
        by_folder.setdefault(folder, set()).add(image_id)
    return {i: by_folder[f] - {i} for i, f in folder_of.items()}


def csv_ground_truth(path: str, id_of_location: dict[str, int]) -> dict[int, set[int]]:
    """Read ``query,relevant[;relevant...]`` rows; paths resolve relative to the CSV's folder."""
    base = os.path.dirname(os.path.abspath(path))

    def resolve(p: str) -> int | None:
        return id_of_location.get(os.path.normpath(os.path.join(base, p.strip())))

    truth: dict[int, set[int]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.reader(f):
                if len(row) < 2 or row[0].strip().lower() == "query":
                    continue
                query = resolve(row[0])
                if query is None:
                    raise LookalikeError(f"{path}: query {row[0]!r} is not in the index")
                rel = {r for r in map(resolve, row[1].split(";")) if r is not None}
                truth[query] = rel - {query}
    except OSError as exc:
        raise LookalikeError(f"cannot read ground truth {path}: {exc.strerror}") from exc
    return truth


def evaluate_vectors(
    ids: np.ndarray,
    vectors: np.ndarray,
    truth: dict[int, set[int]],
    rank: RankFn,
    *,
    ks: Sequence[int] = (1, 10, 100),
    chunk: int = 256,
    pass_ids: bool = False,
    sample: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvalReport:
    """Rank every query that has relevant images against the whole collection.

    ``rank(query_vectors, k)`` returns ``(scores, ids)`` best first, as a vector store does;
    with ``pass_ids`` it is called as ``rank(query_vectors, k, query_ids)``. ``sample``
    evaluates that many of the queries (a fixed-seed sample); ``progress(done, total)``
    is called after each chunk of queries.
    """
    ids = np.asarray(ids, dtype=np.int64)
    order = np.argsort(ids)
    sorted_ids = ids[order]
    queries = np.asarray(sorted(q for q in truth if truth[q]), dtype=np.int64)
    queries = queries[np.isin(queries, ids)]
    if sample is not None and sample < len(queries):
        queries = np.sort(np.random.default_rng(0).choice(queries, sample, replace=False))
    per_query = []
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk]
        rows = order[np.searchsorted(sorted_ids, q)]
        _, ranked = rank(vectors[rows], len(ids) + 1, q) if pass_ids else rank(vectors[rows], len(ids) + 1)
        relevant = np.zeros((len(q), len(ids)), dtype=bool)
        for r, query in enumerate(q):
            rel = np.fromiter(truth[int(query)], dtype=np.int64)
            rel = rel[np.isin(rel, ids)]
            relevant[r, order[np.searchsorted(sorted_ids, rel)]] = True
        ranked_rows = order[np.searchsorted(sorted_ids, ranked)]
        hits = np.take_along_axis(relevant, ranked_rows, axis=1)
        not_self = ranked != q[:, None]
        rows_without_self = [h[m] for h, m in zip(hits, not_self, strict=False)]
        per_query += score_hits(rows_without_self, relevant.sum(axis=1), ks)
        if progress is not None:
            progress(min(start + chunk, len(queries)), len(queries))
    return summarise(per_query)


def evaluate_index(
    index: Index,
    truth_csv: str | None = None,
    *,
    ks: Sequence[int] = (1, 10, 100),
    options: SearchOptions | None = None,
    sample: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    **changes: Any,
) -> EvalReport:
    """Evaluate an open :class:`lookalike.Index` through its own ranking (:meth:`Index.rank`).

    Ground truth: the CSV if given, else class folders (relevant = same parent folder).
    Each query is an indexed image, ranked against all the others (itself left out, also
    from re-ranking and verification). ``options`` and ``changes`` are search options
    (``pipeline``, ``rerank``, ``verify``, ...); the defaults are the index's settings, so
    what is measured is what a search returns. A pipeline of ``cosine`` alone without
    filters is measured as one batched search. ``sample`` evaluates that many queries (fixed seed) instead of all.
    """
    options = SearchOptions.from_any(options, **changes)
    ids, vectors = index.catalogue.all_vectors()
    if len(ids) < 2:
        raise LookalikeError("the index needs at least two images to evaluate")
    locations = index.catalogue.locations_for(ids.tolist())
    if truth_csv:
        id_of = {loc: i for i, locs in locations.items() for loc in locs}
        truth = csv_ground_truth(truth_csv, id_of)
    else:
        truth = folder_ground_truth(locations)
    plain = not options.label and options.route == "global" and options.min_score is None
    if plain and index.pipeline(options).spec == "cosine":  # one batched search
        return evaluate_vectors(
            ids, vectors, truth, index.store.search, ks=ks, sample=sample, progress=progress
        )
    return evaluate_vectors(
        ids, vectors, truth, index_ranker(index, options), ks=ks, pass_ids=True,
        sample=sample, progress=progress, chunk=32,
    )


def index_ranker(index: Index, options: SearchOptions) -> Callable:
    """``rank(vectors, k, query_ids)`` through :meth:`Index.rank` (the search path), each
    query's own image left out."""

    def rank(vectors: np.ndarray, k: int, query_ids: np.ndarray) -> tuple[None, np.ndarray]:
        ranked = index.rank(
            vectors, options.with_(k=k), query_ids=[int(i) for i in query_ids], exclude_query=True
        )
        return None, np.asarray([r.ids for r in ranked], dtype=np.int64)

    return rank


def ann_recall(index: Index, k: int = 10, queries: int = 1000, seed: int = 0) -> dict:
    """Recall@k of the index's vector store against exact search, on its own images.

    ``queries`` indexed images (a fixed-seed sample) are searched in the store and by an
    exact scan of every descriptor in the catalogue (streamed in chunks, so memory stays
    bounded); recall = the share of the exact top-``k`` (the query itself left out) that the
    store also returns. An exact store reports 1.0.
    """
    from .index.ann import CatalogueVectors

    store = index.store
    all_ids = CatalogueVectors(index.catalogue).ids()
    if len(all_ids) < k + 2:
        raise LookalikeError(f"the index needs more than {k + 1} images to measure recall@{k}")
    rng = np.random.default_rng(seed)
    q_ids = np.sort(rng.choice(all_ids, size=min(queries, len(all_ids)), replace=False))
    transform = store.transform.apply
    q = transform(index.catalogue.vectors_for(q_ids.tolist()))
    # Exact: stream the catalogue, keep a running top-(k+1) per query.
    best_s = np.full((len(q), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(q), 0), dtype=np.int64)
    for chunk_ids, chunk in CatalogueVectors(index.catalogue, transform).chunks():
        s = np.concatenate([best_s, q @ chunk.T], axis=1)
        i = np.concatenate([best_i, np.broadcast_to(chunk_ids, (len(q), len(chunk_ids)))], axis=1)
        top = np.argsort(-s, axis=1, kind="stable")[:, : k + 1]
        best_s, best_i = np.take_along_axis(s, top, axis=1), np.take_along_axis(i, top, axis=1)
    inner = store.inner
    _, approx = inner.search(q, k + 1)
    hits = 0
    for row, own in enumerate(q_ids):
        exact = [i for i in best_i[row] if i != own][:k]
        found = {int(i) for i in [j for j in approx[row] if j != own][:k]}
        hits += sum(int(i) in found for i in exact)
    return {
        "k": k,
        "queries": len(q_ids),
        "store": inner.kind,
        "images": len(all_ids),
        f"recall@{k}": round(hits / (k * len(q_ids)), 4),
    }
