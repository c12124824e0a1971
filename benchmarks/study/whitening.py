"""Whitening learned from the collection's mutual-nearest-neighbour pairs: a study on the three
dev sets, with the product's own indexes (numbers only; nothing here changes the product).

Reads the raw descriptors of the indexes that the benchmarks build (run them first):
``benchmarks/quality.py`` (/tmp/lookalike-quality: 8,677 Caltech-101 photos),
``benchmarks/groups.py`` (/tmp/lookalike-groups: + 250 groups of 4 views) and
``benchmarks/instance.py`` (/tmp/lookalike-instance: 8,910 photos; its 600 edited copies are
embedded here as outside queries). Descriptors are centred on each collection's mean and
L2-normalised, as the product did before whitening; each transform is fitted on the
database only.

Sets and scores (mAP over the full ranking; the query itself left out):

* ``class``: 2,000 fixed-seed Caltech queries (``--class-step`` 5 keeps every 5th: 400),
  relevant = same label;
* ``groups``: the 1,000 views (``--groups-step`` 2: 500), relevant = the other 3 views and
  the source photo;
* ``inst``: the 600 edited copies, relevant = the original (and its ``Faces``/``Faces_easy``
  twin); without verification, so this is the global descriptor's share of the instance task.

Whitening (:class:`lookalike.index.transform.Whitening`, the product's code): pairs are
images each among the other's ``k`` nearest neighbours; the covariance of their differences
is shrunk by ``c * dims / pairs`` times its mean eigenvalue and inverted (x -> (x - m) C^-1/2,
then L2). Experiments (``--only`` picks some):

0. ``pairs``: how many mutual k-NN pairs the class collection has, and the share of them
   whose two photos have the same label;
1. ``grid``: cosine mAP for k in {1, 3, 5, 10} x c in {0.5, 1, 2, 4} (c * dims / pairs is the
   shrinkage), plus PCA to 512 / 256 dimensions after whitening;
2. ``size``: the transform fitted on a random 500-4,000 of the class collection and applied
   to all of it (what a small collection gets);
3. ``foreign``: fitted on the odd-numbered classes, evaluated on the even-numbered ones
   (a transform learned on other photos), against one fitted on the even ones;
4. ``diffusion``: the product's diffusion (``KnnGraph.diffuse``, default ``RerankParams``,
   cosine top-1 kept first) on centred vs whitened descriptors, 2,000 / 1,000 / 600 queries.
5. ``labels``: where class-level AP is lost with whitening + diffusion (each label's share of
   1 - AP over the 2,000 queries), and mAP with ``Faces``/``Faces_easy`` counted as one label
   (an analysis only: the protocol keeps them apart);

    python benchmarks/study/whitening.py [--only pairs,grid,size,foreign,diffusion,labels]
        -> benchmarks/results/study-whitening.jsonl (one JSON row per measurement)
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import lookalike
from lookalike.embed.pooling import l2_normalise
from lookalike.index.transform import Whitening, mutual_neighbour_pairs
from lookalike.rerank import KnnGraph, RerankParams, pin_first

REPO = Path(__file__).resolve().parents[2]
QUALITY, GROUPS, INSTANCE = Path("/tmp/lookalike-quality"), Path("/tmp/lookalike-groups"), Path("/tmp/lookalike-instance")


def raw_descriptors(folder: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    with lookalike.Index.open(folder / "index") as index:
        ids, vectors = index.catalogue.all_vectors()
        where = index.catalogue.locations_for([int(i) for i in ids])
        return ids, vectors, [where[int(i)][0] for i in ids]


def centre(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = vectors.mean(axis=0)
    return mean, l2_normalise(vectors - mean)


def average_precision(hits: np.ndarray, n_relevant: int) -> float:
    found = np.flatnonzero(hits)
    return float(np.sum(np.arange(1, len(found) + 1) / (found + 1)) / n_relevant) if n_relevant else 0.0


def knn_graph(ids: np.ndarray, vectors: np.ndarray, k: int = RerankParams().graph_pool) -> KnnGraph:
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    nearest = np.argsort(-sims, axis=1)[:, :k]
    return KnnGraph(ids, ids[nearest], np.take_along_axis(sims, nearest, 1))


def mean_ap(ids, db, queries, relevant, own=None, graph: KnnGraph | None = None, per_query: bool = False,
            params: RerankParams | None = None):
    """mAP of ``queries`` against ``db`` (rows); ``relevant(i)`` is a mask over rows; ``own[i]``
    the query's own row, left out. With ``graph``, the product's diffusion re-orders."""
    params, aps = params or RerankParams(), []
    scores = queries @ db.T
    for i, s in enumerate(scores):
        if own is not None:
            s = s.copy()
            s[own[i]] = -np.inf
        order = np.argsort(-s, kind="stable")[: len(s) - (own is not None)]
        ranked = ids[order]
        if graph is not None:
            ranked = pin_first(graph.diffuse(ranked, s[order], params), ranked)
        rel = relevant(i)
        aps.append(average_precision(rel[np.searchsorted(ids, ranked)], int(rel.sum())))
    return np.asarray(aps) if per_query else round(float(np.mean(aps)), 4)


def whitening(vectors: np.ndarray, k: int, c: float, dims: int | None = None):
    """The product's Whitening with pairs from ``k`` neighbours and shrinkage factor ``c``."""
    w = Whitening.fit(vectors, neighbours=k, shrink=c)
    if w is None:
        return lambda x: x
    if dims is None:
        return w.apply
    _, axes = np.linalg.eigh(np.cov(w.apply(vectors).T))
    top = axes[:, ::-1][:, :dims]
    return lambda x: l2_normalise(w.apply(x) @ top)


