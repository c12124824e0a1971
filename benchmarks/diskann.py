"""Microsoft's DiskANN (diskannpy) beside the embedded approximate store, on the same vectors.

DiskANN's disk index is the one meant for collections larger than RAM: compressed PQ codes
in memory, the full vectors and the graph on SSD (read with direct I/O per query). This
measures its build time (wall and CPU), size on disk, memory of the searching process
(after opening and at peak), single-query latency p50/p95 (cold-ish and warm) and recall@10
for a few search list sizes ``L`` and beam widths ``W``, for comparison with the figures of
benchmarks/ann.py at the same size.

**Same data and the same question as benchmarks/ann.py**: its synthetic descriptors
(``ann.synthetic_chunks``), its queries (``ann.query_rows``) and its exact ground truth
(``ann.ground_truth``: cosine top-10 over the full descriptors, centred as the approximate
store centres them). DiskANN indexes exactly what the embedded store's HNSW graph indexes:
the 256-d int8 codes of :class:`lookalike.index.codec.Int8Codec`, fitted as the store fits
it (on the first ``AnnParams.calibrate_at`` descriptors); like the store, the ``L``
candidates each search returns are then re-scored exactly from the raw float16 descriptors
on disk (the catalogue's precision). The full 1,280-d floats would make DiskANN's own
re-ranking exact but cost 5 KB per image on disk and a 5x slower build, and the graph would
not be comparable with the store's. ``recall_at_10_codes_only`` is DiskANN's own top-10.

Steps: write the raw descriptors (float16, ``n x 1280``) and the codes (DiskANN's ``.bin``
format) under ``$LOOKALIKE_BENCH_TMP/diskann``; the ground truth; then, with
``--diskann-python``, benchmarks/diskann_search.py builds the disk index (``--threads``)
and, in a fresh process (under ``flock --lock`` when given, so no other timed benchmark
runs meanwhile), searches it. Scratch files are removed at the end.

diskannpy pins an old numpy, so it needs its own venv (outside the repository)::

    python3 -m venv /work/venv-diskann && /work/venv-diskann/bin/pip install diskannpy
    python benchmarks/diskann.py --diskann-python /work/venv-diskann/bin/python \\
        --n 1000000 --out benchmarks/results/diskann.json
    python benchmarks/diskann.py --diskann-python /work/venv-diskann/bin/python \\
        --limit 600 --n 20000 --queries 20 --out /tmp/diskann.json   # a quick check
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ann  # noqa: E402
import caltech  # noqa: E402

import lookalike  # noqa: E402
from lookalike.index.codec import Int8Codec  # noqa: E402
from lookalike.index.formats import VECTOR_DTYPE  # noqa: E402
from lookalike.index.transform import Transform  # noqa: E402


def write_vectors(base, labels, n: int, folder: Path, calibrate_at: int, dims: int):
    """Raw descriptors as catalogued (``raw.f16``) and the store's codes (``codes.bin``);
    returns the store's transform and codec."""
    raw_path = folder / "raw.f16"
    total = np.zeros(base.shape[1], np.float64)
    with open(raw_path, "wb") as raw:
        for _, vectors, _ in ann.synthetic_chunks(base, labels, n):
            stored = vectors.astype(VECTOR_DTYPE)
            raw.write(stored.tobytes())
            total += stored.astype(np.float32).sum(axis=0, dtype=np.float64)
    transform = Transform((total / n).astype(np.float32), n)  # the approximate store: centred
    raw = np.memmap(raw_path, VECTOR_DTYPE, "r", shape=(n, base.shape[1]))
    codec = Int8Codec.fit(transform.apply(raw[:calibrate_at]), dims)
    with open(folder / "codes.bin", "wb") as out:
        out.write(np.array([n, dims], np.int32).tobytes())  # DiskANN's header: rows, dims
        for start in range(0, n, ann.CHUNK):
            out.write(codec.encode(transform.apply(raw[start : start + ann.CHUNK])).tobytes())
    del raw
    np.save(folder / "mean.npy", transform.mean)
    return transform, codec


def child(python: str, spec: dict, lock: str | None = None) -> dict:
    """Run benchmarks/diskann_search.py in ``python`` and return what it printed."""
    command = [python, str(Path(__file__).with_name("diskann_search.py")), json.dumps(spec)]
    if lock:
        command = ["flock", lock, *command]
    out = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ann_params = lookalike.Settings().ann
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--diskann-python", required=True, metavar="PYTHON",
                        help="a Python with diskannpy installed (its own venv)")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--limit", type=int, help="derive from a fixed-seed sample of N Caltech photos (quick check)")
    parser.add_argument("--threads", type=int, default=2, help="build threads")
    parser.add_argument("--graph-degree", type=int, default=64, help="DiskANN's R")
    parser.add_argument("--build-complexity", type=int, default=100, help="DiskANN's build L")
    parser.add_argument("--pq-bytes", type=int, default=32, help="in-memory PQ code bytes per image")
    parser.add_argument("--complexities", type=int, nargs="+", default=[20, 50, 100, 200],
                        help="search list sizes L (each returns L candidates to re-score)")
    parser.add_argument("--beams", type=int, nargs="+", default=[2, 4], help="beam widths W")
    parser.add_argument("--cache-nodes", type=int, nargs="+", default=[0],
                        help="graph nodes DiskANN keeps in memory (0: none)")
    parser.add_argument("--lock", help="hold this file (flock) while timing searches")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "diskann.json")
    args = parser.parse_args()

    started = time.time()
    base, labels, _ = caltech.embeddings(lookalike.Settings().model, args.limit)
    queries = base[ann.query_rows(len(base), args.queries)[: args.queries]]
    scratch = caltech.SCRATCH / "diskann"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    report: dict = {"run": caltech.run_info(), "machine": caltech.machine(), "n": args.n}
    if args.limit:
        report["limit"] = args.limit
    try:
        t = time.perf_counter()
        transform, codec = write_vectors(base, labels, args.n, scratch, ann_params.calibrate_at, ann_params.dims)
        report["write_vectors_s"] = round(time.perf_counter() - t, 1)
        np.save(scratch / "truth.npy", ann.ground_truth(base, labels, args.n, queries, transform))
        np.save(scratch / "queries.npy", transform.apply(queries))
        np.save(scratch / "query_codes.npy", codec.encode(transform.apply(queries)))
        spec = {
            "index": str(scratch / "index"), "codes": str(scratch / "codes.bin"), "n": args.n,
            "raw": str(scratch / "raw.f16"), "mean": str(scratch / "mean.npy"),
            "queries": str(scratch / "queries.npy"), "query_codes": str(scratch / "query_codes.npy"),
            "truth": str(scratch / "truth.npy"), "threads": args.threads,
            "graph_degree": args.graph_degree, "build_complexity": args.build_complexity,
            "pq_bytes": args.pq_bytes, "build_memory_gb": 4.0,
            "complexities": args.complexities, "beams": args.beams, "cache_nodes": args.cache_nodes,
        }
        report["params"] = {k: spec[k] for k in (
            "threads", "graph_degree", "build_complexity", "pq_bytes", "build_memory_gb")}
        report["vectors"] = f"Int8Codec codes, {codec.dims}-d int8 (the embedded store's graph input)"
        report["build"] = child(args.diskann_python, spec | {"step": "build"})
        print(json.dumps(report["build"]), flush=True)
        report["search"] = child(args.diskann_python, spec | {"step": "search"}, args.lock)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report["wall_s"] = round(time.time() - started, 1)
    caltech.write_report(report, args.out)


if __name__ == "__main__":
    main()
