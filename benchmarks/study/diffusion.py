"""Diffusion re-ranking study on cached Lite0 descriptors: class mAP vs instance recall.

What it measures (numbers only; nothing here changes the product):

* Class level (Caltech-101, 8,677 images): a fixed-seed sample of ``--queries`` images
  (default 1,500, seed 0) each queries all the others (itself excluded); relevant = same
  label; mAP over the full ranking and P@1.
* Instance level: the 300 edited copies of ``inst-<tag>.npz`` query the 8,677 images;
  R@1 / R@5 = the original is ranked first / in the first five.
* ``ms``: extra time per query of the re-ranking step alone (after the first cosine
  search), single thread, mean over all class and instance queries.

Descriptors are GeM p=3, L2, centred by the collection mean, L2 again (as the product).
Configurations:

1. the product as is: ``lookalike.rerank.rerank('qe'|'diffusion', ...)`` with the default
   ``RerankParams`` (k=50 mutual neighbours, alpha 0.9, gamma 3, 10 seeds, depth 1,000,
   20 fixed-point iterations), on a ``KnnGraph`` built by the product's own ``KnnGraph.build``;
2. the same diffusion re-implemented (sparse, returns the scores) and solved either with the
   product's 20 iterations or, as in the literature code (Iscen et al., CVPR 2017), with
   conjugate gradient (20 iterations, rtol 1e-6); a grid alpha x k x gamma;
3. database-side augmentation (DBA: each vector -> L2 of its 5 nearest neighbours, itself
   included, weighted by similarity**3) before cosine / QE / diffusion, with the query either
   a collection vector (``q=db``, augmented) or an outside image (``q=raw``);
4. fusions meant to protect instance queries: ``max`` (score = max(cosine, f / max f)),
   ``max-top1`` (f scaled so that its best equals the top cosine, then max: the cosine
   top-1 always stays first), ``pin-top1`` (the cosine top-1 stays first, diffusion orders
   the rest), ``gate-T`` (pin only if the top cosine exceeds T) and ``margin-D`` (pin only if
   the top cosine beats the second by more than D); with DBA also ``pin-plain`` (the top-1
   of the plain, un-augmented cosine search stays first, diffusion on the augmented
   collection orders the rest).

The grid (alpha x k x gamma) is run with both solvers; ``--quick`` skips it.

Run (one thread, as the study shares the machine)::

    export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
    python benchmarks/study/diffusion.py                 # -> /tmp/lookalike-study/diffusion-results.jsonl
    python benchmarks/study/diffusion.py --queries 500   # quicker

Each configuration is appended to the JSONL file and printed as a markdown table row;
``--only TEXT`` runs only the configurations whose name contains TEXT (plus the cosine row).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import cg

from lookalike.rerank import KnnGraph, RerankParams, rerank

OUT = Path("/tmp/lookalike-study")
DEPTH = 1000  # matches of the first search that diffusion re-orders (product and literature)
SEEDS = 10  # first matches that start the diffusion (product; k_q = 10 in the literature code)


def l2(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


# ----------------------------------------------------------------------------- data
@dataclass
class Space:
    """A database (one vector per image) and its product k-NN graph (k=50)."""

    name: str
    db: np.ndarray
    graph: KnnGraph = field(init=False)
    graphs: dict[int, KnnGraph] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ids = np.arange(len(self.db), dtype=np.int64)
        self.graph = KnnGraph.build(ids, self.vectors_of, self.search, 50)
        self.graphs[50] = self.graph

    def vectors_of(self, ids: np.ndarray) -> np.ndarray:
        return self.db[np.asarray(ids, dtype=np.int64)]

    def search(self, queries: np.ndarray, k: int, candidates=None):
        """Top-k (scores, ids) as the product's VectorStore.search (exhaustive)."""
        scores = queries @ self.db.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-top, axis=1, kind="stable")
        return np.take_along_axis(top, order, axis=1), np.take_along_axis(part, order, axis=1)

    def graph_k(self, k: int) -> KnnGraph:
        """The graph cut to each image's first ``k`` neighbours."""
        if k not in self.graphs:
            g = self.graph
            self.graphs[k] = KnnGraph(g.ids, g.neighbours[:, :k], g.sims[:, :k])
        return self.graphs[k]


def dba(db: np.ndarray, k: int = 5, power: float = 3.0) -> np.ndarray:
    """Database-side augmentation: L2(sum over the k nearest, itself included, of s**power x)."""
    out = np.empty_like(db)
    for s in range(0, len(db), 1024):
        sims = db[s : s + 1024] @ db.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        w = np.maximum(np.take_along_axis(sims, part, axis=1), 0) ** power
        out[s : s + 1024] = np.einsum("nk,nkd->nd", w, db[part])
    return l2(out)