class Recorder:
    """Measurement rows: each printed as it comes (with its time), all written as JSON lines."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def __call__(self, row: dict) -> None:
        row["at"] = time.strftime("%Y-%m-%d %H:%M")
        self.rows.append(row)
        print(json.dumps(row), flush=True)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as f:
            for row in self.rows:
                f.write(json.dumps(row) + "\n")


@dataclass
class DevSets:
    """The three dev sets, centred on each collection's mean (rows of ``X``, ``G``, ``D``)."""

    ids: np.ndarray
    X: np.ndarray
    labels: np.ndarray
    class_queries: np.ndarray  # rows of X: 2,000 fixed-seed queries
    gids: np.ndarray
    G: np.ndarray
    group_queries: np.ndarray  # rows of G
    group_relevant: list  # per group query: a mask over the rows of G
    iids: np.ndarray
    D: np.ndarray
    Q: np.ndarray  # the 600 edited copies, centred on D's mean
    inst_relevant: list  # per edited copy: a mask over the rows of D

    def rankings(self) -> dict:
        """``name: (ids, centred db, outside queries or None, relevant(i), own rows or None)``
        for the class, groups and instance sets, as the diffusion studies rank them."""
        return {
            "class": (self.ids, self.X, None, lambda i: self.labels == self.labels[self.class_queries[i]],
                      self.class_queries),
            "groups": (self.gids, self.G, None, lambda i: self.group_relevant[i], self.group_queries),
            "inst": (self.iids, self.D, self.Q, lambda i: self.inst_relevant[i], None),
        }


