"""Milvus as the store at scale: ingest rate, index build, query latency and recall@10.

    python benchmarks/scale_milvus.py [--n 100000] [--types HNSW,IVF_PQ] [--queries 200]
                                      [--limit 3000] [--out benchmarks/results/scale-milvus-100k.json]

Starts Milvus standalone (the PyPI ``milvus`` package) with a temporary data folder in a
private network namespace (as the tests do: tests/netns.py; needs root), creates one
collection per index type through the product's own code (:mod:`lookalike.index.milvus_server`,
default :class:`~lookalike.settings.MilvusParams`), and for each:

* ingest: ``n`` synthetic descriptors derived from real Caltech-101 embeddings (the mix of
  benchmarks/ann.py) inserted in batches of ``MilvusParams.insert_batch``, then flushed:
  vectors per second, client side (conversion to the wire format included);
* build: from the flush until the server reports every row indexed (wall time, and the
  server's CPU seconds meanwhile);
* search: single queries through :meth:`MilvusStore.search` (the product's path), real
  descriptors as queries, p50/p95 latency and recall@10 against exact inner-product search
  over the same vectors; plus the server's resident memory. IVF_PQ's candidates are
  re-scored exactly (``MilvusParams.pq_rescore``, from the vectors kept in memory as the
  product reads them from its catalogue), and measured without that too (``codes_only``);
* label filter: 50 of those searches restricted to the most common class (each row's
  ``label0`` is its source photo's class), sent as a label expression and as an id list.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import caltech  # noqa: E402
from ann import synthetic_chunks  # noqa: E402
from netns import PrivateNetwork  # noqa: E402

from lookalike.index.milvus_server import MilvusAddress, MilvusServer  # noqa: E402
from lookalike.index.milvus_store import LOSSY, MilvusStore  # noqa: E402
from lookalike.index.vectors import LabelIds  # noqa: E402
from lookalike.settings import MilvusParams  # noqa: E402

K = 10


def exact_top(base, labels, n: int, queries: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """Exact top-K ids (0-based rows) of each query over the synthetic collection (only the
    rows where ``keep`` is true, if given)."""
    best_s = np.full((len(queries), K), -np.inf, np.float32)
    best_i = np.zeros((len(queries), K), np.int64)
    for start, vectors, _ in synthetic_chunks(base, labels, n):
        s = queries @ vectors.T
        if keep is not None:
            s[:, ~keep[start : start + len(vectors)]] = -np.inf
        all_s = np.concatenate([best_s, s], 1)
        all_i = np.concatenate([best_i, np.broadcast_to(np.arange(start, start + len(vectors)), s.shape)], 1)
        top = np.argsort(-all_s, axis=1)[:, :K]
        best_s, best_i = np.take_along_axis(all_s, top, 1), np.take_along_axis(all_i, top, 1)
    return best_i


def recall_at_k(found: list[np.ndarray], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def server_cpu_s(pid: int) -> float:
    """CPU seconds the server process has used (user + system, all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_rss_mb(pid: int) -> float:
    out = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True)
    return round(int(out.stdout.strip() or 0) / 1024, 1)


def timed_searches(store: MilvusStore, queries: np.ndarray, candidates=None):
    """Single searches through the product's path: latencies (ms) and the ids found."""
    latencies, found = [], []
    for q in queries:
        t = time.perf_counter()
        _, ids = store.search(q[None], K, candidates)
        latencies.append((time.perf_counter() - t) * 1000)
        found.append(ids[0])
    return latencies, found


def label_filter_cost(store: MilvusStore, queries: np.ndarray, row_class: np.ndarray, exact) -> dict:
    """The same label-filtered searches sent as a label expression and as an id list (the
    most common class: the longest list), alternating: p50 of each, how often they agree and
    their recall@10 against exact search over the class (``exact(queries, keep)``)."""
    common = int(np.bincount(row_class).argmax())
    allowed = LabelIds(np.flatnonzero(row_class == common), [common])
    store.labels_complete = True  # every row holds its one label in label0
    queries = queries[:50]
    truth = exact(queries, row_class == common)
    ms: dict[str, list[float]] = {"by_labels": [], "by_ids": []}
    found: dict[str, list[np.ndarray]] = {"by_labels": [], "by_ids": []}
    for q in queries:
        for key, candidates in (("by_labels", allowed), ("by_ids", np.asarray(allowed))):
            (t,), (ids,) = timed_searches(store, q[None], candidates)
            ms[key].append(t)
            found[key].append(ids)
    same = sum(np.array_equal(a, b) for a, b in zip(found["by_labels"], found["by_ids"], strict=True))
    return {"images": len(allowed), "queries": len(queries), "identical_top10": int(same),
            **{f"{k}_p50_ms": round(float(np.percentile(v, 50)), 2) for k, v in ms.items()},
            **{f"{k}_recall_at_10": round(recall_at_k(v, truth), 4) for k, v in found.items()}}