@dataclass
class Queries:
    """Query vectors, their first (cosine) full ranking, and what counts as a hit."""

    vectors: np.ndarray
    order: np.ndarray  # (n, N') full cosine ranking, the query itself left out
    scores: np.ndarray  # matching cosine scores
    targets: np.ndarray  # class: query label; instance: id of the original
    instance: bool
    plain_top1: np.ndarray  # top-1 of the plain centred cosine search (without DBA)


def first_ranking(vectors: np.ndarray, db: np.ndarray, exclude: np.ndarray | None):
    n = len(db) - (exclude is not None)
    order = np.empty((len(vectors), n), np.int64)
    scores = np.empty((len(vectors), n), np.float32)
    for s in range(0, len(vectors), 256):
        sims = vectors[s : s + 256] @ db.T
        if exclude is not None:
            sims[np.arange(len(sims)), exclude[s : s + 256]] = -np.inf
        o = np.argsort(-sims, axis=1, kind="stable")[:, :n]
        order[s : s + 256] = o
        scores[s : s + 256] = np.take_along_axis(sims, o, axis=1)
    return order, scores


# ----------------------------------------------------------------------------- diffusion
def diffuse(
    graph: KnnGraph, head: np.ndarray, head_scores: np.ndarray, *, alpha: float, gamma: float,
    solver: str = "cg", seeds: int = SEEDS, iterations: int = 20,
) -> np.ndarray:
    """Diffusion scores of ``head`` (the product's graph construction, sparse).

    Mutual k-NN sub-graph of the head, edges max(s, 0)**gamma, symmetric normalisation on
    the sub-graph, seeds = the first ``seeds`` cosine scores**gamma; solve
    (I - alpha S) f = y with ``iterations`` fixed-point steps (``iter``, as the product) or
    conjugate gradient (``cg``, as the literature code).
    """
    n = len(head)
    local = np.full(len(graph.ids), -1, np.int64)  # graph ids are 0..N-1 here
    local[head] = np.arange(n)
    nbrs, sims = graph.neighbours[head], graph.sims[head]
    cols = np.where(nbrs >= 0, local[np.maximum(nbrs, 0)], -1)
    inside = (cols >= 0) & np.isfinite(sims)
    rows = np.broadcast_to(np.arange(n)[:, None], cols.shape)
    a = sp.csr_matrix(
        (np.maximum(sims[inside], 0) ** gamma, (rows[inside], cols[inside])), shape=(n, n)
    )
    a = a.minimum(a.T)  # mutual neighbours only
    degree = np.asarray(a.sum(axis=1)).ravel()
    inv = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-12)), 0.0)
    s = sp.diags(inv) @ a @ sp.diags(inv)
    y = np.zeros(n)
    m = min(seeds, n)
    y[:m] = np.maximum(head_scores[:m], 0) ** gamma
    if solver == "iter":
        f = y.copy()
        for _ in range(iterations):
            f = alpha * (s @ f) + y
        return f
    f, _ = cg(sp.identity(n, format="csr") - alpha * s, y, rtol=1e-6, maxiter=iterations)
    return f


# A re-ranker: (query vector, first order, first scores, excluded id or None, plain-cosine
# top-1 id) -> new order. The last is the top-1 of the un-augmented centred search (it
# differs from order[0] only with DBA).
Reranker = Callable[[np.ndarray, np.ndarray, np.ndarray, "int | None", int], np.ndarray]


def product_reranker(space: Space, method: str) -> Reranker:
    params = RerankParams()

    def run(q, order, scores, own, plain_top1):
        # As Index.search: the first search returns depth (+1 with the query itself), the
        # query is dropped before re-ranking; positions past the depth keep cosine order.
        # QE searches again for the whole collection, so its answer is a full ranking.
        depth = params.depth if method == "diffusion" else len(order)
        head = rerank(method, q, scores[:depth], order[:depth], k=len(space.db),
                      search=space.search, vectors_of=space.vectors_of,
                      candidates=None, graph=lambda: space.graph, params=params, exclude=own)
        if own is not None:
            head = head[head != own]
        return np.concatenate([head, order[len(head):]])

    return run


