"""A/B timing of two commits in one run: indexing throughput and default query latency.

A machine shared with other work drifts by tens of percent between runs, so a change is
compared against its parent *in the same run*, alternating (A B, then B A, ...), and each
figure is a median over rounds with the ratio of the medians. Both sides run only what every
version of lookalike offers (the ``lookalike index`` command and ``Index.search``), each from
its own checkout (the base commit is checked out in a temporary git worktree) and its own
index, in fresh processes.

* **index**: ``lookalike index`` of a fixed-seed sample of Caltech-101 photos into a fresh
  index (every default step: local features, whitening, the neighbour graph): images per
  second of wall time and CPU seconds of the whole process;
* **query**: ``Index.search(photo, 10)`` with the default pipeline on that index, for held-out
  photos (decode, embed, search, re-rank, verify): p50 and p95 in ms, after a warm-up.

    python benchmarks/ab.py --base 8c335ef [--images 2000] [--queries 100] [--rounds 3] [--out benchmarks/results/ab.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import caltech  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SEED = 20261206

QUERY = """
import json, sys, time
import lookalike
paths = json.loads(sys.argv[2])
with lookalike.Index.open(sys.argv[1], create=False) as index:
    for path in paths[:5]:
        index.search(path, 10)  # warm-up: model session, graph, word index
    times = []
    for path in paths:
        started = time.perf_counter()
        index.search(path, 10)
        times.append(time.perf_counter() - started)
print(json.dumps(times))
"""


def checkout(rev: str) -> Path:
    """The source tree of ``rev``: a detached worktree under the scratch folder."""
    tree = caltech.SCRATCH / f"ab-{rev}"
    if not (tree / "src").is_dir():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), rev],
                       check=True, capture_output=True)
    return tree


def sample(images: int, queries: int) -> tuple[Path, list[str]]:
    """A folder of links to ``images`` photos (by class) and ``queries`` other photos."""
    paths, _ = caltech.manifest()
    order = np.random.default_rng(SEED).permutation(len(paths))
    folder = caltech.SCRATCH / f"ab-photos-{images}"
    if not folder.is_dir():
        for i in order[:images]:
            link = folder / paths[i].parent.name / paths[i].name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(paths[i])
    return folder, [str(paths[i]) for i in order[images : images + queries]]


def run(tree: Path, args: list[str]) -> tuple[str, float, float]:
    """``python args`` with ``tree``'s sources: (stdout, wall s, CPU s of the process)."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    out = subprocess.run([sys.executable, *args], env=env, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out.stdout, wall, cpu


def measure(tree: Path, photos: Path, queries: list[str], db: Path) -> dict:
    shutil.rmtree(db, ignore_errors=True)
    out, wall, cpu = run(tree, ["-m", "lookalike.cli", "index", str(photos), "--db", str(db), "--json"])
    embedded = json.loads(out)["embedded"]
    times, _, _ = run(tree, ["-c", QUERY, str(db), json.dumps(queries)])
    ms = 1000 * np.asarray(json.loads(times))
    return {
        "index_images_per_s": round(embedded / wall, 1),
        "index_cpu_s": round(cpu, 1),
        "query_p50_ms": round(float(np.percentile(ms, 50)), 1),
        "query_p95_ms": round(float(np.percentile(ms, 95)), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare against (A)")
    parser.add_argument("--images", type=int, default=2000, help="photos indexed")
    parser.add_argument("--queries", type=int, default=100, help="held-out query photos")
    parser.add_argument("--rounds", type=int, default=3, help="A/B pairs (order alternates)")
    parser.add_argument("--out", type=Path, help="JSON file for the results")
    args = parser.parse_args()
    sides = {"base": checkout(args.base), "head": REPO}
    photos, queries = sample(args.images, args.queries)
    rows: dict[str, list[dict]] = {"base": [], "head": []}
    for number in range(args.rounds):
        for side in (("base", "head") if number % 2 == 0 else ("head", "base")):
            row = measure(sides[side], photos, queries, caltech.SCRATCH / f"ab-index-{side}")
            rows[side].append(row)
            print(side, json.dumps(row), flush=True)
    medians = {side: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
               for side, runs in rows.items()}
    ratios = {key: round(medians["head"][key] / medians["base"][key], 3) for key in medians["head"]}
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    result = {
        "benchmark": "ab",
        "command": "python benchmarks/ab.py " + " ".join(sys.argv[1:]),
        "base": args.base, "head": head, "images": args.images, "queries": args.queries,
        "rounds": rows, "medians": medians, "head_over_base": ratios,
        "machine": {"cpu_count": os.cpu_count(), "python": sys.version.split()[0]},
    }
    print(json.dumps({"medians": medians, "head_over_base": ratios}, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
