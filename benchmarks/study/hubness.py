"""Hubness-corrected links for diffusion: a study on the three dev sets, with the product's
own indexes and code (numbers only; nothing here changes the product).

Same data and protocol as ``benchmarks/study/whitening.py`` (run the benchmarks that build
/tmp/lookalike-quality, -groups and -instance first): descriptors whitened as the product
does (``Whitening.fit`` on each collection), each query ranked by cosine, then re-ordered by
the product's diffusion (``KnnGraph.diffuse``, cosine top-1 kept first) on a graph of each
image's ``pool`` nearest neighbours, of which ``KnnGraph.links`` keeps ``graph_k`` = 50:

* ``hub_k`` 0: the 50 most similar (the product until session 6);
* ``hub_k`` > 0: the 50 best by CSLS similarity ``s(x, y) - (r(x) + r(y)) / 2 + mean r``,
  ``r`` = mean similarity to the ``hub_k`` nearest neighbours (the product since session 6:
  pool 100, hub_k 10). A pool of 50 changes only the edge weights, not who is linked.

Sets: ``class`` (2,000 Caltech queries, same label), ``groups`` (1,000 views, the other views
and the source), ``inst`` (600 edited copies, the original; without verification). Then the
per-label loss of the product setting (as the whitening study's ``labels`` row).

    python benchmarks/study/hubness.py [--only grid,labels]
        -> benchmarks/results/study-hubness.jsonl (one JSON row per measurement)
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from whitening import REPO, Recorder, knn_graph, load_sets, mean_ap  # noqa: E402

from lookalike.index.transform import Whitening  # noqa: E402
from lookalike.rerank import RerankParams  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="grid,labels")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "study-hubness.jsonl")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    sets = load_sets()
    queries = sets.rankings()
    whitened = {name: Whitening.fit(db).apply for name, (_, db, *_rest) in queries.items()}

    emit = Recorder()

    def score(name: str, pool: int, params: RerankParams, per_query: bool = False):
        ids, db, outside, relevant, own = queries[name]
        w = whitened[name]
        Z = w(db)
        Q = Z[own] if outside is None else w(outside)
        return mean_ap(ids, Z, Q, relevant, own, knn_graph(ids, Z, pool), per_query, params)

    base = RerankParams(depth=1000)  # as measured in session 6 (study/depth.py: the depth)
    if "grid" in only:
        grid = [(100, 0), (50, 10), (100, 5), (100, 10), (100, 25), (200, 10)]
        for pool, hub_k in grid:
            params = replace(base, hub_k=hub_k)
            emit({"exp": "grid", "pool": pool, "hub_k": hub_k,
                  **{name: score(name, pool, params) for name in ("class", "groups", "inst")}})
    if "labels" in only:
        labels, own = sets.labels, sets.class_queries
        for hub_k in (0, base.hub_k):
            aps = score("class", base.graph_pool, replace(base, hub_k=hub_k), per_query=True)
            faces = np.isin(labels[own], ["Faces", "Faces_easy"])
            emit({"exp": "labels", "hub_k": hub_k, "mAP": round(float(aps.mean()), 4),
                  "faces_mAP": round(float(aps[faces].mean()), 4),
                  "mAP_without_faces_queries": round(float(aps[~faces].mean()), 4)})
    emit.save(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
