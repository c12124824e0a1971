"""What each query-time step costs: decode+embed, search, query expansion, diffusion, verification,
regional search.

Runs the instance benchmark's queries (benchmarks/instance.py, built on demand) one at a time
against its index and times each step separately, with the same code the product runs: the
query stages of :mod:`lookalike.query` applied to a real ``Query`` and ``Ranking``, on the
index folder they read in a search (``Index.folder``):

* ``embed``: decode (at ``Index.query_size``) + the model's inference (``Index.embed``);
* ``search``: the descriptor transform and the first cosine search of the store
  (``store.inner.search``, exact at this size), as deep as the default pipeline's stages ask;
* ``search_categories_2019``: the 2019 script's category routing, ``Index.rank`` with
  ``route="categories"`` and the pipeline ``cosine`` (label lookup + a filtered search);
* ``qe``: ``QueryExpansion.apply``: the best matches' vectors read and a second search;
* ``diffusion``: ``Diffusion.apply`` over the first search's matches (the neighbour graph
  and its links already built);
* ``verify10`` / ``verify20``: ``Verify(10)`` / ``Verify(20)`` applied for a new query: its
  ORB features, the candidates' stored features read from the catalogue (files read and
  decoded where an image has none), matching and RANSAC (the verifier's feature cache off,
  ``VerifyParams.cache=0``);
* ``words_lookup``: the query's ORB features mapped to visual words and looked up in the
  word index (already built), 10 candidates, as ``Words.apply`` does before verifying them;
* ``verify20_words10``: ``Verify(20)`` then ``Words(10)`` on one new query, as a default
  query does;
* ``regions_embed``: the regional pass: inference at ``RegionParams.size`` pooled over the
  R-MAC windows (``Embedder.region_vectors``);
* ``regions_search``: the windows' searches, merged, and the window closest to each of the
  10 candidates (``regional_checks``);
* ``regions_verify10``: verification of those 10 candidates against their windows (each
  window's ORB features, the candidates' stored features, matching, RANSAC); the query's
  own features are already extracted, as in a real query;
* ``regions10``: the whole ``Regions(10)`` stage (the three steps above) on a ranking in
  which nothing verified.

The regional steps run only when nothing among the first matches verifies surely.

* ``default``: the whole search part of a default query after its picture is embedded
  (``Index.rank`` with the query's picture: candidates, transform, first search, diffusion,
  and the verification stages where the gate, ``Settings.gate``, lets them run), for the
  instance queries (each has its original in the index);
* ``default_no_copy``: the same for ``--no-copy`` photos with no copy in the index (the
  unindexed ``BACKGROUND_Google`` photos the *paste* edits use as backgrounds), the usual
  case for a search;
* ``default_cpu`` / ``default_no_copy_cpu``: the process's CPU time (all threads) of the
  same, beside the wall time on a shared machine.

Every step runs on one BLAS thread, as a search does (:mod:`lookalike.query.threads`).

``--synthetic N`` also times the cosine search and ``QueryExpansion.apply`` on an exact store
of N vectors (database vectors with noise), to show how the search steps grow with the
collection; the approximate store's latency at scale is measured by benchmarks/ann.py.
``--limit N`` runs on a temporary index of a fixed-seed sample of N database photos instead
(a quick check; below ``RerankParams.min_images`` images diffusion falls back to query
expansion).

    python benchmarks/query_costs.py [--queries 200] [--synthetic 100000] [--out benchmarks/results/query_costs.json]
    python benchmarks/query_costs.py --limit 600 --queries 10 --synthetic 20000 --out /tmp/query_costs.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import caltech  # noqa: E402
import instance  # noqa: E402

import lookalike  # noqa: E402
from lookalike.images import load_image  # noqa: E402
from lookalike.index.transform import Transform, TransformedStore  # noqa: E402
from lookalike.index.vectors import FlatStore  # noqa: E402
from lookalike.index.words import shipped_vocabulary  # noqa: E402
from lookalike.query.regions import regional_checks  # noqa: E402
from lookalike.query.rerank import Diffusion, QueryExpansion  # noqa: E402
from lookalike.query.stages import Query, Ranking  # noqa: E402
from lookalike.query.threads import one_blas_thread  # noqa: E402
from lookalike.query.verification import Regions, Verify, Words  # noqa: E402
from lookalike.settings import Settings  # noqa: E402

STEPS = ("embed", "search", "search_categories_2019", "qe", "diffusion", "verify10", "verify20",
         "words_lookup", "verify20_words10", "regions_embed", "regions_search",
         "regions_verify10", "regions10", "default", "default_cpu")
K = 10  # matches a query asks for


@dataclass
class SyntheticCollection:
    """The part of a :class:`~lookalike.query.stages.Collection` query expansion reads: a
    synthetic exact store (already in the store's space) and the settings."""

    settings: Settings
    store: TransformedStore


def ms(samples: list[float]) -> dict:
    return {"p50": round(1000 * statistics.median(samples), 2),
            "p90": round(1000 * float(np.percentile(samples, 90)), 2),
            "p95": round(1000 * float(np.percentile(samples, 95)), 2)}


def decode(index: lookalike.Index, path: str):
    """The query picture as a search decodes it (at ``Index.query_size``)."""
    settings = index.settings
    return load_image(path, max_pixels=settings.max_pixels, max_bytes=settings.max_file_bytes,
                      target_size=index.query_size)


def time_steps(index: lookalike.Index, queries: list[dict]) -> tuple[dict[str, list[float]], dict]:
    """Seconds of each step per query, and what the steps ran with."""
    steps: dict[str, list[float]] = {k: [] for k in STEPS}
    folder, store = index.folder, index.store
    settings = index.settings
    regions = settings.regions
    cascade = index.pipeline()  # the default pipeline: the first search is as deep as it asks
    depth = max([K] + [stage.depth(folder) for stage in cascade.stages])
    routed = lookalike.SearchOptions(k=K, route="categories", pipeline="cosine")
    vocabulary = shipped_vocabulary()
    index.search(queries[0]["path"], 1)  # warm: model session, store, caches
    index.graph()  # built once, as after indexing
    index.word_index()
    region_size = regions.size if store.inner.kind == "flat" else regions.size_approximate
    for q in queries:
        t = time.perf_counter()
        image = decode(index, q["path"])
        emb = index.embed([image])
        steps["embed"].append(time.perf_counter() - t)

        t = time.perf_counter()
        vector = store.transform.apply(emb.vectors)[0]
        scores, ids = store.inner.search(vector[None, :], depth)
        steps["search"].append(time.perf_counter() - t)
        scores, ids = scores[0], ids[0]

        def new_query(vector=vector, image=image) -> Query:
            """A query as the cascade makes it: nothing extracted from its picture yet."""
            return Query(vector, K, picture=lambda: image)

        def first_ranking(ids=ids, scores=scores) -> Ranking:
            return Ranking(ids, scores, order=ids)

        t = time.perf_counter()  # label lookup in SQLite + a filtered search
        index.rank(emb.vectors, routed, label_ids=emb.label_ids)
        steps["search_categories_2019"].append(time.perf_counter() - t)

        for name, stage in (("qe", QueryExpansion()), ("diffusion", Diffusion())):
            query, ranking = new_query(), first_ranking()
            t = time.perf_counter()
            stage.apply(query, ranking, folder)
            steps[name].append(time.perf_counter() - t)

        for name, stages in (("verify10", [Verify(10)]), ("verify20", [Verify(20)]),
                             ("verify20_words10", [Verify(20), Words(10)])):
            query, ranking = new_query(), first_ranking()
            t = time.perf_counter()
            for stage in stages:
                stage.apply(query, ranking, folder)
            steps[name].append(time.perf_counter() - t)

        query = new_query()
        t = time.perf_counter()  # what Words.apply does before verifying its candidates
        features = query.features(folder)
        if features is not None and features.descriptors is not None:
            folder.word_index().search(vocabulary.quantise(features.descriptors), 10)
        steps["words_lookup"].append(time.perf_counter() - t)

        # The regional stage's steps, as Regions.apply runs them (the query's features are
        # extracted by the verification before it).
        t = time.perf_counter()
        raw_regions, boxes = index.embedder.region_vectors(image, region_size, regions.levels)
        steps["regions_embed"].append(time.perf_counter() - t)
        t = time.perf_counter()  # transformed once, then searched in the store's own space
        found = regional_checks(store.transform.apply(raw_regions), boxes, store.inner.search,
                                store.vectors, 10, params=regions)
        steps["regions_search"].append(time.perf_counter() - t)
        t = time.perf_counter()  # nothing checked before: every candidate against its window
        load = folder.feature_loader([i for i, _ in found])
        folder.verifier.count_region_inliers(image, features, found, load)
        steps["regions_verify10"].append(time.perf_counter() - t)

        ranking = first_ranking()  # nothing verified: the stage runs
        t = time.perf_counter()
        Regions(10).apply(query, ranking, folder)
        steps["regions10"].append(time.perf_counter() - t)
        wall, cpu = default_search(index, image)
        steps["default"].append(wall)
        steps["default_cpu"].append(cpu)
    return steps, {"pipeline": cascade.spec, "search_depth": depth}


def default_search(index: lookalike.Index, image) -> tuple[float, float]:
    """Seconds of a default query's search part, everything after embedding ``image``: wall
    time and the process's CPU time (all threads)."""
    emb = index.embed([image])
    t, cpu = time.perf_counter(), time.process_time()
    index.rank(emb.vectors, lookalike.SearchOptions(k=K), label_ids=emb.label_ids, pictures=[lambda: image])
    return time.perf_counter() - t, time.process_time() - cpu


def synthetic_store(index: lookalike.Index, queries: list[dict], n: int) -> dict:
    """The cosine search and query expansion on an exact store of ``n`` vectors made from
    the index's own (database vectors with noise, fixed seed)."""
    store = index.store
    rng = np.random.default_rng(0)
    base = store.inner.matrix  # the exact store's vectors, in its space
    rows = rng.integers(0, len(base), n)
    big = base[rows] + rng.normal(0, 0.02, (n, base.shape[1])).astype(np.float32)
    big /= np.linalg.norm(big, axis=1, keepdims=True)
    flat = FlatStore(np.arange(n), big)
    del big
    collection = SyntheticCollection(index.settings, TransformedStore(flat, Transform(None, n)))
    depth = max([K] + [stage.depth(index.folder) for stage in index.pipeline().stages])
    times, qe_times = [], []
    for q in queries[:100]:
        vector = store.transform.apply(index.embed([q["path"]]).vectors)[0]
        t = time.perf_counter()
        s, i = flat.search(vector[None, :], depth)
        times.append(time.perf_counter() - t)
        query, ranking = Query(vector, K), Ranking(i[0], s[0], order=i[0])
        t = time.perf_counter()
        QueryExpansion().apply(query, ranking, collection)
        qe_times.append(time.perf_counter() - t)
    return {"images": n, "search": ms(times), "qe": ms(qe_times)}


def query_arguments(parser: argparse.ArgumentParser, queries: int, no_copy: int) -> None:
    """The instance benchmark's folder and how many of its queries, and of the photos with
    no copy, to time (shared with query_ab.py)."""
    parser.add_argument("--work", type=Path, default=Path("/tmp/lookalike-instance"))
    parser.add_argument("--queries", type=int, default=queries)
    parser.add_argument("--no-copy", type=int, default=no_copy, help="photos with no copy in the index timed by ``default_no_copy``")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    query_arguments(parser, 200, 100)
    parser.add_argument("--synthetic", type=int, default=100_000)
    parser.add_argument("--limit", type=int, help="a temporary index of a fixed-seed sample of N database photos (quick check)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    with caltech.quick_check_folder(args, "lookalike-query-costs-"):
        result = run(args, argv)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def run(args: argparse.Namespace, argv: list[str] | None) -> dict:
    db, backgrounds = instance.database_files()
    db = instance.database_sample(db, args.limit)
    # The instance benchmark's 600 queries (shared with it), or new ones for a sample.
    count = args.queries if args.limit else 600
    queries = instance.make_queries(args.work, count, 1234, db, backgrounds)[: args.queries]
    photos = caltech.link_tree(db, args.work / "photos")
    settings = Settings()
    settings = settings.with_(verify=replace(settings.verify, cache=0))  # every query reads
    with lookalike.Index.open(args.work / "index", settings=settings) as index:
        index.add([photos])
        with one_blas_thread():  # as in a search (lookalike.query.threads)
            steps, ran = time_steps(index, queries)
        result = {
            "benchmark": "per-step query cost (ms), one query at a time",
            **caltech.run_info(argv),
            "images": len(index),
            "queries": len(queries),
            **ran,
            "steps_ms": {k: ms(v) for k, v in steps.items()},
        }
        no_copy = [default_search(index, decode(index, str(p))) for p in backgrounds[: args.no_copy]]
        result["steps_ms"]["default_no_copy"] = ms([w for w, _ in no_copy]) | {"queries": len(no_copy)}
        result["steps_ms"]["default_no_copy_cpu"] = ms([c for _, c in no_copy])
        if args.synthetic:
            result["synthetic_exact_store"] = synthetic_store(index, queries, args.synthetic)
    return result


if __name__ == "__main__":
    sys.exit(main())
