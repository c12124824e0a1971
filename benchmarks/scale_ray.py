"""Indexing throughput with Ray Data (``--ray``) against the single-process run, here.

    python benchmarks/scale_ray.py [--n 400] [--rounds 2] [--out benchmarks/results/scale-ray.json]

Indexes the same fixed-seed sample of ``n`` Caltech-101 photos into fresh indexes, the
single-process way and on a local Ray (all cores, usage statistics off, inside a private
network namespace as the tests run it; needs root), alternating ``rounds`` times so that
both see the same load on a shared machine. Reports wall images/s, CPU ms per image of this
process and its children (Ray's workers included) and, for Ray, the seconds spent starting
and stopping the local cluster (included in its wall time: what ``lookalike index --ray``
costs on one machine; a bare start and stop is timed apart). The input for the N-worker estimate in benchmarks/scale_plan.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import caltech  # noqa: E402
from netns import PrivateNetwork  # noqa: E402

import lookalike  # noqa: E402


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def one_run(paths: list[Path], work: Path, ray: str | None) -> dict:
    folder = Path(tempfile.mkdtemp(dir=work))
    started, cpu = time.perf_counter(), cpu_s()
    with lookalike.Index.open(folder / "index") as index:
        report = index.add(paths, ray=ray)
    wall = time.perf_counter() - started
    shutil.rmtree(folder)
    return {"images": report.embedded, "wall_s": round(wall, 1),
            "images_per_s": round(report.embedded / wall, 1),
            "indexer_images_per_s": round(report.images_per_second, 1),
            "cpu_ms_per_image": round((cpu_s() - cpu) * 1000 / report.embedded, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/scale-ray.json"))
    args = parser.parse_args()
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    all_paths, _ = caltech.manifest()
    chosen = np.sort(np.random.default_rng(11).choice(len(all_paths), args.n, replace=False))
    paths = [all_paths[i] for i in chosen]
    report = caltech.run_info()
    runs: dict[str, list] = {"single": [], "ray": []}
    net = PrivateNetwork()
    work = Path(tempfile.mkdtemp(prefix="lookalike-ray-"))
    try:
        for _ in range(args.rounds):
            runs["single"].append(one_run(paths, work, None))
            with net.inside():
                runs["ray"].append(one_run(paths, work, "local"))
            print(runs, flush=True)
        with net.inside():
            import ray

            started = time.perf_counter()
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
            ray.shutdown()
            startup = time.perf_counter() - started
    finally:
        shutil.rmtree(work, ignore_errors=True)
        net.close()
    best = {k: max(r["images_per_s"] for r in v) for k, v in runs.items()}
    report.update(runs=runs, best_images_per_s=best,
                  ray_over_single=round(best["ray"] / best["single"], 3),
                  ray_start_and_stop_s=round(startup, 1))
    caltech.write_report(report, args.out)


if __name__ == "__main__":
    main()