def measure(port: int, pid: int, kind: str, base, labels, n: int, queries, truth,
            ivf: dict) -> dict:
    params = MilvusParams(index_type=kind, timeout=600, **ivf)
    server = MilvusServer(MilvusAddress("127.0.0.1", port, f"bench_{kind.lower()}"), params)
    if server.dims() is not None:
        server.drop()
    server.ensure(base.shape[1], labels=5)
    client, name = server.client, server.name
    # A lossy index's candidates are re-scored from the exact vectors, as the product does
    # from the catalogue: kept here in memory (n x dims float32).
    kept = np.empty((n, base.shape[1]), np.float32) if kind in LOSSY and params.pq_rescore else None
    class_of = {c: i for i, c in enumerate(sorted(set(labels)))}
    row_class = np.zeros(n, np.int64)  # label0 of each row: its main source photo's class
    started = time.perf_counter()
    for start, vectors, sources in synthetic_chunks(base, labels, n):
        row_class[start : start + len(vectors)] = [class_of[labels[i]] for i in sources]
        if kept is not None:
            kept[start : start + len(vectors)] = vectors
        for s in range(0, len(vectors), params.insert_batch):
            part = vectors[s : s + params.insert_batch]
            rows = [{"id": start + s + i, "vector": v.tolist(), "label0": int(row_class[start + s + i]),
                     **{f"label{j}": -1 for j in range(1, 5)}} for i, v in enumerate(part)]
            client.insert(name, rows, timeout=600)
    client.flush(name, timeout=600)
    ingest_s = time.perf_counter() - started
    started, cpu = time.perf_counter(), server_cpu_s(pid)
    while client.describe_index(name, "vector", timeout=60).get("indexed_rows", 0) < n:
        time.sleep(2)
    build_s, build_cpu_s = time.perf_counter() - started, server_cpu_s(pid) - cpu
    client.release_collection(name, timeout=600)
    client.load_collection(name, timeout=1800)
    exact = None if kept is None else (lambda ids: (ids, kept[ids]))
    store = MilvusStore(server, catalogue=None, exact=exact)  # type: ignore[arg-type] - search only
    store.search(queries[:1], K)
    latencies, found = timed_searches(store, queries)
    recall = recall_at_k(found, truth)
    codes_only = {}
    if exact is not None:  # the server's own scores, for comparison
        latencies_codes, found_codes = timed_searches(MilvusStore(server, catalogue=None), queries)  # type: ignore[arg-type]
        codes_only = {"codes_only": {
            "search_p50_ms": round(float(np.percentile(latencies_codes, 50)), 2),
            "search_p95_ms": round(float(np.percentile(latencies_codes, 95)), 2),
            "recall_at_10": round(float(recall_at_k(found_codes, truth)), 4)}}
    result = {
        "index_type": kind, "n": n, "ingest_s": round(ingest_s, 1),
        "ingest_vectors_per_s": round(n / ingest_s), "build_s": round(build_s, 1),
        "build_server_cpu_s": round(build_cpu_s, 1),
        "search_p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "search_p95_ms": round(float(np.percentile(latencies, 95)), 2),
        "recall_at_10": round(float(recall), 4), "server_rss_mb": server_rss_mb(pid),
        "search_params": server.search_params(K)["params"],
        **({"nlist": params.ivf_nlist, "pq_m": params.pq_m, "pq_nbits": params.pq_nbits,
            "pq_rescore": params.pq_rescore, **codes_only} if kind == "IVF_PQ" else {}),
        "label_filter": label_filter_cost(
            store, queries, row_class, lambda q, keep: exact_top(base, labels, n, q, keep)),
    }
    print(result, flush=True)
    server.drop()
    server.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--types", default="HNSW,IVF_PQ")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--limit", type=int, default=3000, help="real Caltech photos mixed")
    parser.add_argument("--nlist", type=int, default=MilvusParams().ivf_nlist,
                        help="IVF_PQ lists (Milvus builds them per sealed segment)")
    parser.add_argument("--pq-m", type=int, default=MilvusParams().pq_m, help="IVF_PQ sub-quantisers")
    parser.add_argument("--pq-nbits", type=int, default=MilvusParams().pq_nbits,
                        help="IVF_PQ bits per code")
    parser.add_argument("--nprobe", type=int, default=MilvusParams().ivf_nprobe, help="IVF_PQ lists searched")
    parser.add_argument("--pq-rescore", type=int, default=MilvusParams().pq_rescore,
                        help="IVF_PQ candidates re-scored exactly (0: the codes' scores)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/scale-milvus-100k.json"))
    args = parser.parse_args()
    report = caltech.run_info()
    base, labels, _ = caltech.embeddings("lite0-int8", limit=args.limit)
    rng = np.random.default_rng(7)
    queries = base[rng.choice(len(base), args.queries, replace=False)]
    truth = exact_top(base, labels, args.n, queries)
    from milvus import MilvusServer as Standalone

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the server on a kill, too
    net = PrivateNetwork()
    standalone = Standalone()
    data_dir = tempfile.mkdtemp(prefix="lookalike-milvus-")
    standalone.set_base_dir(data_dir)
    try:
        with net.inside():
            standalone.start()
            pid = standalone.server_proc.pid
            report["synthetic"] = f"{args.n} mixes of {len(base)} real lite0-int8 descriptors (benchmarks/ann.py)"
            report["results"] = []
            ivf = {"ivf_nlist": args.nlist, "pq_m": args.pq_m, "pq_nbits": args.pq_nbits,
                   "ivf_nprobe": args.nprobe, "pq_rescore": args.pq_rescore}
            for kind in args.types.split(","):
                report["results"].append(measure(standalone.listen_port, pid, kind, base, labels,
                                                 args.n, queries, truth, ivf))
                caltech.write_report(report, args.out)  # what is measured is kept
    finally:
        standalone.stop()
        net.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    caltech.write_report(report, args.out)


if __name__ == "__main__":
    main()
