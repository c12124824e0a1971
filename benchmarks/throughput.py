"""Indexing throughput and query latency on this machine, through the product's own paths.

    python benchmarks/throughput.py [--models lite0-int8 lite0-int8:no-local-features lite0]
                                    [--big 120] [--out benchmarks/results/throughput.json]
    python benchmarks/throughput.py --models lite0-int8 --limit 300 --big 4 --out /tmp/throughput.json

For each model (``:no-local-features``: the index stores no local features for spatial
verification, ``Settings.local_features`` off), in one run (so ratios compare like with like
on a noisy, shared machine):

* **ceiling**: the model alone on preprocessed batches of 32 real photos, one batch per core
  on single-threaded sessions as indexing runs it (median of 8);
* **Caltech-101 end to end**: all 9,143 files into a fresh index (discover, hash, decode,
  preprocess, embed, commit), as ``lookalike index`` does; wall images/s, CPU ms per image
  and the cores we actually got (other jobs share the machine), and the fraction of the
  ceiling reached;
* **12-megapixel JPEGs**: ``--big`` Caltech photos upscaled to 4000x3000 and saved at JPEG
  quality 90 into /tmp (made once, fixed seed), indexed the same way;
* **mAP**: Caltech-101 full-ranking mAP of the stored descriptors (8,677 labelled photos,
  raw GeM and centred as the index searches), to weigh the int8 model's speed against quality.

Then on the Caltech index of the first model: query latency p50/p95 on photo files (decode +
embed + search; and ``Index.search`` with whatever optional re-ranking it does by default), and the wall time of a cold ``lookalike search``
process on a 10k-image index: Caltech's 9,143 plus 900 augmented copies (the first 900
manifest photos mirrored, cropped by 10% and re-saved at quality 80; fixed seed).

``--limit N`` indexes a fixed-seed sample of N Caltech photos instead of all of them, with
a tenth as many augmented copies (a quick check).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))
import caltech  # noqa: E402

import lookalike  # noqa: E402
from lookalike.images import load_image  # noqa: E402

SEED = 20261126
BATCH = 32


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def ceiling(model: str, paths: list[Path]) -> dict:
    """Images/s of the model alone on preprocessed batches (no decoding, no writing).

    Measured as indexing runs it: one batch per core at once on single-threaded sessions
    (``Embedder.for_parallel_batches``); ``all_cores_session`` is one batch at a time on the
    all-cores session that queries use.
    """
    from concurrent.futures import ThreadPoolExecutor

    from lookalike.embed.embedder import Embedder

    embedder = Embedder(lookalike.Settings(model=model))
    pixels = np.stack(
        [embedder.pixels(load_image(p, target_size=embedder.input_size)) for p in paths[:BATCH]]
    )
    batch = embedder.tensors(pixels)
    streams = lookalike.Settings().cpu_count()
    parallel = embedder.for_parallel_batches()

    def timed(run) -> tuple[list[float], list[float]]:
        run()  # warm up
        times, cpu = [], []
        for _ in range(8):
            t, c = time.perf_counter(), cpu_seconds()
            run()
            times.append(time.perf_counter() - t)
            cpu.append(cpu_seconds() - c)
        return times, cpu

    with ThreadPoolExecutor(streams) as pool:
        times, cpu = timed(lambda: list(pool.map(parallel.embed_tensors, [batch] * streams)))
    alone, _ = timed(lambda: embedder.embed_tensors(batch))
    images = BATCH * streams
    return {
        "images_per_s": round(images / float(np.median(times)), 1),
        "best_images_per_s": round(images / min(times), 1),
        "cpu_ms_per_image": round(float(np.median(cpu)) / images * 1000, 2),
        "all_cores_session_images_per_s": round(BATCH / float(np.median(alone)), 1),
    }


def parse_config(config: str) -> tuple[str, lookalike.Settings]:
    """``MODEL`` or ``MODEL:no-local-features`` -> (model, index settings)."""
    model, _, option = config.partition(":")
    if option not in ("", "no-local-features"):
        raise SystemExit(f"unknown option '{option}' in '{config}'")
    return model, lookalike.Settings(model=model, local_features=option != "no-local-features")


def index_folder(config: str, sources: list[Path], db: Path) -> tuple[dict, lookalike.Index]:
    """A fresh index of ``sources`` (folders or photo files), timed."""
    shutil.rmtree(db, ignore_errors=True)
    model, settings = parse_config(config)
    index = lookalike.Index.open(db, model=model, settings=settings)
    index.embedder.session  # noqa: B018 - build/load the model outside the timing
    t, c = time.perf_counter(), cpu_seconds()
    report = index.add(sources)
    wall, cpu = time.perf_counter() - t, cpu_seconds() - c
    return {
        "images": report.embedded,
        "failed": len(report.failed),
        "seconds": round(wall, 1),
        "images_per_s": round(report.embedded / wall, 1),
        "cpu_ms_per_image": round(cpu / max(report.embedded, 1) * 1000, 2),
        "cores_used": round(cpu / wall, 2),
    }, index


def big_jpegs(paths: list[Path], count: int) -> Path:
    """``count`` 4000x3000 quality-90 JPEGs made from Caltech photos (cached in /tmp)."""
    folder = caltech.SCRATCH / f"jpeg-12mp-{count}"
    if len(list(folder.glob("*.jpg"))) == count:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    for n, i in enumerate(rng.choice(len(paths), count, replace=False)):
        with Image.open(paths[i]) as im:
            big = im.convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC)
        big.save(folder / f"big_{n:04d}.jpg", quality=90)
    return folder


def augmented_copies(paths: list[Path], count: int) -> Path:
    """Mirrored, 10%-cropped, quality-80 copies of the first ``count`` photos."""
    folder = caltech.SCRATCH / f"augmented-{count}"
    if len(list(folder.glob("*.jpg"))) == count:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for n, path in enumerate(paths[:count]):
        with Image.open(path) as im:
            im = ImageOps.mirror(im.convert("RGB"))
            w, h = im.size
            im.crop((w // 20, h // 20, w - w // 20, h - h // 20)).save(
                folder / f"aug_{n:04d}.jpg", quality=80
            )
    return folder


def descriptor_map(index: lookalike.Index, paths: list[Path], labels: list[str]) -> dict:
    ids = [index.catalogue.image_for_location(str(p)) for p in paths]
    vectors = index.catalogue.vectors_for(ids)
    stored = index.store.transform.apply(vectors)  # centred and, from 1,000 images, whitened
    return {
        "map_raw": round(caltech.mean_average_precision(vectors, labels), 4),
        "map_stored": round(caltech.mean_average_precision(stored, labels), 4),
    }


def query_latency(index: lookalike.Index, paths: list[Path], count: int = 100) -> dict:
    count = min(count, len(paths) - 1)
    rng = np.random.default_rng(SEED)
    chosen = [paths[i] for i in rng.choice(len(paths), count + 1, replace=False)]
    result = caltech.timed_queries(index, chosen)
    search_only = []
    for vector in index.embed(chosen[1:21]).vectors:
        t = time.perf_counter()
        index.store.search(vector[None], 10)
        search_only.append(time.perf_counter() - t)
    result["search_only_p50_ms"] = round(float(np.median(search_only)) * 1000, 2)
    result["store"] = type(index.store.inner).__name__
    return result


def cold_cli(db: Path, query: Path, repeats: int = 3) -> dict:
    """Wall time of whole ``lookalike search`` processes (interpreter start to exit)."""
    exe = Path(sys.executable).with_name("lookalike")
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(
            [str(exe), "search", str(query), "--db", str(db), "--top", "10"],
            check=True,
            capture_output=True,
        )
        times.append(time.perf_counter() - t)
    return {
        "cli_search_median_s": round(float(np.median(times)), 3),
        "cli_search_all_s": [round(x, 3) for x in times],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=["lite0-int8", "lite0-int8:no-local-features", "lite0"],
        help="MODEL or MODEL:no-local-features (index without stored local features)",
    )
    parser.add_argument("--big", type=int, default=120, help="12-MP JPEGs to index")
    parser.add_argument("--limit", type=int, help="index a fixed-seed sample of N Caltech photos (quick check)")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "throughput.json"
    )
    args = parser.parse_args()

    all_paths, labels = caltech.manifest()
    paths, sources, copies = all_paths, [caltech.DATA / "images"], 900
    if args.limit:
        chosen = np.sort(np.random.default_rng(SEED).choice(len(paths), args.limit, replace=False))
        paths, labels = [paths[i] for i in chosen], [labels[i] for i in chosen]
        sources, copies = paths, args.limit // 10
    started = time.time()
    report: dict = {"machine": caltech.machine(), "models": {}}
    if args.limit:
        report["limit"] = args.limit
    big = big_jpegs(all_paths, args.big)
    first_index = None
    for model in args.models:
        result: dict = {"ceiling": ceiling(parse_config(model)[0], all_paths)}
        stats, index = index_folder(model, sources, caltech.SCRATCH / f"tp-{model}")
        # By wall clock (hurt when other jobs take cores mid-run) and by CPU time (stable):
        # the share of each image's CPU time that is the model itself.
        stats["fraction_of_ceiling"] = round(
            stats["images_per_s"] / result["ceiling"]["images_per_s"], 2
        )
        stats["cpu_fraction_of_ceiling"] = round(
            result["ceiling"]["cpu_ms_per_image"] / stats["cpu_ms_per_image"], 2
        )
        result["caltech"] = stats
        result["quality"] = descriptor_map(index, paths, labels)
        big_stats, big_index = index_folder(model, [big], caltech.SCRATCH / f"tp-big-{model}")
        big_index.close()
        result["jpeg_12mp"] = big_stats
        print(model, json.dumps(result), flush=True)
        report["models"][model] = result
        if first_index is None:
            first_index = index
        else:
            index.close()
    first_model = args.models[0]
    report["query"] = query_latency(first_index, paths) | {"model": first_model}
    first_index.add([augmented_copies(all_paths, copies)])
    report["cli"] = cold_cli(first_index.path, paths[0]) | {
        "images": len(first_index),
        "model": first_model,
    }
    first_index.close()
    print(json.dumps({"query": report["query"], "cli": report["cli"]}), flush=True)
    report["wall_s"] = round(time.time() - started, 1)
    caltech.write_report(report, args.out)


if __name__ == "__main__":
    main()
