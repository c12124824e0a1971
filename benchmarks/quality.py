"""Class-level retrieval quality on Caltech-101 (the dev set), through the real product path.

Indexes the 8,677 labelled photos (every class folder except BACKGROUND_Google) with the
default settings, then queries every image against all the others through the index's own
ranking (``Index.rank``: the cosine search, then the stages of the configuration's query
pipeline; the query itself left out) and reports mAP over the full ranking, P@1, P@10 and
recall@K (relevant = same class). Each configuration is a whole pipeline spec string
(``CONFIGS``, or a spec given as ``--config``), recorded with its row. The 2019 script's
category routing is measured too.

``--distractors`` adds the 233 even-numbered BACKGROUND_Google photos to the database (the
instance benchmark's database, benchmarks/instance.py); they are never relevant and never
queries. The index lives under ``--work`` (default /tmp/lookalike-quality) and is reused
(``Index.add`` is incremental); ``--limit N`` indexes a fixed-seed sample of N photos into a
temporary folder instead (a quick check).

    python benchmarks/quality.py [--model lite0] [--out benchmarks/results/quality.json]
    python benchmarks/quality.py --config none --config qe --config diffusion --config default
    python benchmarks/quality.py --limit 300 --queries 20 --config none --config default --out /tmp/quality.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import caltech  # noqa: E402

import lookalike
from lookalike.evaluate import evaluate_vectors, folder_ground_truth, index_ranker
from lookalike.query.spec import parse

REPO = Path(__file__).resolve().parents[1]


CONFIGS = {
    # name: the whole query pipeline measured (lookalike.query.spec)
    "none": "cosine",
    "qe": "cosine,qe",
    "diffusion": "cosine,diffusion",
    "verify10": "cosine,verify:10,words:10",
    "qe+verify10": "cosine,qe,verify:10,words:10",
    "diffusion+verify10": "cosine,diffusion,verify:10,words:10",
    "diffusion+verify10+regions5": "cosine,diffusion,verify:10,words:10,regions:5",
    # the default pipeline with query expansion always, never diffusion
    "qe+verify+regions": "cosine,qe,verify:20,words:10,regions:10",
    "default": lookalike.Settings().pipeline,  # the product's default pipeline
}


def config_spec(name: str) -> str:
    """The pipeline spec of a named configuration, or ``name`` itself as a spec string."""
    return parse(CONFIGS.get(name, name)).spec  # an actionable error if it is no pipeline


def ranker(index: lookalike.Index, spec: str):
    """``(rank, pass_ids)`` for :func:`evaluate_vectors`: the index's own ranking with the
    pipeline ``spec``; the plain cosine ranking as one batched search of the store (the
    same ranking, as ``evaluate_index`` measures it)."""
    options = lookalike.SearchOptions(pipeline=spec)
    if index.pipeline(options).spec == "cosine":
        return index.store.search, False
    return index_ranker(index, options), True


def labelled_images(limit: int | None, distractors: bool = False) -> list[Path]:
    """The labelled Caltech-101 photos (with ``distractors``: and the even-numbered
    BACKGROUND_Google ones), sorted; with ``limit``, a fixed-seed sample of that many."""
    manifest, labels = caltech.manifest()
    paths = [p for p, label in zip(manifest, labels, strict=True) if label != "BACKGROUND_Google"]
    if distractors:
        paths += [
            p for p, label in zip(manifest, labels, strict=True)
            if label == "BACKGROUND_Google" and int(p.stem[-4:]) % 2 == 0
        ]
    paths.sort()
    if limit:
        rng = np.random.default_rng(0)
        paths = sorted(rng.choice(paths, size=limit, replace=False).tolist())
    return [Path(p) for p in paths]




def category_routed_rank(index, ids, vectors):
    """The 2019 design: candidates share a top-5 category with the query, then the rest."""
    labels = index.catalogue.labels_for(ids.tolist())
    label_sets = {i: {c for c, _ in labels[int(i)]} for i in ids}

    def rank(queries: np.ndarray, k: int):
        scores = queries @ vectors.T
        out = np.empty((len(queries), len(ids)), dtype=np.int64)
        for r, _q in enumerate(queries):
            qid = ids[int(np.argmax(scores[r]))]  # the query is in the index: its own row
            inside = np.fromiter((bool(label_sets[i] & label_sets[qid]) for i in ids), bool, len(ids))
            # Category members first (by score), everything else after: as if the seed's
            # answer list were completed by the global ranking.
            key = np.where(inside, scores[r], scores[r] - 10.0)
            out[r] = ids[np.argsort(-key, kind="stable")]
        return None, out

    return rank


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=lookalike.Settings().model)
    parser.add_argument("--limit", type=int, help="use a random subset of N images (quick check)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "quality.json"))
    parser.add_argument("--work", type=Path, help="index folder parent, reused (default /tmp/lookalike-quality, or /tmp/lookalike-instance with --distractors)")
    parser.add_argument("--distractors", action="store_true", help="add the even-numbered BACKGROUND_Google photos to the database")
    parser.add_argument("--config", action="append", help=f"pipeline to measure: one of {', '.join(CONFIGS)} or a spec string such as cosine,qe:5 (repeatable; default: none and default)")
    parser.add_argument("--no-routing", action="store_true", help="skip the 2019 category-routing measurement")
    parser.add_argument("--queries", type=int, help="query with a fixed-seed sample of N images (the database stays whole)")
    args = parser.parse_args()

    work = args.work or Path("/tmp/lookalike-instance" if args.distractors else "/tmp/lookalike-quality")
    if args.limit:
        work = Path(tempfile.mkdtemp(prefix="lookalike-quality-"))
    try:
        photos = caltech.link_tree(labelled_images(args.limit, args.distractors), work / "photos")
        db = work / "index"
        with lookalike.Index.open(db, model=args.model) as index:
            t0 = time.perf_counter()
            report = index.add([photos])
            index_seconds = time.perf_counter() - t0
            ids, vectors = index.catalogue.all_vectors()
            truth = folder_ground_truth(index.catalogue.locations_for(ids.tolist()))
            background = {i for i, locs in index.catalogue.locations_for(ids.tolist()).items()
                          if "/BACKGROUND_Google/" in locs[0]}
            truth = {q: rel - background for q, rel in truth.items() if q not in background}
            if args.queries and args.queries < len(truth):
                keep = np.random.default_rng(0).choice(sorted(truth), args.queries, replace=False)
                truth = {int(q): truth[int(q)] for q in keep}
            configs = {}
            for name in args.config or ["none", "default"]:
                spec = config_spec(name)
                rank, pass_ids = ranker(index, spec)
                t0 = time.perf_counter()
                report_ = evaluate_vectors(ids, vectors, truth, rank, pass_ids=pass_ids)
                seconds = time.perf_counter() - t0
                configs[name] = {
                    "pipeline": spec,
                    **report_.as_dict(),
                    "eval_seconds": round(seconds, 1),
                    "ms_per_query": round(1000 * seconds / max(report_.queries, 1), 2),
                }
                print(name, json.dumps(configs[name]), flush=True)
            routed = None
            if not args.no_routing:
                t0 = time.perf_counter()
                routed = evaluate_vectors(ids, vectors, truth, category_routed_rank(index, ids, index.store.transform.apply(vectors)))
                routed_seconds = time.perf_counter() - t0
        result = {
            "benchmark": "caltech101 class-level retrieval, each image vs the rest"
            + (" (+233 BACKGROUND_Google distractors)" if args.distractors else ""),
            **caltech.run_info(),
            "model": args.model,
            "model_id": index.embedder.model_id,
            "images": len(ids),
            "queries": len([q for q in truth if truth[q]]),
            "indexing_seconds": round(index_seconds, 1),
            "newly_embedded": report.embedded,
            "settings": {"pipeline": index.settings.pipeline, "rerank": index.rerank_method()},
            "configs": configs,
        }
        if routed is not None:
            result["category_routed_2019"] = {**routed.as_dict(), "eval_seconds": round(routed_seconds, 1)}
        print(json.dumps(result, indent=2))
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    finally:
        if args.limit:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
