"""Caltech-101 helpers shared by the benchmarks: the manifest, cached embeddings and mAP.

Not a benchmark itself (nothing to run): every script finds the dataset through
:data:`DATA` here, ``$LOOKALIKE_CALTECH`` or ``../shared/datasets/caltech101`` beside the
repository. Embeddings are made by the product itself (``Index.add`` into a scratch index
under ``$LOOKALIKE_BENCH_TMP``, default ``/tmp/lookalike-bench``), then read back per file,
so the benchmarks measure the vectors a user would get. Nothing here writes into the
repository.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

DATA = Path(
    os.environ.get(
        "LOOKALIKE_CALTECH", Path(__file__).resolve().parents[2] / "shared/datasets/caltech101"
    )
)
SCRATCH = Path(os.environ.get("LOOKALIKE_BENCH_TMP", "/tmp/lookalike-bench"))


def manifest() -> tuple[list[Path], list[str]]:
    """Absolute paths and class labels of all 9,143 images, in manifest order."""
    if not (DATA / "manifest.csv").exists():
        raise SystemExit(f"Caltech-101 not found at {DATA}; set LOOKALIKE_CALTECH")
    with open(DATA / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [DATA / r["path"] for r in rows], [r["label"] for r in rows]


def embeddings_index(model: str, limit: int | None = None) -> Path:
    """The scratch index that :func:`embeddings` builds (and benchmarks/ann.py reads)."""
    return SCRATCH / f"caltech-{model}{f'-{limit}' if limit else ''}-index"


def embeddings(model: str = "lite0", limit: int | None = None) -> tuple[np.ndarray, list[str], list[Path]]:
    """``(vectors float32 (N, D), labels, paths)`` for every Caltech image, cached as .npz;
    with ``limit``, for a fixed-seed sample of that many (a quick check), cached apart."""
    cache = SCRATCH / f"caltech-{model}{f'-{limit}' if limit else ''}.npz"
    paths, labels = manifest()
    if limit:
        chosen = np.sort(np.random.default_rng(0).choice(len(paths), limit, replace=False))
        paths, labels = [paths[i] for i in chosen], [labels[i] for i in chosen]
    if not cache.exists():
        from lookalike import Index

        db = embeddings_index(model, limit)
        with Index.open(db, model=model) as index:
            index.add(paths if limit else [DATA / "images"])
            ids = [index.catalogue.image_for_location(str(p)) for p in paths]
            vectors = index.catalogue.vectors_for(ids)
        SCRATCH.mkdir(parents=True, exist_ok=True)
        np.savez(cache, vectors=vectors.astype(np.float16))
    vectors = np.load(cache)["vectors"].astype(np.float32)
    return vectors, labels, paths


def mean_average_precision(vectors: np.ndarray, labels: list[str]) -> float:
    """Full-ranking mAP over the labelled images (BACKGROUND_Google left out): each image
    queries all others, relevant = same class."""
    keep = np.array([label != "BACKGROUND_Google" for label in labels])
    x = vectors[keep]
    y = np.array(labels)[keep]
    aps = []
    for start in range(0, len(x), 512):
        scores = x[start : start + 512] @ x.T
        for row, i in enumerate(range(start, min(start + 512, len(x)))):
            s = scores[row].copy()
            s[i] = -np.inf  # the query itself is not a result
            order = np.argsort(-s, kind="stable")[:-1]
            relevant = y[order] == y[i]
            hits = np.cumsum(relevant)
            n = relevant.sum()
            aps.append((hits[relevant] / (np.flatnonzero(relevant) + 1)).sum() / n if n else 0.0)
    return float(np.mean(aps))


def machine() -> dict:
    """What the numbers were measured on (CPU model, cores, load, versions, date)."""
    import platform
    import subprocess
    import time

    import onnxruntime

    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in cpu.splitlines()
            if line.startswith("Model name")
        ),
        "?",
    )
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def timed_queries(index, paths: list[Path], k: int = 10) -> dict:
    """Latency of query photos through the index, in milliseconds (p50/p95).

    ``core``: decode + embed + vector search + the catalogue lookups that name the matches,
    i.e. the steps every query needs. ``search``: ``Index.search`` with its defaults, which
    may add optional re-ranking steps on top (reported, not targeted).
    """
    import time

    index.search(paths[0], k=k)  # warm: model session, store
    core, full = [], []
    for path in paths[1:]:
        t = time.perf_counter()
        vectors = index.embed([path]).vectors
        _, ids = index.store.search(vectors, k)
        index.catalogue.locations_for(ids[0].tolist())
        core.append(time.perf_counter() - t)
        t = time.perf_counter()
        index.search(path, k=k)
        full.append(time.perf_counter() - t)

    def ms(values: list[float], q: float) -> float:
        return round(float(np.percentile(values, q)) * 1000, 1)

    return {
        "core_p50_ms": ms(core, 50),
        "core_p95_ms": ms(core, 95),
        "index_search_p50_ms": ms(full, 50),
        "index_search_p95_ms": ms(full, 95),
        "queries": len(core),
    }


def link_tree(paths: list[Path], dest: Path) -> Path:
    """Symlink photos into ``dest/<class>/`` (idempotent) so an index sees class folders."""
    for p in paths:
        target = dest / p.parent.name / p.name
        if not target.is_symlink():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(p, target)
    return dest


def run_info(argv: list[str] | None = None) -> dict:
    """The command that produced a result (``argv``: the arguments main() was given), the
    date, and the CPU, its cores and the load at the start: the header of each results file."""
    import sys
    import time

    args = argv if argv is not None else sys.argv[1:]
    return {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *args]),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at start",
    }


def cpu_model() -> str:
    """The CPU's name as the kernel gives it (``lscpu``'s "Model name"), or "unknown CPU"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def write_report(report: dict, out: Path) -> None:
    """Write a benchmark's JSON result file and say where."""
    import json

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


@contextmanager
def quick_check_folder(args, prefix: str) -> Iterator[None]:
    """With ``--limit``, ``args.work`` is a temporary folder, removed afterwards: a quick
    check never leaves files that a later full run would reuse."""
    if not args.limit:
        yield
        return
    args.work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield
    finally:
        shutil.rmtree(args.work, ignore_errors=True)