def load_sets() -> DevSets:
    ids, raw, where = raw_descriptors(QUALITY)
    labels = np.array([Path(p).parent.name for p in where])
    _, X = centre(raw)
    class_queries = np.sort(np.random.default_rng(0).choice(len(ids), 2000, replace=False))

    gids, graw, gwhere = raw_descriptors(GROUPS)
    _, G = centre(graw)
    row_of = {p: r for r, p in enumerate(gwhere)}
    with open(GROUPS / "truth.csv", newline="") as f:
        truth = {row["query"]: row["relevant"].split(";") for row in csv.DictReader(f)}
    group_queries = np.array([row_of[q] for q in truth])
    group_relevant = [np.isin(np.arange(len(gids)), [row_of[r] for r in truth[gwhere[q]]]) for q in group_queries]

    iids, iraw, iwhere = raw_descriptors(INSTANCE)
    imean, D = centre(iraw)
    spec = json.loads((INSTANCE / "queries.json").read_text())["queries"]
    with lookalike.Index.open(INSTANCE / "index") as index:
        Q = np.concatenate([index.embed([q["path"] for q in spec[s : s + 32]]).vectors for s in range(0, len(spec), 32)])
    Q = l2_normalise(Q - imean)
    suffix = ["/".join(Path(p).parts[-2:]) for p in iwhere]
    inst_relevant = [np.isin(suffix, q["relevant"]) for q in spec]
    return DevSets(ids, X, labels, class_queries, gids, G, group_queries, group_relevant, iids, D, Q, inst_relevant)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="pairs,grid,size,foreign,diffusion,labels")
    parser.add_argument("--class-step", type=int, default=5)
    parser.add_argument("--groups-step", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "study-whitening.jsonl")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))

    sets = load_sets()
    ids, X, labels, class_queries = sets.ids, sets.X, sets.labels, sets.class_queries
    gids, G, group_queries, group_relevant = sets.gids, sets.G, sets.group_queries, sets.group_relevant
    iids, D, Q, inst_relevant = sets.iids, sets.D, sets.Q, sets.inst_relevant

    def three(fc, fg, fi, cstep=args.class_step, gstep=args.groups_step, graphs=False) -> dict:
        Xc, Gc, Ic = fc(X), fg(G), fi(D)
        cq, gq = class_queries[::cstep], np.arange(len(group_queries))[::gstep]
        return {
            "class": mean_ap(ids, Xc, Xc[cq], lambda i: labels == labels[cq[i]], cq,
                             knn_graph(ids, Xc) if graphs else None),
            "groups": mean_ap(gids, Gc, Gc[group_queries[gq]], lambda i: group_relevant[gq[i]],
                              group_queries[gq], knn_graph(gids, Gc) if graphs else None),
            "inst": mean_ap(iids, Ic, fi(Q), lambda i: inst_relevant[i], None,
                            knn_graph(iids, Ic) if graphs else None),
        }

    emit = Recorder()

    same = lambda x: x  # noqa: E731
    if "pairs" in only:  # how often a mutual k-NN pair is two photos of one class
        for k in (1, 3, 5, 10):
            pairs = mutual_neighbour_pairs(X, k)
            emit({"exp": "pairs", "k": k, "pairs": len(pairs),
                  "same_label": round(float((labels[pairs[:, 0]] == labels[pairs[:, 1]]).mean()), 4)})
    if "grid" in only:
        emit({"exp": "grid", "transform": "centred only", **three(same, same, same)})
        for k in (1, 3, 5, 10):
            for c in (0.5, 1.0, 2.0, 4.0):
                emit({"exp": "grid", "k": k, "c": c, **three(*(whitening(Z, k, c) for Z in (X, G, D)))})
        for dims in (512, 256):
            emit({"exp": "grid", "k": 5, "c": 2.0, "dims": dims, **three(*(whitening(Z, 5, 2.0, dims) for Z in (X, G, D)))})
    if "size" in only:
        rng = np.random.default_rng(1)
        cq = class_queries[:: args.class_step]
        for n in (500, 1000, 2000, 4000):
            sample = rng.choice(len(X), n, replace=False)
            w, wi = Whitening.fit(X[sample]), Whitening.fit(D[rng.choice(len(D), n, replace=False)])
            f, fi = (w.apply if w else same), (wi.apply if wi else same)
            emit({"exp": "size", "fitted_on": n, "pairs": len(mutual_neighbour_pairs(X[sample])),
                  "whitening": w is not None,
                  "class": mean_ap(ids, f(X), f(X)[cq], lambda i: labels == labels[cq[i]], cq),
                  "inst": mean_ap(iids, fi(D), fi(Q), lambda i: inst_relevant[i])})
    if "foreign" in only:
        classes = np.unique(labels)
        even = np.flatnonzero(np.isin(labels, classes[::2]))
        odd = np.flatnonzero(~np.isin(labels, classes[::2]))
        queries = np.arange(len(even))[::4]
        for name, f in (("centred only", same), ("own (even classes)", Whitening.fit(X[even]).apply),
                        ("foreign (odd classes)", Whitening.fit(X[odd]).apply)):
            E = f(X[even])
            emit({"exp": "foreign", "transform": name, "even_class_mAP": mean_ap(
                ids[even], E, E[queries], lambda i: labels[even] == labels[even][queries[i]], queries)})
    if "diffusion" in only:
        emit({"exp": "diffusion", "transform": "centred only", **three(same, same, same, 1, 1, graphs=True)})
        emit({"exp": "diffusion", "transform": "whitened k5 c2",
              **three(*(Whitening.fit(Z).apply for Z in (X, G, D)), 1, 1, graphs=True)})
    if "labels" in only:  # where the class-level AP is lost: whitened + diffusion, 2,000 queries
        Xw = Whitening.fit(X).apply(X)
        aps = mean_ap(ids, Xw, Xw[class_queries], lambda i: labels == labels[class_queries[i]],
                      class_queries, knn_graph(ids, Xw), per_query=True)
        query_labels = labels[class_queries]
        lost = {str(lab): float((1 - aps[query_labels == lab]).sum()) for lab in np.unique(query_labels)}
        total = sum(lost.values())
        faces = np.isin(query_labels, ["Faces", "Faces_easy"])
        merged = np.where(np.isin(labels, ["Faces", "Faces_easy"]), "Faces*", labels)
        merged_aps = mean_ap(ids, Xw, Xw[class_queries], lambda i: merged == merged[class_queries[i]],
                             class_queries, knn_graph(ids, Xw), per_query=True)
        emit({"exp": "labels", "mAP": round(float(aps.mean()), 4),
              "faces_queries": int(faces.sum()), "faces_mAP": round(float(aps[faces].mean()), 4),
              "faces_share_of_loss": round((lost["Faces"] + lost["Faces_easy"]) / total, 4),
              "mAP_without_faces_queries": round(float(aps[~faces].mean()), 4),
              "mAP_faces_labels_merged": round(float(merged_aps.mean()), 4),
              "worst": sorted(((round(v / total, 4), k) for k, v in lost.items()), reverse=True)[:10]})
    emit.save(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
