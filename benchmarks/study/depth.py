"""Diffusion depth: how many matches of the first ranking diffusion should re-order.
A study on the three dev sets with the product's own indexes and code (numbers only).

Same data and protocol as ``benchmarks/study/hubness.py`` (whitened descriptors, the
product's diffusion with its default links, cosine top-1 kept first; class 2,000 queries,
groups 1,000, edited copies 600 without verification), at depths 1,000 (the product until
session 6) to the whole collection. Diffusion can only lift a true match that the cosine
ranking put within ``depth``; the ``beyond`` row says how many true matches of a class query
lie past 1,000 and 3,000.

    python benchmarks/study/depth.py -> benchmarks/results/study-depth.jsonl
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
    parser.add_argument("--depths", default="1000,2000,3000,5000,0", help="0: the whole collection")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "study-depth.jsonl")
    args = parser.parse_args(argv)
    sets = load_sets()
    emit = Recorder()
    runs = {}  # name: (ids, whitened db, queries, relevant(i), own rows or None, graph)
    for name, (ids, db, outside, relevant, own) in sets.rankings().items():
        white = Whitening.fit(db).apply
        Z = white(db)
        runs[name] = (ids, Z, Z[own] if outside is None else white(outside), relevant, own, knn_graph(ids, Z))

    _, Z, Q, relevant, own, _ = runs["class"]
    scores = Q @ Z.T
    scores[np.arange(len(own)), own] = -np.inf
    ranks = np.argsort(np.argsort(-scores, axis=1), axis=1)
    others = [np.flatnonzero(relevant(i) & (np.arange(len(Z)) != own[i])) for i in range(len(own))]
    past = [[float((ranks[i][rows] >= depth).mean()) for i, rows in enumerate(others)] for depth in (1000, 3000)]
    emit({"exp": "beyond", "true_matches_past_1000": round(float(np.mean(past[0])), 4),
          "true_matches_past_3000": round(float(np.mean(past[1])), 4)})
    for depth in (int(d) for d in args.depths.split(",")):
        params = replace(RerankParams(), depth=depth or max(len(r[0]) for r in runs.values()))
        emit({"exp": "depth", "depth": depth or "all",
              **{name: mean_ap(ids, Z, Q, rel, own, graph, params=params)
                 for name, (ids, Z, Q, rel, own, graph) in runs.items()}})
    emit.save(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