def diffusion_reranker(
    space: Space, *, k: int, alpha: float, gamma: float, solver: str, fusion: str = "none",
) -> Reranker:
    graph = space.graph_k(k)

    def run(q, order, scores, own, plain_top1):
        head, c = order[:DEPTH], scores[:DEPTH].astype(np.float64)
        f = diffuse(graph, head, c, alpha=alpha, gamma=gamma, solver=solver)
        if fusion in ("none", "pin-plain"):
            key = f
        elif fusion == "max":
            key = np.maximum(c, f / max(f.max(), 1e-12))
        elif fusion == "max-top1":
            key = np.maximum(c, f / max(f.max(), 1e-12) * c[0])
        elif fusion.startswith(("gate-", "margin-")) or fusion == "pin-top1":
            key = f.copy()
            keep = (fusion == "pin-top1"
                    or (fusion.startswith("gate-") and c[0] > float(fusion[5:]))
                    or (fusion.startswith("margin-") and c[0] - c[1] > float(fusion[7:])))
            if keep:
                key[0] = np.inf
        elif fusion != "pin-plain":
            raise ValueError(fusion)
        ranking = np.concatenate([head[np.argsort(-key, kind="stable")], order[DEPTH:]])
        if fusion == "pin-plain":  # the un-augmented cosine top-1 first, then diffusion
            ranking = np.concatenate([[plain_top1], ranking[ranking != plain_top1]])
        return ranking

    return run


# ----------------------------------------------------------------------------- metrics
def evaluate(rr: Reranker | None, sets: dict[str, Queries], labels: np.ndarray, own: np.ndarray):
    res, times = {}, []
    for name, qs in sets.items():
        hits1, hits5, aps = [], [], []
        for i in range(len(qs.vectors)):
            excl = None if qs.instance else int(own[i])
            t = time.perf_counter()
            ranking = qs.order[i] if rr is None else rr(qs.vectors[i], qs.order[i],
                                                       qs.scores[i], excl, qs.plain_top1[i])
            times.append(time.perf_counter() - t)
            if qs.instance:
                hits1.append(ranking[0] == qs.targets[i])
                hits5.append(qs.targets[i] in ranking[:5])
            else:
                rel = labels[ranking] == qs.targets[i]
                cum = np.cumsum(rel)
                aps.append(float((cum / np.arange(1, len(rel) + 1))[rel].sum() / rel.sum()))
                hits1.append(bool(rel[0]))
        if qs.instance:
            res["r1"], res["r5"] = float(np.mean(hits1)), float(np.mean(hits5))
        else:
            res["map"], res["p1"] = float(np.mean(aps)), float(np.mean(hits1))
            res["map_se"] = float(np.std(aps) / np.sqrt(len(aps)))
            res.setdefault("_aps", {})[name] = aps
    res["ms"] = 1000 * float(np.mean(times)) if rr is not None else 0.0
    return res


