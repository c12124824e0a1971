"""The measuring half of benchmarks/diskann.py, run by the Python that has diskannpy.

diskannpy 0.7.0 pins an old numpy, so it lives in its own venv without lookalike; this
script imports only numpy, diskannpy and the standard library. benchmarks/diskann.py runs it
twice with a JSON spec as the only argument: ``{"step": "build", ...}`` builds a disk index
and prints its build time, size and peak memory; ``{"step": "search", ...}`` opens it in
this fresh process and prints latency, recall@10 and memory per search setting. Not meant to
be run by hand.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procstat import rss_mb  # noqa: E402


def cpu_s() -> float:
    """CPU seconds of this process, all threads, user + system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def build(spec: dict) -> dict:
    import diskannpy

    folder = Path(spec["index"])
    folder.mkdir(parents=True, exist_ok=True)
    n = spec["n"]
    # DiskANN sizes its in-memory PQ codes as search_memory_maximum / n bytes per vector
    # (budgets under 1.25 GB are taken whole); half a byte of slack against rounding down.
    budget_gb = (spec["pq_bytes"] + 0.5) * n / 2**30
    wall, cpu = time.perf_counter(), cpu_s()
    diskannpy.build_disk_index(
        spec["codes"], "l2", str(folder), complexity=spec["build_complexity"],
        graph_degree=spec["graph_degree"], search_memory_maximum=budget_gb,
        build_memory_maximum=spec["build_memory_gb"], num_threads=spec["threads"],
        vector_dtype=np.int8,
    )
    files = {f.name: f.stat().st_size for f in folder.iterdir() if f.is_file()}
    return {
        "build_wall_s": round(time.perf_counter() - wall, 1),
        "build_cpu_s": round(cpu_s() - cpu, 1),
        "build_peak_rss_mb": round(rss_mb("VmHWM"), 1),
        "files_mb": {k: round(v / 2**20, 1) for k, v in sorted(files.items())},
        "index_mb": round(sum(files.values()) / 2**20, 1),
        "index_bytes_per_image": round(sum(files.values()) / n, 1),
    }


class Rescorer:
    """Exact cosine of candidates from the raw float16 descriptors on disk (read with
    ``pread`` through the page cache, as SQLite reads the catalogue), centred and normalised
    as the store's transform does."""

    def __init__(self, path: str, mean: np.ndarray):
        self.fd = os.open(path, os.O_RDONLY)
        self.mean = mean
        self.row = len(mean) * 2

    def drop_cache(self) -> None:
        os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)

    def top10(self, query: np.ndarray, positions: np.ndarray) -> np.ndarray:
        positions = np.sort(positions)
        raw = b"".join(os.pread(self.fd, self.row, int(p) * self.row) for p in positions)
        vectors = np.frombuffer(raw, np.float16).reshape(len(positions), -1).astype(np.float32)
        vectors -= self.mean
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return positions[np.argsort(-(vectors @ query), kind="stable")[:10]]


def timed_pass(index, rescorer: Rescorer, codes, queries, truth, complexity: int, beam: int) -> dict:
    latencies, graph_ms, recall, raw_recall = [], [], [], []
    for code, query, true in zip(codes, queries, truth, strict=True):
        started = time.perf_counter()
        found = index.search(code, complexity, complexity, beam).identifiers.astype(np.int64)
        graph_ms.append(time.perf_counter() - started)
        best = rescorer.top10(query, found)
        latencies.append(time.perf_counter() - started)
        recall.append(len(set((best + 1).tolist()) & set(true.tolist())) / 10)  # ids are 1-based
        raw_recall.append(len(set((found[:10] + 1).tolist()) & set(true.tolist())) / 10)
    return {
        "p50_ms": round(float(np.median(latencies)) * 1000, 3),
        "p95_ms": round(float(np.percentile(latencies, 95)) * 1000, 3),
        "graph_p50_ms": round(float(np.median(graph_ms)) * 1000, 3),
        "recall_at_10": round(float(np.mean(recall)), 4),
        "recall_at_10_codes_only": round(float(np.mean(raw_recall)), 4),
    }


def search(spec: dict) -> dict:
    rss_before = rss_mb()
    import diskannpy

    codes = np.load(spec["query_codes"])
    queries = np.load(spec["queries"])
    truth = np.load(spec["truth"])
    rescorer = Rescorer(spec["raw"], np.load(spec["mean"]))
    out: dict = {"rss_mb_python_and_libraries": round(rss_before, 1)}
    for cache in spec["cache_nodes"]:
        started = time.perf_counter()
        # num_threads=1 hangs in diskannpy 0.7.0 while loading (a thread context is never
        # handed out); 2 works, and one query at a time uses one of them. The default
        # cache_mechanism=1 runs the build's sample queries here even when no node is cached:
        # most of open_s (diskannpy's default, so that is what is measured).
        index = diskannpy.StaticDiskIndex(spec["index"], num_threads=2, num_nodes_to_cache=cache)
        result = {"open_s": round(time.perf_counter() - started, 3), "rss_mb_after_open": round(rss_mb(), 1)}
        for complexity in spec["complexities"]:
            for beam in spec["beams"]:
                rescorer.drop_cache()
                for run in ("cold", "warm"):  # cold-ish: the descriptors' pages just dropped
                    key = f"L{complexity}_W{beam}_{run}"
                    result[key] = timed_pass(index, rescorer, codes, queries, truth, complexity, beam)
                    print(key, result[key], file=sys.stderr, flush=True)
        result["rss_mb_after_search"] = round(rss_mb(), 1)
        out[f"cache_{cache}"] = result
        del index
    out["peak_rss_mb"] = round(rss_mb("VmHWM"), 1)
    return out


def main() -> None:
    spec = json.loads(sys.argv[1])
    print(json.dumps(build(spec) if spec["step"] == "build" else search(spec)))


if __name__ == "__main__":
    main()
