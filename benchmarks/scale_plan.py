"""The 100M-image plan (docs/scale.md) computed from measured inputs.

    python benchmarks/scale_plan.py [--images 100000000] [--replicas 2] [--node-ram-gb 256]
                                    [--workers 10 --cores-per-worker 32]
                                    [--out benchmarks/results/scale-plan.json]

Inputs measured on this project's benchmark machine, read from benchmarks/results:
``throughput.json`` (CPU ms per image to decode, extract local features and embed, for
Caltech-size photos and 12-megapixel JPEGs), ``scale-ray.json`` (CPU per image under Ray
against the single-process run), ``scale-milvus-*.json`` (Milvus ingest rate, latency, recall, server memory),
``ann.json`` (the embedded int8 HNSW store's bytes per image and the catalogue's). Also
estimates how long the measuring machine would take to load and index a larger collection
into Milvus (``--one-machine``) from the measured ingest and build times. Memory per
vector follows each index type's layout (below); the measured figures anchor latency and
ingest. Prints a Markdown table and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from lookalike.settings import MilvusParams

RESULTS = Path(__file__).resolve().parent / "results"
DIMS = 1280  # the global descriptor (EfficientNet-Lite0 GeM)
PCA_DIMS = 256  # the embedded approximate store's code length


def load(name: str) -> dict:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else {}


def index_bytes(kind: str, dims: int, pq_bytes: float) -> tuple[float, float]:
    """``(RAM, disk)`` bytes per vector of a loaded Milvus index of ``dims`` float32 dims.

    HNSW keeps the float vectors and ~2*M links of 4 bytes (M=16) in memory; DISKANN keeps PQ
    codes in memory (Milvus' default budget: 1/8 of the raw size) and the vectors with the
    graph (degree 56) on local SSD; IVF_PQ keeps its code (``pq_bytes``: m codes of nbits
    bits) and the id in memory; FLAT keeps the vectors. Raw vectors also sit in object storage (binlogs): disk column is
    the query node's local disk only."""
    raw = 4 * dims
    return {
        "HNSW": (raw + 2 * 16 * 4 * 1.1, 0),
        "DISKANN": (raw / 8 + 8, raw + 56 * 4),
        "IVF_PQ": (pq_bytes + 8, 0),
        "FLAT": (raw, 0),
    }[kind]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000_000)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--node-ram-gb", type=float, default=256)
    parser.add_argument("--workers", type=int, default=10, help="Ray worker nodes")
    parser.add_argument("--cores-per-worker", type=int, default=32)
    parser.add_argument("--one-machine", type=int, default=1_000_000,
                        help="collection size of the one-machine Milvus time estimate")
    parser.add_argument("--out", type=Path, default=RESULTS / "scale-plan.json")
    args = parser.parse_args()
    n, gb = args.images, 1024**3
    throughput = load("throughput.json").get("models", {}).get("lite0-int8", {})
    ray = load("scale-ray.json")
    ann = load("ann.json").get("large", {})
    milvus = {r["index_type"]: r for name in ("scale-milvus-100k.json", "scale-milvus-100k-ivfpq.json",
                                              "scale-milvus-1m.json", "scale-milvus-1m-ivfpq.json")
              for r in load(name).get("results", [])}
    defaults = MilvusParams()
    pq = milvus.get("IVF_PQ", {})
    pq_bytes = pq.get("pq_m", defaults.pq_m) * pq.get("pq_nbits", defaults.pq_nbits) / 8

    plan: dict = {"images": n, "replicas": args.replicas, "node_ram_gb": args.node_ram_gb,
                  "stores": [], "indexing": {}, "catalogue": {}}
    for kind, dims in [("HNSW", DIMS), ("HNSW", PCA_DIMS), ("DISKANN", DIMS),
                       ("IVF_PQ", DIMS), ("FLAT", DIMS)]:
        ram, disk = index_bytes(kind, dims, pq_bytes)
        total_ram = ram * n * args.replicas / gb
        measured = milvus.get(kind, {}) if dims == DIMS else {}
        plan["stores"].append({
            "index": f"Milvus {kind}" + ("" if dims == DIMS else f" on {dims}-d PCA"),
            "ram_bytes_per_vector": round(ram), "ram_gb_total": round(total_ram),
            "query_nodes": math.ceil(total_ram / (0.7 * args.node_ram_gb)),
            "ssd_gb_total": round(disk * n * args.replicas / gb),
            "measured_at": measured.get("n"), "p50_ms": measured.get("search_p50_ms"),
            "p95_ms": measured.get("search_p95_ms"), "recall_at_10": measured.get("recall_at_10"),
        })
    if ann:
        per = ann["ann_bytes_per_image"]
        plan["stores"].append({
            "index": "embedded int8 HNSW (one machine)", "ram_bytes_per_vector": round(per),
            "ram_gb_total": round(per * n / gb), "query_nodes": 1, "ssd_gb_total": 0,
            "measured_at": ann["n"], "p50_ms": ann["search_p50_ms"], "p95_ms": ann["search_p95_ms"],
            "recall_at_10": ann["recall_at_10"]})
    cores = args.workers * args.cores_per_worker
    # Ray's cost per image is its CPU time per image (workers included) against the
    # single-process run's; its fixed start-up and scheduling wait (what dominates a short
    # run on 2 cores) amortise over a long one and are reported apart.
    runs = ray.get("runs", {})
    cpu = {k: min(r["cpu_ms_per_image"] for r in v) for k, v in runs.items() if v}
    efficiency = min(1.0, cpu["single"] / cpu["ray"]) if len(cpu) == 2 else 1.0
    for name, key in (("caltech-size photos", "caltech"), ("12-megapixel JPEGs", "jpeg_12mp")):
        cpu_ms = throughput.get(key, {}).get("cpu_ms_per_image")
        if cpu_ms:
            rate = cores * 1000 / cpu_ms * efficiency
            plan["indexing"][name] = {"cpu_ms_per_image": cpu_ms, "cores": cores,
                                      "ray_efficiency": round(efficiency, 3), "images_per_s": round(rate),
                                      "hours": round(n / rate / 3600, 1)}
    ingest = [r["ingest_vectors_per_s"] for r in milvus.values()]
    if ingest:
        per_client = max(ingest)
        plan["indexing"]["milvus_ingest"] = {
            "vectors_per_s_per_client": per_client,
            "hours_with_one_client_per_worker": round(n / (per_client * args.workers) / 3600, 1)}
    # Ingest and the per-segment index builds both grow linearly with the collection (segments
    # have a fixed size), so a larger collection on the measuring machine takes the measured
    # run's ingest + build time scaled by size.
    plan["one_machine"] = {
        kind: {"images": args.one_machine, "measured_at": r["n"],
               "hours": round((r["ingest_s"] + r["build_s"]) * args.one_machine / r["n"] / 3600, 2)}
        for kind, r in milvus.items() if r["n"] < args.one_machine}
    per_image = load("ann.json").get("e2e", {}).get("catalogue_bytes_per_image")
    if per_image:
        plan["catalogue"] = {"bytes_per_image_with_local_features": per_image,
                             "tb_total": round(per_image * n / 1024**4, 2),
                             "per_ingest_node_gb": round(per_image * n / args.workers / gb)}
    print("| index | RAM B/vector | RAM total (GB, x replicas) | query nodes | SSD GB | measured at | p50 / p95 ms | recall@10 |")
    print("|---|---|---|---|---|---|---|---|")
    for s in plan["stores"]:
        lat = f"{s['p50_ms']} / {s['p95_ms']}" if s["p50_ms"] is not None else "-"
        print(f"| {s['index']} | {s['ram_bytes_per_vector']} | {s['ram_gb_total']} | {s['query_nodes']} | "
              f"{s['ssd_gb_total']} | {s['measured_at'] or '-'} | {lat} | {s['recall_at_10'] or '-'} |")
    print(json.dumps({k: plan[k] for k in ("indexing", "catalogue", "one_machine")}, indent=2))
    args.out.write_text(json.dumps(plan, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
