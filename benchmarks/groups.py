"""Small groups of views of one object: does re-ranking keep a handful of true matches on top?

The class-level set (benchmarks/quality.py) rewards spreading a query's score to whole
categories, and the instance set (benchmarks/instance.py) has one original per query. Many
collections are neither: a few photos of the same thing (UKBench-style groups of four) among
many of the same kind. Re-ranking that helps categories can push such a group's members down,
so this set checks that the defaults do not trade one for the other.

* **Database** (9,677 images): the 8,677 labelled Caltech-101 photos plus ``--groups`` (250)
  groups of 4 *views* of a photo chosen at random (fixed seed): each view is an independent
  crop of 45-80 % of the area, a perspective change (corners moved up to 12 %), a rotation
  of up to ±12° and a colour change, saved at JPEG quality 85.
* **Queries**: every view; **relevant**: the other 3 views and the source photo. Scored by
  the product's own ``lookalike.evaluate.evaluate_index`` with a ground-truth CSV (mAP over
  the full ranking, P@1, recall@K); each query is left out of its own re-ranking and
  verification. Each configuration is a whole query pipeline (``CONFIGS``, or a spec string
  given as ``--config``), recorded with its row.

The views are edits of one photograph, so spatial verification finds most of them; the rows
whose pipeline has no verification stage show what re-ranking does to groups that
verification cannot confirm (different photos of the same object). Views and index live
under ``--work`` (default ``/tmp/lookalike-groups``, never the repository) and are reused;
``--limit N`` uses a fixed-seed sample of N labelled photos in a temporary folder instead
(a quick check).

    python benchmarks/groups.py --out benchmarks/results/groups.json
    python benchmarks/groups.py --limit 300 --groups 5 --config none --config default --out /tmp/groups.json
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import caltech  # noqa: E402
import instance  # noqa: E402
from PIL import Image  # noqa: E402
from quality import labelled_images  # noqa: E402

import lookalike  # noqa: E402
from lookalike.evaluate import evaluate_index  # noqa: E402
from lookalike.query.spec import parse  # noqa: E402

CONFIGS = {
    # name: the whole query pipeline measured (lookalike.query.spec)
    "none": "cosine",
    "qe": "cosine,qe",
    "diffusion": "cosine,diffusion",
    "qe+verify": "cosine,qe,verify:20,words:10,regions:10",  # the default, never diffusion
    "default": lookalike.Settings().pipeline,  # the product's default pipeline
}


def make_views(photos: list[Path], folder: Path, groups: int, seed: int) -> list[tuple[Path, list[Path]]]:
    """``groups`` x 4 views (written once, then reused): ``[(view, relevant paths)]``."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for g, source in enumerate(rng.sample(photos, groups)):
        image = Image.open(source).convert("RGB")
        views = [folder / f"g{g:03d}_{v}.jpg" for v in range(4)]
        for path in views:
            view = instance.crop(image, rng, 0.45, 0.8)
            view = instance.perspective(view, rng, 0.12)
            view = view.rotate(rng.uniform(-12, 12), Image.Resampling.BICUBIC)
            view = instance.colour(view, rng, 0.8)
            if not path.exists():
                view.save(path, quality=85)
        rows += [(v, [w for w in views if w != v] + [source]) for v in views]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/lookalike-groups"))
    parser.add_argument("--groups", type=int, default=250)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--config", action="append", help=f"one of {', '.join(CONFIGS)} or a pipeline spec string (repeatable; default: all of them)")
    parser.add_argument("--limit", type=int, help="a fixed-seed sample of N labelled photos in a temporary folder (quick check)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    if args.limit:
        args.work = Path(tempfile.mkdtemp(prefix="lookalike-groups-"))
    try:
        result = run(args)
    finally:
        if args.limit:
            shutil.rmtree(args.work, ignore_errors=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


def run(args: argparse.Namespace) -> dict:
    photos = caltech.link_tree(labelled_images(args.limit), args.work / "photos")
    sources = sorted(p for p in photos.rglob("*.jpg"))
    rows = make_views(sources, args.work / f"views-{args.groups}-{args.seed}", args.groups, args.seed)
    truth = args.work / "truth.csv"
    truth.write_text("query,relevant\n" + "".join(
        f"{view},{';'.join(map(str, relevant))}\n" for view, relevant in rows
    ))
    with lookalike.Index.open(args.work / "index") as index:
        t0 = time.perf_counter()
        report = index.add([photos, rows[0][0].parent])
        indexing = time.perf_counter() - t0
        configs = {}
        for name in args.config or list(CONFIGS):
            spec = parse(CONFIGS.get(name, name)).spec
            t0 = time.perf_counter()
            metrics = evaluate_index(index, str(truth), pipeline=spec).as_dict()
            seconds = time.perf_counter() - t0
            configs[name] = {
                "pipeline": spec,
                **metrics,
                "ms_per_query": round(1000 * seconds / max(metrics["queries"], 1), 2),
            }
            print(f"{name:12s} mAP {metrics['mAP']:.4f}  P@1 {metrics['P@1']:.3f}  "
                  f"R@10 {metrics['recall@10']:.4f}", flush=True)
        photos_count = "the 8,677" if args.limit is None else f"{args.limit} of the"
        return {
            "benchmark": f"{args.groups} groups of 4 views of a Caltech-101 photo among {photos_count} labelled photos",
            **caltech.run_info(),
            "model": index.settings.model,
            "images": len(index),
            "seed": args.seed,
            "indexing_seconds": round(indexing, 1),
            "newly_embedded": report.embedded,
            "settings": {"pipeline": index.settings.pipeline, "rerank": index.rerank_method()},
            "configs": configs,
        }


if __name__ == "__main__":
    main()
