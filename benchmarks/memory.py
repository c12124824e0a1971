"""Peak memory (RSS) of ``lookalike index`` in a fresh process, by collection size.

    python benchmarks/memory.py [--sizes 1000 9143 10000 100000] [--out benchmarks/results/memory.json]
    python benchmarks/memory.py --sizes 1000 --out /tmp/memory.json

* **1,000** and **9,143**: real Caltech-101 photos (the fixed-seed sample of benchmarks/ab.py,
  and all of them) indexed into a fresh index: every default step, local features, the
  learned transform and the neighbour graph.
* **10,000** and **100,000** (no photo collection of that size is at hand): a catalogue of
  N - 1,000 *synthetic* images is written first, as benchmarks/ann.py writes its end-to-end
  index (descriptors mixed from two real Caltech descriptors times log-normal noise, each
  image carrying the real local features and visual words of the photo it was made from),
  and its store and neighbour graph are built, as an earlier run would have left them; then
  ``lookalike index`` adds 1,000 *new* real photos (mirrored, cropped, re-compressed Caltech
  copies, benchmarks/throughput.py ``augmented_copies``), so the measured process opens the
  collection, embeds, updates the store, re-learns the transform if due and links the new
  images into the graph.

Peak RSS is the indexing process' own ``ru_maxrss`` (``os.wait4``), which also counts the
pages of the process it was forked from: so the synthetic collections are prepared in a
process of their own and this script stays small. Wall and CPU seconds come with it (the
machine is shared: CPU time is the steadier figure).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ab  # noqa: E402
import ann  # noqa: E402
import caltech  # noqa: E402
import throughput  # noqa: E402

import lookalike  # noqa: E402

NEW = 1000  # real photos each measured run indexes into a synthetic collection


def index_process(photos: Path, db: Path) -> dict:
    """``lookalike index photos --db db`` in a fresh process: its peak RSS, wall and CPU."""
    env = {**os.environ, "PYTHONPATH": str(Path(lookalike.__file__).parents[1])}
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "lookalike.cli", "index", str(photos), "--db", str(db)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"lookalike index failed ({status}) on {photos}")
    return {"peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "wall_s": round(wall, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1)}


def synthetic_collection(db: Path, images: int) -> dict:
    """A catalogue of ``images`` synthetic images with real local features, its store and
    graph built (not measured; see the module docstring)."""
    base, labels, paths = caltech.embeddings(lookalike.Settings().model)
    features = ann.real_features(paths, set())
    shutil.rmtree(db, ignore_errors=True)
    started = time.perf_counter()
    ann.write_catalogue(db, base, labels, images, features)
    with lookalike.Index.open(db, create=False) as index:
        index.store.save(index.path, index.catalogue.generation)
        index.graph()
    return {"synthetic_images": images, "prepared_s": round(time.perf_counter() - started, 1)}


def measure(size: int, work: Path) -> dict:
    db = work / f"memory-{size}"
    paths, _ = caltech.manifest()
    if size >= len(paths):
        if size == len(paths):
            shutil.rmtree(db, ignore_errors=True)
            return {"images": size, "real": True, **index_process(caltech.DATA / "images", db)}
        # Prepared in its own process: a child's peak RSS counts the pages of the process
        # it was forked from, so this one must stay small.
        prepared = subprocess.run([sys.executable, __file__, "--prepare", str(db), str(size - NEW)],
                                  check=True, capture_output=True, text=True).stdout
        row = json.loads(prepared.strip().splitlines()[-1])
        return {"images": size, "real": False, **row,
                **index_process(throughput.augmented_copies(paths, NEW), db)}
    photos, _ = ab.sample(size, 0)
    shutil.rmtree(db, ignore_errors=True)
    return {"images": size, "real": True, **index_process(photos, db)}


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--prepare":
        print(json.dumps(synthetic_collection(Path(sys.argv[2]), int(sys.argv[3]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 9143, 10_000, 100_000])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "memory.json")
    args = parser.parse_args()
    work = caltech.SCRATCH
    report = {**caltech.run_info(), "runs": []}
    for size in args.sizes:
        row = measure(size, work)
        report["runs"].append(row)
        print(row, flush=True)
        shutil.rmtree(work / f"memory-{size}", ignore_errors=True)
    caltech.write_report(report, args.out)


if __name__ == "__main__":
    main()
