"""Class-level retrieval quality on Caltech-101 (the dev set), through the real product path.

Indexes the 8,677 labelled photos (every class folder except BACKGROUND_Google) into a fresh
index with the default settings, then queries every image against all the others through
the index's vector store and reports mAP over the full ranking, P@1, P@10 and recall@K
(relevant = same class). The seed's category-routed search is measured too.

    python benchmarks/quality.py [--model lite0] [--limit N] [--out benchmarks/results/quality.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import lookalike
from lookalike.evaluate import evaluate_vectors, folder_ground_truth

REPO = Path(__file__).resolve().parents[1]
CALTECH = REPO.parent / "shared" / "datasets" / "caltech101"


def labelled_images(limit: int | None) -> list[Path]:
    rows = (CALTECH / "manifest.csv").read_text().splitlines()[1:]
    paths = [CALTECH / r.split(",")[0] for r in rows if not r.endswith(",BACKGROUND_Google")]
    paths.sort()
    if limit:
        rng = np.random.default_rng(0)
        paths = sorted(rng.choice(paths, size=limit, replace=False).tolist())
    return [Path(p) for p in paths]


def link_tree(paths: list[Path], dest: Path) -> Path:
    """Symlink the chosen photos into dest/<class>/ so the index sees class folders."""
    for p in paths:
        target = dest / p.parent.name / p.name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(p, target)
    return dest


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
    parser.add_argument("--model", default="lite0")
    parser.add_argument("--limit", type=int, help="use a random subset of N images (quick check)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "quality.json"))
    parser.add_argument("--keep", help="keep the index in this folder")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lookalike-quality-"))
    try:
        photos = link_tree(labelled_images(args.limit), work / "photos")
        db = Path(args.keep) if args.keep else work / "index"
        with lookalike.Index.open(db, model=args.model) as index:
            t0 = time.perf_counter()
            report = index.add([photos])
            index_seconds = time.perf_counter() - t0
            ids, vectors = index.catalogue.all_vectors()
            truth = folder_ground_truth(index.catalogue.locations_for(ids.tolist()))
            t0 = time.perf_counter()
            default = evaluate_vectors(ids, vectors, truth, index.store.search)
            eval_seconds = time.perf_counter() - t0
            routed = evaluate_vectors(ids, vectors, truth, category_routed_rank(index, ids, vectors))
        result = {
            "benchmark": "caltech101 class-level retrieval, each image vs the rest",
            "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "model": args.model,
            "model_id": index.embedder.model_id,
            "images": len(ids),
            "indexing_seconds": round(index_seconds, 1),
            "indexing_images_per_second": round(report.embedded / index_seconds, 1),
            "default": default.as_dict(),
            "category_routed_2019": routed.as_dict(),
            "eval_seconds": round(eval_seconds, 1),
        }
        print(json.dumps(result, indent=2))
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