# ----------------------------------------------------------------------------- study
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tag", default="lite0-squash224")
    ap.add_argument("--queries", type=int, default=1500, help="class-level query sample (seed 0)")
    ap.add_argument("--json", type=Path, default=OUT / "diffusion-results.jsonl")
    ap.add_argument("--quick", action="store_true", help="skip the alpha x k x gamma grid")
    ap.add_argument("--only", help="run only the configurations whose name contains this")
    args = ap.parse_args(argv)

    with np.load(OUT / f"{args.tag}.npz") as z:
        raw, labels = l2(z["gem3"].astype(np.float32)), z["labels"]
    with np.load(OUT / f"inst-{args.tag}.npz") as z:
        raw_inst, inst_ids = l2(z["gem3"].astype(np.float32)), z["instance_ids"]
    mean = raw.mean(axis=0)
    db, inst = l2(raw - mean), l2(raw_inst - mean)
    own = np.sort(np.random.default_rng(0).choice(len(db), args.queries, replace=False))

    t0 = time.time()
    centred = Space("centred", db)
    augmented = Space("dba5", dba(db))
    print(f"graphs built in {time.time() - t0:.1f} s", file=sys.stderr, flush=True)

    top1: dict[str, np.ndarray] = {}

    def query_sets(space: Space, class_vectors: np.ndarray) -> dict[str, Queries]:
        o, s = first_ranking(class_vectors, space.db, own)
        oi, si = first_ranking(inst, space.db, None)
        top1.setdefault("class", o[:, 0])  # the first call is the plain centred space
        top1.setdefault("instance", oi[:, 0])
        return {"class": Queries(class_vectors, o, s, labels[own], False, top1["class"]),
                "instance": Queries(inst, oi, si, inst_ids, True, top1["instance"])}

    plain = query_sets(centred, db[own])
    dba_db = query_sets(augmented, augmented.db[own])  # query = its augmented vector
    dba_raw = query_sets(augmented, db[own])  # query = an outside image, raw descriptor

    lit = {"k": 50, "alpha": 0.99, "gamma": 3.0, "solver": "cg"}
    prod = {"k": 50, "alpha": 0.9, "gamma": 3.0, "solver": "iter"}
    runs: list[tuple[str, str, Space, dict[str, Queries], Callable[[], Reranker | None]]] = [
        ("cosine", "baseline", centred, plain, lambda: None),
        ("product qe (n3, a3)", "product", centred, plain, lambda: product_reranker(centred, "qe")),
        ("product diffusion (k50 a0.9 g3, 20 it)", "product", centred, plain,
         lambda: product_reranker(centred, "diffusion")),
        ("re-impl. product diffusion (20 it)", "product", centred, plain,
         lambda: diffusion_reranker(centred, **prod)),
        ("product params, CG solve", "product", centred, plain,
         lambda: diffusion_reranker(centred, **{**prod, "solver": "cg"})),
        ("literature k50 a0.99 g3 CG", "literature", centred, plain,
         lambda: diffusion_reranker(centred, **lit)),
        ("literature params, 20 fixed-point it", "literature", centred, plain,
         lambda: diffusion_reranker(centred, **{**lit, "solver": "iter"})),
    ]
    for base, kind, params in (("product", "product", prod), ("literature", "literature", lit)):
        for fusion in ("max", "max-top1", "pin-top1", "gate-0.8", "gate-0.9", "margin-0.05",
                       "margin-0.1"):
            runs.append((f"{base} diffusion + {fusion}", f"{kind}+fusion", centred, plain,
                         lambda p=params, fu=fusion: diffusion_reranker(centred, **p, fusion=fu)))
    for qname, qsets in (("q=db", dba_db), ("q=raw", dba_raw)):
        runs += [
            (f"DBA5 cosine {qname}", "dba", augmented, qsets, lambda: None),
            (f"DBA5 + product qe {qname}", "dba", augmented, qsets,
             lambda: product_reranker(augmented, "qe")),
            (f"DBA5 + product diffusion {qname}", "dba", augmented, qsets,
             lambda: product_reranker(augmented, "diffusion")),
            (f"DBA5 + literature diffusion {qname}", "dba", augmented, qsets,
             lambda: diffusion_reranker(augmented, **lit)),
            (f"DBA5 + product diffusion + pin-top1 {qname}", "dba+fusion", augmented, qsets,
             lambda: diffusion_reranker(augmented, **prod, fusion="pin-top1")),
            (f"DBA5 + product diffusion + pin-plain {qname}", "dba+fusion", augmented, qsets,
             lambda: diffusion_reranker(augmented, **prod, fusion="pin-plain")),
        ]
    if not args.quick:
        for solver in ("cg", "iter"):
            for gamma in (1.0, 3.0):
                for k in (15, 30, 50):
                    for alpha in (0.8, 0.9, 0.95, 0.99):
                        p = {"k": k, "alpha": alpha, "gamma": gamma, "solver": solver}
                        label = "CG" if solver == "cg" else "20 it"
                        runs.append((f"grid k{k} a{alpha} g{gamma:g} {label}", "grid", centred,
                                     plain, lambda p=p: diffusion_reranker(centred, **p)))

    if args.only:
        runs = [r for r in runs if r[0] == "cosine" or args.only in r[0]]
    c1, i1 = plain["class"].scores[:, 0], plain["instance"].scores[:, 0]
    hit = plain["instance"].order[:, 0] == inst_ids
    print("top-1 cosine quantiles (10/50/90%): class "
          f"{np.quantile(c1, [0.1, 0.5, 0.9]).round(3).tolist()}, instance hits "
          f"{np.quantile(i1[hit], [0.1, 0.5, 0.9]).round(3).tolist()}; "
          f"class queries with top-1 > 0.9: {(c1 > 0.9).mean():.3f}, > 0.85: "
          f"{(c1 > 0.85).mean():.3f}, > 0.8: {(c1 > 0.8).mean():.3f}", flush=True)
    print("| configuration | kind | class mAP (± s.e.) | class P@1 | inst R@1 | inst R@5 | ms/query |")
    print("|---|---|---|---|---|---|---|", flush=True)
    reference = None
    with open(args.json, "a") as out:
        for name, kind, space, qsets, make in runs:
            res = evaluate(make(), qsets, labels, own)
            aps = np.asarray(res.pop("_aps")["class"])
            if reference is None:
                reference = aps
            res["map_delta_vs_cosine_se"] = float(np.std(aps - reference) / np.sqrt(len(aps)))
            row = {"name": name, "kind": kind, "space": space.name, "tag": args.tag,
                   "class_queries": len(own), "instance_queries": len(inst), **res}
            out.write(json.dumps(row) + "\n")
            out.flush()
            print(f"| {name} | {kind} | {res['map']:.3f} ± {res['map_se']:.3f} | "
                  f"{res['p1']:.3f} | {res['r1']:.3f} | {res['r5']:.3f} | {res['ms']:.1f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
