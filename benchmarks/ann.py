"""Search at scale: a million-image index through the product's own store selection.

    python benchmarks/ann.py [--n 1000000] [--n-e2e 100000] [--queries 200]
                             [--lock FILE] [--out benchmarks/results/ann.json]
    python benchmarks/ann.py --limit 600 --n 0 --n-e2e 3000 --queries 20 --out /tmp/ann.json

Vectors are *derived from real embeddings*, never i.i.d. random (on which every ANN index
collapses, docs/benchmarks.md): each synthetic descriptor mixes two real Caltech-101
descriptors (the second of the same class 70% of the time, weight 0-0.5) and multiplies it
by log-normal noise (sigma 0.3), then is L2-normalised. Fixed seed, generated in chunks so
memory stays flat. Queries are the real descriptors of ``--queries`` Caltech photos.

Steps: write a catalogue of ``n`` images (1 file row and 5 label rows each, as indexing
would); time ``Index.store`` on it (learn the transform, build the graph from the catalogue,
save) = build time; exact ground truth in the same (transformed) space by a streamed scan; then
in a *fresh process*: open time (``Index.open`` + store, memory-mapped), p50/p95 search
latency (store only: centring, graph, exact re-scoring from the catalogue), recall@10 and
RSS. Finally the end-to-end query (decode + embed + search) on an index of ``n-e2e`` whose
images also carry real local features and visual words (those of the photo each was made
from), timed for photos with copies in it and for photos without (see ``end_to_end``).
Results go to JSON; nothing is written into the repository except that file. With ``--lock
FILE`` the timed searches hold that file (``flock``), so other benchmarks do not run
meanwhile. ``--limit N`` derives everything from a fixed-seed sample of N Caltech photos
instead of all of them (a quick check; with ``--n 0`` and a small ``--n-e2e`` the store is
the exact one).
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
import caltech  # noqa: E402
from procstat import rss_mb  # noqa: E402,F401  (ann.rss_mb: used by other benchmarks)

import lookalike  # noqa: E402
from lookalike.index.formats import VECTOR_DTYPE  # noqa: E402

SEED = 20261126
CHUNK = 50_000


def synthetic_chunks(base: np.ndarray, labels: list[str], n: int):
    """Yield ``(start, vectors, sources)`` chunks of the synthetic collection (deterministic);
    ``sources`` is the row of ``base`` each vector was mainly made from."""
    label_array = np.array(labels)
    by_class = {c: np.flatnonzero(label_array == c) for c in set(labels)}
    for start in range(0, n, CHUNK):
        rng = np.random.default_rng([SEED, start])
        size = min(CHUNK, n - start)
        a = rng.integers(0, len(base), size)
        same = rng.random(size) < 0.7
        partner = np.array([rng.choice(by_class[label_array[i]]) for i in a])
        b = np.where(same, partner, rng.integers(0, len(base), size))
        mix = rng.uniform(0.5, 1.0, (size, 1)).astype(np.float32)
        noise = np.exp(0.3 * rng.standard_normal((size, base.shape[1]), dtype=np.float32))
        v = (mix * base[a] + (1 - mix) * base[b]) * noise
        yield start, v / np.linalg.norm(v, axis=1, keepdims=True), a


def write_catalogue(folder: Path, base, labels, n: int, features: list | None = None) -> float:
    """An index folder whose catalogue holds ``n`` synthetic images; returns seconds.

    Rows are what indexing writes (an image with its float16 descriptor, 5 labels, 1 file),
    bulk-inserted per chunk: row-by-row inserts would add minutes at a million. With
    ``features`` (per ``base`` row: the real photo's stored local features and visual words,
    or None), each synthetic image also gets those of the photo it was made from, so spatial
    verification and the word index work at full size on real keypoints.
    """
    started = time.perf_counter()
    with lookalike.Index.open(folder) as index:  # creates the folder and its metadata
        for start, vectors, sources in synthetic_chunks(base, labels, n):
            ids = range(start + 1, start + len(vectors) + 1)  # rowids of a fresh table
            blobs = vectors.astype(VECTOR_DTYPE)
            with index.catalogue.transaction() as db:
                db.executemany(
                    "INSERT INTO images(id, hash, width, height, vector, added_at) "
                    "VALUES (?, ?, 4000, 3000, ?, 0)",
                    ((i, f"{i:032x}", blobs[i - start - 1].tobytes()) for i in ids),
                )
                db.executemany(
                    "INSERT INTO labels(image_id, rank, class_id, prob) VALUES (?, ?, ?, 0.2)",
                    ((i, r, (i * 7 + r * 131) % 1000) for i in ids for r in range(5)),
                )
                db.executemany(
                    "INSERT INTO files(location, image_id, size, mtime_ns, indexed_at) "
                    "VALUES (?, ?, 1, 1, 0)",
                    ((f"/photos/{i // 1000}/{i}.jpg", i) for i in ids),
                )
                if features is not None:
                    db.executemany(
                        "INSERT INTO local_features(image_id, points, descriptors, words) "
                        "VALUES (?, ?, ?, ?)",
                        ((i, *features[src]) for i, src in zip(ids, sources, strict=True)
                         if features[src] is not None),
                    )
    return time.perf_counter() - started


def real_features(paths: list[Path], withheld: set[int], limit: int | None = None) -> list:
    """Stored local features (as catalogue blobs) of each Caltech photo, from the index that
    ``caltech.embeddings`` built; None for the rows in ``withheld`` (queries with no copy)."""
    from lookalike.index.words import shipped_vocabulary

    vocabulary = shipped_vocabulary()
    db = caltech.embeddings_index(lookalike.Settings().model, limit)
    out: list = []
    with lookalike.Index.open(db, create=False) as index:
        ids = [index.catalogue.image_for_location(str(p)) for p in paths]
        stored = index.catalogue.local_features_for([i for i in ids if i is not None])
        for row, image_id in enumerate(ids):
            if row in withheld or image_id not in stored:
                out.append(None)
                continue
            points, descriptors = stored[image_id]
            out.append((
                points.astype(np.float16).tobytes(),
                descriptors.tobytes(),
                vocabulary.quantise(descriptors).tobytes(),
            ))
    return out


def ground_truth(base, labels, n: int, queries: np.ndarray, transform, k: int = 10) -> np.ndarray:
    """Exact top-``k`` catalogue ids per query, in the store's (transformed) space."""
    q = transform.apply(queries)
    best_s = np.full((len(q), k), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(q), k), dtype=np.int64)
    for start, vectors, _ in synthetic_chunks(base, labels, n):
        stored = transform.apply(vectors.astype(np.float16).astype(np.float32))  # as catalogued
        s = q @ stored.T
        ids = np.arange(start + 1, start + len(vectors) + 1)  # catalogue ids are 1-based rowids
        all_s = np.concatenate([best_s, s], axis=1)
        all_i = np.concatenate([best_i, np.broadcast_to(ids, s.shape)], axis=1)
        top = np.argsort(-all_s, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(all_s, top, 1), np.take_along_axis(all_i, top, 1)
    return best_i


def query_rows(total: int, queries: int) -> np.ndarray:
    """Rows of the real descriptors used as queries (the first ``queries``), then the 51
    photos of the end-to-end check: fixed seed, so other benchmarks query the same photos."""
    return np.random.default_rng(SEED).choice(total, queries + 51, replace=False)


def measure_search(folder: str, queries_file: str, truth_file: str) -> dict:
    """Run in a fresh process: open time, latency, recall and memory of a built index."""
    queries = np.load(queries_file)
    truth = np.load(truth_file)
    rss_before = rss_mb()
    started = time.perf_counter()
    index = lookalike.Index.open(folder, create=False)
    store = index.store
    opened = time.perf_counter() - started
    first = time.perf_counter()
    store.search(queries[:1], 10)
    first_query = time.perf_counter() - first
    latencies, found = [], []
    for q in queries:
        t = time.perf_counter()
        _, ids = store.search(q[None], 10)
        latencies.append(time.perf_counter() - t)
        found.append(ids[0])
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
    filtered = []
    allowed = index.catalogue.image_ids_with_labels([7])  # top labels of 0.5% of the images
    for q in queries[:50]:
        t = time.perf_counter()
        store.search(q[None], 10, allowed)
        filtered.append(time.perf_counter() - t)
    return {
        "open_s": round(opened, 4),
        "first_query_ms": round(first_query * 1000, 2),
        "search_p50_ms": round(float(np.median(latencies)) * 1000, 3),
        "search_p95_ms": round(float(np.percentile(latencies, 95)) * 1000, 3),
        "recall_at_10": round(float(recall), 4),
        "filtered_0.5pct_p50_ms": round(float(np.median(filtered)) * 1000, 3),
        "rss_mb": round(rss_mb(), 1),
        "rss_mb_python_and_libraries": round(rss_before, 1),
        "peak_rss_mb": round(rss_mb("VmHWM"), 1),
        "store": type(store.inner).__name__,
    }


def build_and_measure(
    folder: Path, base, labels, n: int, queries: np.ndarray, scratch: Path, features: list | None = None,
    lock: str | None = None,
):
    shutil.rmtree(folder, ignore_errors=True)
    result: dict = {"n": n, "local_features": features is not None}
    result["catalogue_write_s"] = round(write_catalogue(folder, base, labels, n, features), 1)
    with lookalike.Index.open(folder) as index:
        started = time.perf_counter()
        store = index.store  # transform + graph from the catalogue, saved
        result["build_s"] = round(time.perf_counter() - started, 1)
        result["builder_peak_rss_mb"] = round(rss_mb("VmHWM"), 1)  # includes the generator
        result["store"] = type(store.inner).__name__
        transform = store.transform
    truth = ground_truth(base, labels, n, queries, transform)
    np.save(scratch / "queries.npy", queries)
    np.save(scratch / "truth.npy", truth)
    command = [sys.executable, __file__, "--measure", str(folder), str(scratch / "queries.npy"), str(scratch / "truth.npy")]
    out = subprocess.run(
        ["flock", lock, *command] if lock else command,  # no other timed benchmark meanwhile
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result.update(json.loads(out.strip().splitlines()[-1]))
    files = {f.name: f.stat().st_size for f in folder.iterdir() if f.is_file()}
    result["files_mb"] = {k: round(v / 2**20, 1) for k, v in sorted(files.items())}
    ann_bytes = sum(v for k, v in files.items() if k.startswith("ann"))
    result["ann_bytes_per_image"] = round(ann_bytes / n, 1)
    result["catalogue_bytes_per_image"] = round(files.get("catalogue.sqlite", 0) / n, 1)
    return result


def end_to_end(folder: Path, with_copies: list[Path], without_copies: list[Path]) -> dict:
    """Query latency on real photo files (decode + embed + search), see caltech.timed_queries.

    ``with_copies``: photos whose local features ~11 synthetic images carry, so a verified
    match ends the query early; ``without_copies``: photos whose features no image carries,
    so nothing verifies and every query pays for the regional stage too (the usual case for
    a photo that is not in the collection).
    """
    with lookalike.Index.open(folder, create=False) as index:
        out = {f"e2e_{k}": v for k, v in caltech.timed_queries(index, with_copies).items()}
        no_copy = caltech.timed_queries(index, without_copies)
        out |= {f"e2e_no_copy_{k}": v for k, v in no_copy.items() if k.startswith("index_search")}
        return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        print(json.dumps(measure_search(*sys.argv[2:5])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="the large index (0: skip it)")
    parser.add_argument("--n-e2e", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--limit", type=int, help="derive from a fixed-seed sample of N Caltech photos (quick check)")
    parser.add_argument("--lock", help="hold this file (flock) while timing searches")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ann.json")
    args = parser.parse_args()

    base, labels, paths = caltech.embeddings(lookalike.Settings().model, args.limit)  # the default model
    chosen = query_rows(len(base), args.queries)
    queries = base[chosen[: args.queries]]
    scratch = caltech.SCRATCH / "ann"
    scratch.mkdir(parents=True, exist_ok=True)
    started = time.time()
    report = {
        "machine": caltech.machine(),
        "synthetic": f"mix of two real Caltech {lookalike.Settings().model} descriptors x log-normal noise (see docstring)",
        "settings": lookalike.Settings().as_dict() | {"cache_dir": None},
    }
    if args.limit:
        report["limit"] = args.limit
    e2e_queries = chosen[args.queries :]
    with_copies, without_copies = e2e_queries[:26], e2e_queries[26:]
    features = real_features(paths, set(without_copies.tolist()), args.limit)
    e2e = build_and_measure(scratch / "e2e", base, labels, args.n_e2e, queries, scratch, features, args.lock)
    e2e.update(end_to_end(scratch / "e2e", [paths[i] for i in with_copies], [paths[i] for i in without_copies]))
    report["e2e"] = e2e
    print(json.dumps(e2e, indent=1), flush=True)
    shutil.rmtree(scratch / "e2e", ignore_errors=True)
    if args.n:
        report["large"] = build_and_measure(scratch / "large", base, labels, args.n, queries, scratch, lock=args.lock)
        print(json.dumps(report["large"], indent=1), flush=True)
        shutil.rmtree(scratch / "large", ignore_errors=True)
    report["wall_s"] = round(time.time() - started, 1)
    caltech.write_report(report, args.out)


if __name__ == "__main__":
    main()
