"""What each query-time step costs: decode+embed, search, query expansion, diffusion, verification,
regional search.

Runs the instance benchmark's queries (benchmarks/instance.py, built on demand) one at a time
against its index and times each step separately, with the same code the product runs:

* ``embed``: decode + Lite0 inference of the query;
* ``search``: the cosine search (exact FlatStore at this size), ``RerankParams.depth`` (3,000) matches;
* ``search_categories_2019``: the seed's category routing (label lookup + filtered search);
* ``qe``: the expanded query's second search (+ reading 3 vectors);
* ``diffusion``: graph diffusion over those matches (graph and its links already built);
* ``verify10`` / ``verify20``: ORB features of the query, the 10 (20) candidates' stored
  features read from the catalogue (files read and decoded where an image has none),
  matching and RANSAC (the in-memory feature cache off);
* ``words_lookup``: the query's ORB features mapped to visual words and looked up in the
  inverted file (already built), 10 candidates;
* ``verify20_words10``: verification of the first 20 matches and of those 10 word
  candidates, as a default query does;
* ``regions_embed``: the regional pass: inference at 512 px and GeM over 30 windows;
* ``regions_search``: the 30 regional searches (11 matches each), merged, and the window
  closest to each of the 10 candidates;
* ``regions_verify10``: verification of the 10 regional candidates against their windows
  (each window's ORB features, the candidates' stored features, matching, RANSAC; it also
  re-extracts the whole query's features, ~5 ms that a real query has already spent).
  The three regional steps run only when nothing among the first matches verifies.

``--synthetic N`` also times the cosine search and the QE search on an exact store of N
vectors (database vectors with noise), to show how the search steps grow with the
collection; the approximate store's latency at 100k is in the ANN section of this file.

    python benchmarks/query_costs.py [--queries 200] [--synthetic 100000] [--out benchmarks/results/query_costs.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import caltech  # noqa: E402
import instance  # noqa: E402

import lookalike  # noqa: E402
from lookalike.index.vectors import FlatStore  # noqa: E402
from lookalike.index.words import shipped_vocabulary  # noqa: E402
from lookalike.rerank import RerankParams, expand_query  # noqa: E402
from lookalike.search import RegionParams, regional_checks, search_vectors  # noqa: E402
from lookalike.verify import Verifier, VerifyParams, extract  # noqa: E402


def ms(samples: list[float]) -> dict:
    return {"p50": round(1000 * statistics.median(samples), 2),
            "p90": round(1000 * float(np.percentile(samples, 90)), 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/lookalike-instance"))
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--synthetic", type=int, default=100_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    db, backgrounds = instance.database_files()
    queries = instance.make_queries(args.work, 600, 1234, db, backgrounds)[: args.queries]
    photos = caltech.link_tree(db, args.work / "photos")
    steps: dict[str, list[float]] = {
        k: [] for k in ("embed", "search", "search_categories_2019", "qe", "diffusion", "verify10",
                        "verify20", "words_lookup", "verify20_words10", "regions_embed",
                        "regions_search", "regions_verify10")
    }
    regions = RegionParams()
    params = RerankParams()
    with lookalike.Index.open(args.work / "index") as index:
        index.add([photos])
        store = index.store
        inner = store.inner
        graph = index._knn_graph()
        index.search(queries[0]["path"], 1)
        verifier = Verifier(VerifyParams(cache=0))
        vocabulary = shipped_vocabulary()
        index._inverted_file()  # built once, like the graph
        for q in queries:
            t = time.perf_counter()
            image = index._decode(q["path"])
            emb = index.embedder.embed_images([image])
            steps["embed"].append(time.perf_counter() - t)
            t = time.perf_counter()
            vector = store.transform.apply(emb.vectors)[0]
            scores, ids = inner.search(vector[None, :], params.depth)
            steps["search"].append(time.perf_counter() - t)
            t = time.perf_counter()  # the seed's routing: label lookup in SQLite + a filtered search
            search_vectors(index.catalogue, store, emb.vectors, emb.label_ids, k=10, route="categories")
            steps["search_categories_2019"].append(time.perf_counter() - t)
            t = time.perf_counter()
            expanded = expand_query(vector, scores[0], index._vectors_of(ids[0][: params.qe_n]),
                                    params.qe_n, params.qe_alpha)
            inner.search(expanded[None, :], 10)
            steps["qe"].append(time.perf_counter() - t)
            t = time.perf_counter()
            graph.diffuse(ids[0], scores[0], params)
            steps["diffusion"].append(time.perf_counter() - t)
            index._verifier = verifier
            index._verifier_generation = index.catalogue.generation
            t = time.perf_counter()
            index._verify(image, ids[0][:10], ids[0][:10])
            steps["verify10"].append(time.perf_counter() - t)
            t = time.perf_counter()
            index._verify(image, ids[0][:20], ids[0][:20])
            steps["verify20"].append(time.perf_counter() - t)
            t = time.perf_counter()
            features = extract(image, verifier.params)
            if features.descriptors is not None:
                index._inverted_file().search(vocabulary.quantise(features.descriptors), 10)
            steps["words_lookup"].append(time.perf_counter() - t)
            t = time.perf_counter()
            index._verify(image, ids[0][:20], ids[0][:20], words=10)
            steps["verify20_words10"].append(time.perf_counter() - t)
            t = time.perf_counter()
            raw_regions, boxes = index.embedder.region_vectors(image, regions.size, regions.levels)
            steps["regions_embed"].append(time.perf_counter() - t)
            t = time.perf_counter()  # as Index._regional: transform, 30 searches, closest windows
            extra = regional_checks(store.transform.apply(raw_regions), boxes, store.inner.search,
                                    index._vectors_of, 10, params=regions)
            steps["regions_search"].append(time.perf_counter() - t)
            t = time.perf_counter()  # nothing to check first, so only the regional candidates
            index._verify(image, ids[0][:10], [], lambda extra=extra: extra)
            steps["regions_verify10"].append(time.perf_counter() - t)
        result = {
            "benchmark": "per-step query cost (ms), one query at a time",
            **caltech.run_info(argv),
            "images": len(index),
            "queries": len(queries),
            "steps_ms": {k: ms(v) for k, v in steps.items()},
        }
        if args.synthetic:
            rng = np.random.default_rng(0)
            base = inner.vectors
            rows = rng.integers(0, len(base), args.synthetic)
            big = base[rows] + rng.normal(0, 0.02, (args.synthetic, base.shape[1])).astype(np.float32)
            big /= np.linalg.norm(big, axis=1, keepdims=True)
            flat = FlatStore(np.arange(args.synthetic), big)
            del big
            times, qe_times = [], []
            for q in queries[:100]:
                vector = store.transform.apply(index.embedder.embed_images([index._decode(q["path"])]).vectors)[0]
                t = time.perf_counter()
                s, i = flat.search(vector[None, :], params.depth)
                times.append(time.perf_counter() - t)
                t = time.perf_counter()
                expanded = expand_query(vector, s[0], flat.vectors[i[0][: params.qe_n]], params.qe_n, params.qe_alpha)
                flat.search(expanded[None, :], 10)
                qe_times.append(time.perf_counter() - t)
            result["synthetic_exact_store"] = {"images": args.synthetic, "search": ms(times), "qe": ms(qe_times)}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
