"""A/B of a default query's search part against a base commit: same index, alternating
rounds, rankings compared.

A query-path change should make searches faster and leave every ranking as it was. Each side
runs in a fresh process with its own checkout's sources (the base commit in a temporary git
worktree, as benchmarks/ab.py does) on the instance benchmark's index (benchmarks/instance.py,
built under ``--work`` by ``query_costs.py`` or ``instance.py``; opened, not changed). For
``--queries`` instance queries (each has its original in the index) and ``--no-copy``
unindexed photos (the usual case for a search: the regional stage runs), the picture is
decoded and embedded untimed, then ``Index.rank`` with the default pipeline is timed: wall ms
and the process's CPU ms (all threads), the verifier's feature cache off as in
query_costs.py. Rounds alternate (A B, then B A, ...); each figure is the median over rounds.

The rankings of every run of both sides (ids, cosine scores and inlier counts of every
query) are compared exactly with the base's first: ``identical`` is true when no query differs.

``--ann N`` runs on benchmarks/ann.py's end-to-end index of N images instead (built once
under the benchmarks' scratch folder and kept): synthetic descriptors derived from real ones,
the approximate store from 50,000 images, real local features for the copies of its 26 photos
with copies; its 25 photos without copies have none.

    python benchmarks/query_ab.py --base 75f4026 [--queries 40] [--no-copy 40] [--rounds 3] [--out benchmarks/results/query_ab.json]
    python benchmarks/query_ab.py --base 75f4026 --ann 100000 --out benchmarks/results/query_ab-100k.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ab  # noqa: E402
import instance  # noqa: E402
import query_costs  # noqa: E402

CHILD = """
import json, sys, time
from dataclasses import replace
import lookalike
from lookalike.images import load_image
from lookalike.settings import Settings
paths = json.loads(sys.argv[2])
settings = Settings()
settings = settings.with_(verify=replace(settings.verify, cache=0))
with lookalike.Index.open(sys.argv[1], create=False, settings=settings) as index:
    index.search(paths[0], 1)  # warm: model session, store, graph, word index
    rows = []
    for path in paths:
        image = load_image(path, max_pixels=settings.max_pixels, max_bytes=settings.max_file_bytes,
                           target_size=index.query_size)
        emb = index.embed([image])
        wall, cpu = time.perf_counter(), time.process_time()
        ranked = index.rank(emb.vectors, lookalike.SearchOptions(k=10), label_ids=emb.label_ids,
                            pictures=[lambda image=image: image])[0]
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        rows.append({"wall": wall, "cpu": cpu, "ids": ranked.ids.tolist(), "scores": ranked.scores.tolist(),
                     "inliers": sorted(ranked.inliers.items())})
print(json.dumps(rows))
"""


def ann_index(n: int) -> tuple[Path, dict[str, list[str]]]:
    """benchmarks/ann.py's end-to-end index of ``n`` images and its query photos, as
    ``ann.py --n-e2e n`` makes them (kept here, built on first use)."""
    import ann
    import caltech

    import lookalike

    base, labels, paths = caltech.embeddings(lookalike.Settings().model)
    chosen = np.random.default_rng(ann.SEED).choice(len(base), 200 + 51, replace=False)[200:]
    with_copies, without_copies = chosen[:26], chosen[26:]
    folder = caltech.SCRATCH / f"query-ab-ann-{n}"
    built = folder / "built"  # written last: an interrupted build starts again
    if not built.exists():
        shutil.rmtree(folder, ignore_errors=True)
        features = ann.real_features(paths, set(without_copies.tolist()))
        ann.write_catalogue(folder, base, labels, n, features)
        with lookalike.Index.open(folder) as index:
            index.store  # noqa: B018 - the store built from the catalogue and saved
        built.write_text("")
    return folder, {"default": [str(paths[i]) for i in with_copies],
                    "default_no_copy": [str(paths[i]) for i in without_copies]}


def side_run(tree: Path, index: Path, paths: list[str]) -> list[dict]:
    env = {"PYTHONPATH": str(tree / "src")}
    out = subprocess.run([sys.executable, "-c", CHILD, str(index), json.dumps(paths)],
                         env={**os.environ, **env}, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def summary(rows: list[dict]) -> dict:
    """p50/p95 of wall and CPU ms."""
    out = {}
    for key in ("wall", "cpu"):
        ms = 1000 * np.asarray([r[key] for r in rows])
        out[f"{key}_p50"] = round(float(np.percentile(ms, 50)), 1)
        out[f"{key}_p95"] = round(float(np.percentile(ms, 95)), 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare against (A)")
    query_costs.query_arguments(parser, 40, 40)
    parser.add_argument("--rounds", type=int, default=3, help="A/B pairs (order alternates)")
    parser.add_argument("--ann", type=int, help="on benchmarks/ann.py's end-to-end index of this many images instead")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    index = args.work / "index"
    if args.ann:
        index, given = ann_index(args.ann)
        groups = {"default": given["default"][: args.queries],
                  "default_no_copy": given["default_no_copy"][: args.no_copy]}
    else:
        saved = json.loads((args.work / "queries.json").read_text())["queries"]
        _, backgrounds = instance.database_files()
        groups = {"default": [q["path"] for q in saved[: args.queries]],
                  "default_no_copy": [str(p) for p in backgrounds[: args.no_copy]]}
    paths = [p for group in groups.values() for p in group]
    sides = {"base": ab.checkout(args.base), "head": ab.REPO}
    runs: dict[str, list[list[dict]]] = {"base": [], "head": []}
    for number in range(args.rounds):
        for side in (("base", "head") if number % 2 == 0 else ("head", "base")):
            runs[side].append(side_run(sides[side], index, paths))
            print(side, number, summary(runs[side][-1]), flush=True)

    def ranking(row: dict) -> tuple:
        return row["ids"], row["scores"], row["inliers"]

    reference = runs["base"][0]  # every run of either side against the first
    differing = sum(any(ranking(run[n]) != ranking(row) for side_runs in runs.values() for run in side_runs)
                    for n, row in enumerate(reference))
    result: dict = {
        "benchmark": "A/B of the default query's search part (ms per query, after embedding)",
        "command": "python benchmarks/query_ab.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "base": args.base,
        "head": subprocess.run(["git", "-C", str(ab.REPO), "rev-parse", "--short", "HEAD"],
                               capture_output=True, text=True).stdout.strip(),
        "images": None, "rounds": args.rounds, "cores": os.cpu_count(),
        "identical": differing == 0, "queries_differing": differing,
    }
    start = 0
    for name, group in groups.items():
        part = slice(start, start + len(group))
        start += len(group)
        medians = {side: {key: statistics.median(summary(r[part])[key] for r in side_runs)
                          for key in summary(side_runs[0][part])}
                   for side, side_runs in runs.items()}
        result[name] = {"queries": len(group), **medians,
                        "head_over_base": {k: round(medians["head"][k] / medians["base"][k], 3)
                                           for k in medians["head"]}}
    catalogue = sqlite3.connect(f"file:{index / 'catalogue.sqlite'}?mode=ro", uri=True)
    result["images"] = catalogue.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    catalogue.close()
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if differing == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
