"""A query at a million images: the default pipeline through ``Index.search``, with copies.

    python benchmarks/million.py [--n 1000000] [--originals 300] [--no-copy 100]
                                 [--work /tmp/million] [--out benchmarks/results/million.json]
    python benchmarks/million.py --n 100000 --originals 100 --no-copy 40 \
        --out benchmarks/results/million-100k.json [--pipeline cosine,auto,verify:20,regions:10]

The collection: ``--n`` synthetic images (benchmarks/ann.py's synthesis: mixes of two real
Caltech-101 descriptors under log-normal noise, catalogue rows written in bulk, then
``Index.store`` builds the approximate store from the catalogue) plus ``--originals`` real
Caltech photos added by the product (``Index.add``: real descriptors, labels and local
features). The synthetic images are made only from photos that are neither originals (nor
their ``Faces``/``Faces_easy`` twins) nor unindexed ``BACKGROUND_Google`` photos, so no
synthetic image is a near-copy of a query.

Synthetic images are no pictures and store no local features, so verifying one would cost
nothing. To give each check its real cost, a first untimed pass runs every query and records
the images verification asks features for (``IndexFolder.feature_loader``); each synthetic one
among them then gets the stored local features of the real photo it was mostly made from (a
different photo: it verifies only where Caltech holds the same scene twice). The timed pass counts the checked images still without
features (``checked_without_features``, 0 when the two passes checked the same images).

Queries: one edited copy per original (benchmarks/instance.py's ten edits, in turn) and
``--no-copy`` unindexed ``BACKGROUND_Google`` photos, shuffled together, searched one at a
time with ``Index.search`` (default settings and pipeline) in a fresh process: total wall
ms, and the search part (from ``Index.rank`` on, after the query is embedded: the cascade and
the result's catalogue lookups) in wall and CPU ms (all threads); recall of the copy (its
original at rank 1 / in the top 10, by kind of edit; for each miss, untimed, where the cosine
ranking alone puts the original: among the first 20, which the pipeline verifies, or
deeper); RSS of that process. Also what the pipeline resolves to at this size (re-ranker,
word stage, neighbour graph), and the time the neighbour graph's links would take, from a
sample linked with the product's own code. ``--pipeline`` searches with another pipeline
(the first pass keeps the default). The index is kept under ``--work`` (``built`` marks it
complete) and reused by a re-run; ``--build-only`` builds it and measures nothing, so a long
build can run outside a timed window.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ann  # noqa: E402
import caltech  # noqa: E402
import instance  # noqa: E402

import lookalike  # noqa: E402
from lookalike.index.graph import KnnGraph  # noqa: E402
from lookalike.index.words import shipped_vocabulary  # noqa: E402

SEED = 20261206
GRAPH_SAMPLE = 2000  # images linked to estimate the neighbour graph's build time
COSINE_DEPTH = 100  # matches of the cosine ranking in which a missed original is looked for


def photos(originals: int, no_copy: int) -> tuple[list[Path], list[Path]]:
    """(originals to index, unindexed photos to query): fixed-seed Caltech choices."""
    db, backgrounds = instance.database_files()
    labelled = [p for p in db if p.parent.name != "BACKGROUND_Google"]
    return sorted(random.Random(SEED).sample(labelled, originals)), backgrounds[:no_copy]


def synthesis_base(originals: list[Path]) -> tuple[np.ndarray, list[str], list[Path]]:
    """The Caltech descriptors the synthetic images are made from: all but the originals,
    their twins and the unindexed background photos."""
    base, labels, paths = caltech.embeddings(lookalike.Settings().model)
    held = set().union(*(instance.twins(p) for p in originals))
    _, backgrounds = instance.database_files()
    held |= {f"{p.parent.name}/{p.name}" for p in backgrounds}
    keep = [i for i, p in enumerate(paths) if f"{p.parent.name}/{p.name}" not in held]
    return base[keep], [labels[i] for i in keep], [paths[i] for i in keep]


def build(folder: Path, n: int, originals: list[Path]) -> dict:
    """Write the synthetic catalogue, build the store, add the originals: seconds of each."""
    base, labels, _ = synthesis_base(originals)
    out = {"catalogue_write_s": round(ann.write_catalogue(folder, base, labels, n), 1)}
    with lookalike.Index.open(folder) as index:
        wall, cpu = time.perf_counter(), time.process_time()
        index.store  # noqa: B018 - the store built from the catalogue and saved
        out["store_build_s"] = round(time.perf_counter() - wall, 1)
        out["store_build_cpu_s"] = round(time.process_time() - cpu, 1)
        wall = time.perf_counter()
        report = index.add(originals)
        out["originals_add_s"] = round(time.perf_counter() - wall, 1)
        out["originals_indexed"] = report.embedded
    return out


def give_features(folder: Path, checked: set[int], n: int, originals: list[Path]) -> int:
    """Store, for each synthetic image in ``checked``, the local features of the real photo
    it was mostly made from (as indexing stores them); returns how many got features."""
    base, labels, paths = synthesis_base(originals)
    wanted = sorted(i for i in checked if i <= n)  # synthetic ids are 1..n
    sources: dict[int, int] = {}
    for start, vectors, made_from in ann.synthetic_chunks(base, labels, n):
        for image_id in wanted:
            if start < image_id <= start + len(vectors):
                sources[image_id] = int(made_from[image_id - start - 1])
        if start + len(vectors) >= wanted[-1]:
            break
    vocabulary = shipped_vocabulary()
    with lookalike.Index.open(caltech.embeddings_index(lookalike.Settings().model), create=False) as scratch:
        ids = {s: scratch.catalogue.image_for_location(str(paths[s])) for s in set(sources.values())}
        stored = scratch.catalogue.local_features_for([i for i in ids.values() if i is not None])
    with lookalike.Index.open(folder, create=False) as index:
        given = 0
        with index.catalogue.transaction() as db:
            for image_id, source in sources.items():
                if ids[source] in stored:
                    points, descriptors = stored[ids[source]]
                    index.catalogue.insert_local_features(
                        db, image_id, points, descriptors, vocabulary.quantise(descriptors))
                    given += 1
        index.folder.after_writes()  # the store follows the new generation (nothing to repair)
    return given


def run_queries(folder: str, queries: list[dict], timed: bool, pipeline: str | None = None) -> dict:
    """Search every query once with ``Index.search``: per-query rows, the images whose
    features verification asked for, and (``timed``) open time and RSS."""
    rss_start = ann.rss_mb()
    started = time.perf_counter()
    index = lookalike.Index.open(folder, create=False)
    index.store  # noqa: B018 - opened (memory-mapped), as a search would
    opened = time.perf_counter() - started
    checked: set[int] = set()
    loader, rank = index.folder.feature_loader, index.rank
    mark: dict[str, float] = {}

    def feature_loader(ids):
        checked.update(int(i) for i in ids)
        return loader(ids)

    def timed_rank(*args, **kwargs):
        mark["wall"], mark["cpu"] = time.perf_counter(), time.process_time()
        return rank(*args, **kwargs)

    index.folder.feature_loader, index.rank = feature_loader, timed_rank
    index.search(queries[0]["warm"], 10)  # model session, store, caches (not counted)
    checked.clear()
    rows = []
    for q in queries:
        wall, cpu = time.perf_counter(), time.process_time()
        result = index.search(q["path"], 10, pipeline=pipeline)
        end, end_cpu = time.perf_counter(), time.process_time()
        rows.append({
            "kind": q["kind"], "total_ms": 1000 * (end - wall), "total_cpu_ms": 1000 * (end_cpu - cpu),
            "search_ms": 1000 * (end - mark["wall"]), "search_cpu_ms": 1000 * (end_cpu - mark["cpu"]),
            "rank": rank_in(result, q["relevant"]), "first_is_copy": bool(result.matches) and result.matches[0].kind == "copy",
        })
    for q, row in zip(queries, rows, strict=True):  # untimed: the original by cosine alone
        if q["relevant"]:
            row["cosine_rank"] = rank_in(index.search(q["path"], COSINE_DEPTH, pipeline="cosine"), q["relevant"])
    stored = index.catalogue.local_features_for(sorted(checked))
    out = {"rows": rows, "checked": sorted(checked), "checked_without_features": len(checked - set(stored))}
    if timed:
        out |= {"open_s": round(opened, 3), "rss_mb": round(ann.rss_mb(), 1),
                "peak_rss_mb": round(ann.rss_mb("VmHWM"), 1),
                "rss_mb_python_and_libraries": round(rss_start, 1)}
    index.close()
    return out


def rank_in(result: lookalike.SearchResult, relevant: list[str]) -> int | None:
    """Rank of the first match whose ``class/name`` is in ``relevant`` (None: not found)."""
    names = [f"{Path(m.path).parent.name}/{Path(m.path).name}" for m in result.matches]
    return next((r for r, name in enumerate(names, 1) if name in relevant), None)


def in_fresh_process(folder: Path, queries: list[dict], timed: bool, pipeline: str | None = None) -> dict:
    (folder.parent / "queries-run.json").write_text(json.dumps(queries))
    out = subprocess.run(
        [sys.executable, __file__, "--run", str(folder), str(folder.parent / "queries-run.json"),
         "timed" if timed else "untimed", pipeline or ""], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def summary(rows: list[dict]) -> dict:
    """p50/p95 of each timing; recall of the copy where the rows have an original."""
    out = {"queries": len(rows)}
    for key in ("search_ms", "search_cpu_ms", "total_ms", "total_cpu_ms"):
        values = [r[key] for r in rows]
        out[key.replace("_ms", "_p50_ms")] = round(float(np.percentile(values, 50)), 1)
        out[key.replace("_ms", "_p95_ms")] = round(float(np.percentile(values, 95)), 1)
    if rows and rows[0]["kind"] != "no-copy":
        out["recall@1"] = round(float(np.mean([r["rank"] == 1 for r in rows])), 4)
        out["recall@10"] = round(float(np.mean([r["rank"] is not None for r in rows])), 4)
        missed = [r["cosine_rank"] for r in rows if r["rank"] != 1]  # where cosine put them
        out["missed_by_cosine_rank"] = {
            "1-20": sum(c is not None and c <= 20 for c in missed),
            f"21-{COSINE_DEPTH}": sum(c is not None and c > 20 for c in missed),
            f"over {COSINE_DEPTH}": sum(c is None for c in missed)}
    else:
        out["first_is_copy"] = sum(r["first_is_copy"] for r in rows)  # a copy claimed anyway
    return out


def pipeline_at_size(folder: Path) -> dict:
    """What the default pipeline resolves to here, and the neighbour graph's link time
    (``GRAPH_SAMPLE`` images linked as ``KnnGraph.build`` links them, scaled up)."""
    with lookalike.Index.open(folder, create=False) as index:
        settings, store = index.settings, index.store
        ids = store.inner.ids()
        sample = np.random.default_rng(SEED).choice(ids, min(GRAPH_SAMPLE, len(ids)), replace=False)
        wall, cpu = time.perf_counter(), time.process_time()
        KnnGraph.build(sample, store.vectors, store.inner.search, settings.rerank.graph_pool)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return {
            "pipeline": index.pipeline().spec,
            "rerank": index.rerank_method(),
            "graph_built": (folder / KnnGraph.FILE).exists(),
            "words_stage_runs": len(index) <= settings.words.max_images,
            "graph_link_estimate_s": round(wall * len(ids) / len(sample)),
            "graph_link_estimate_cpu_s": round(cpu * len(ids) / len(sample)),
        }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--run":
        queries = json.loads(Path(sys.argv[3]).read_text())
        print(json.dumps(run_queries(sys.argv[2], queries, sys.argv[4] == "timed", sys.argv[5] or None)))
        return
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="synthetic images")
    parser.add_argument("--originals", type=int, default=300, help="real photos indexed (one copy each queried)")
    parser.add_argument("--no-copy", type=int, default=100, help="unindexed photos queried")
    parser.add_argument("--work", type=Path, default=Path("/tmp/million"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "million.json")
    parser.add_argument("--pipeline", help="search with this pipeline instead of the default (the build's first pass keeps the default)")
    parser.add_argument("--build-only", action="store_true", help="build the index, measure nothing (untimed)")
    args = parser.parse_args()

    originals, no_copy = photos(args.originals, args.no_copy)
    work = args.work / str(args.n)
    folder, built = work / "index", work / "built"
    _, backgrounds = instance.database_files()
    copies = instance.make_queries(work, len(originals), SEED, originals, backgrounds)
    queries = copies + [{"path": str(p), "kind": "no-copy", "relevant": []} for p in no_copy]
    random.Random(SEED).shuffle(queries)
    queries[0]["warm"] = str(backgrounds[args.no_copy])  # an unindexed photo not queried
    report: dict = {"benchmark": "a default query at scale: copies and no-copy photos, one at a time",
                    **caltech.run_info(), "n_synthetic": args.n, "originals": len(originals)}
    if not built.exists():
        if folder.exists():
            raise SystemExit(f"{folder} is an unfinished build: remove {work} and run again")
        report["build"] = build(folder, args.n, originals)
        first = in_fresh_process(folder, queries, timed=False)
        report["build"]["synthetic_given_features"] = give_features(folder, set(first["checked"]), args.n, originals)
        built.write_text(json.dumps(report["build"]))
    if args.build_only:
        return
    report["build"] = json.loads(built.read_text())
    files = {f.name: f.stat().st_size for f in folder.iterdir() if f.is_file()}
    report["files_mb"] = {k: round(v / 2**20, 1) for k, v in sorted(files.items())}
    report["searched_with"] = args.pipeline or lookalike.Settings().pipeline
    measured = in_fresh_process(folder, queries, timed=True, pipeline=args.pipeline)
    rows = measured.pop("rows")
    measured.pop("checked")
    report["search_process"] = measured
    report["copies"] = summary([r for r in rows if r["kind"] != "no-copy"])
    report["no_copy"] = summary([r for r in rows if r["kind"] == "no-copy"])
    kinds = dict.fromkeys(r["kind"] for r in rows if r["kind"] != "no-copy")
    report["copies_by_kind"] = {k: summary([r for r in rows if r["kind"] == k]) for k in kinds}
    report["at_this_size"] = pipeline_at_size(folder)
    print(json.dumps(report, indent=1))
    caltech.write_report(report, args.out)


if __name__ == "__main__":
    main()
