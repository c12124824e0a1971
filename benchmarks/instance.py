"""Instance-level retrieval on Caltech-101: is the original photo found from an edited copy?

Everything goes through the product: the database photos are indexed with ``Index.add`` and
every query is answered by ``Index.search_many`` with the settings under test.

* **Database** (8,910 images): the 8,677 labelled Caltech-101 photos plus the 233
  even-numbered ``BACKGROUND_Google`` photos as distractors.
* **Queries** (``--queries``, default 600, fixed seed): database photos chosen at random and
  edited in one of ten ways (60 each), then saved as JPEG (quality 75-95):

  ``crop`` 40-80 % of the area (aspect 3/4-4/3); ``rotate`` ±10-30° (expanded canvas) or a
  quarter/half turn; ``scale`` down to 25-50 % of the side or up ×2; ``perspective`` corners
  moved by up to 15 % of the side; ``colour`` brightness/contrast ×0.6-1.4, saturation 0-1.5,
  colour cast; ``blur`` Gaussian radius 1.5-3; ``jpeg`` quality 8-25; ``overlay`` caption
  text and 2-5 filled shapes covering ~10-25 %; ``paste`` the photo at 40-70 % of the side on
  one of the 233 odd-numbered ``BACKGROUND_Google`` photos (never indexed); ``combo`` crop
  50-80 % + rotation ±15° + colour + downscale 50-80 % + JPEG 40 (the study's hard set).

* **Ground truth**: the original image; a ``Faces`` photo and its ``Faces_easy`` twin (the same
  photograph cropped tighter) are both relevant. AP is computed on the top ``--depth`` (100)
  results, so with one relevant image it is the reciprocal rank (0 if not in the top 100).

Each configuration is a query pipeline: a named spec string (``CONFIGS``), a spec string
(``--config cosine,qe,verify:10``) or search options as a JSON dict of
:class:`lookalike.SearchOptions` shorthands (``--config '{"words": 0}'``: the default
pipeline edited); its row records the options and the spec that ran.

Queries are generated on demand under ``--work`` (default ``/tmp/lookalike-instance``, never
the repository) and reused while the seed and count are the same; the index there is reused
too (``Index.add`` is incremental). ``--limit N`` indexes a fixed-seed sample of N database
photos (the queries are edits of photos in it) in a temporary folder instead.

    python benchmarks/instance.py                                  # the default pipeline
    python benchmarks/instance.py --config none --config qe --config qe+verify10
    python benchmarks/instance.py --limit 600 --queries 20 --config none --config default --out /tmp/instance.json
    python benchmarks/instance.py --region-size 384 --out benchmarks/results/instance-regions384.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import caltech  # noqa: E402
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps  # noqa: E402

import lookalike  # noqa: E402
from lookalike.query.spec import parse  # noqa: E402

KINDS = ("crop", "rotate", "scale", "perspective", "colour", "blur", "jpeg", "overlay", "paste", "combo")
WORDS = ("holiday", "SALE", "lookalike", "2019", "copyright", "hello", "photo", "DRAFT", "sample", "#tbt")


# ----------------------------------------------------------------------------- data
def database_files() -> tuple[list[Path], list[Path]]:
    """(database photos, held-out paste backgrounds) from the Caltech-101 manifest."""
    db, backgrounds = [], []
    for path, label in zip(*caltech.manifest(), strict=True):
        if label == "BACKGROUND_Google":
            number = int(path.stem.split("_")[-1])
            (db if number % 2 == 0 else backgrounds).append(path)
        else:
            db.append(path)
    return sorted(db), sorted(backgrounds)


def database_sample(db: list[Path], limit: int | None) -> list[Path]:
    """``db``, or a fixed-seed sample of ``limit`` of its photos (a quick check)."""
    if not limit or limit >= len(db):
        return db
    return sorted(random.Random(0).sample(db, limit))




def twins(path: Path) -> set[str]:
    """Locations (under the linked tree) that show the same photograph as ``path``."""
    out = {f"{path.parent.name}/{path.name}"}
    other = {"Faces": "Faces_easy", "Faces_easy": "Faces"}.get(path.parent.name)
    if other and (path.parent.parent / other / path.name).exists():
        out.add(f"{other}/{path.name}")
    return out


# ----------------------------------------------------------------------------- edits
def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def crop(im: Image.Image, rng: random.Random, lo: float = 0.4, hi: float = 0.8) -> Image.Image:
    w, h = im.size
    area = rng.uniform(lo, hi) * w * h
    aspect = rng.uniform(3 / 4, 4 / 3)
    cw = int(min(w, round((area * aspect) ** 0.5)))
    ch = int(min(h, round((area / aspect) ** 0.5)))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return im.crop((x, y, x + cw, y + ch))


def colour(im: Image.Image, rng: random.Random, strength: float = 1.0) -> Image.Image:
    s = strength
    im = ImageEnhance.Brightness(im).enhance(rng.uniform(1 - 0.4 * s, 1 + 0.4 * s))
    im = ImageEnhance.Contrast(im).enhance(rng.uniform(1 - 0.4 * s, 1 + 0.4 * s))
    im = ImageEnhance.Color(im).enhance(rng.uniform(max(0.0, 1 - 1.0 * s), 1 + 0.5 * s))
    cast = np.array([rng.uniform(1 - 0.15 * s, 1 + 0.15 * s) for _ in range(3)], dtype=np.float32)
    return Image.fromarray(np.clip(np.asarray(im, dtype=np.float32) * cast, 0, 255).astype(np.uint8))


def perspective(im: Image.Image, rng: random.Random, amount: float = 0.15) -> Image.Image:
    w, h = im.size
    src = [(0, 0), (w, 0), (w, h), (0, h)]
    dst = [(x + rng.uniform(-amount, amount) * w, y + rng.uniform(-amount, amount) * h) for x, y in src]
    # PIL wants the coefficients mapping output to input pixels.
    a = []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    coeffs = np.linalg.solve(np.array(a, dtype=np.float64), np.array(src, dtype=np.float64).ravel())
    return im.transform((w, h), Image.Transform.PERSPECTIVE, tuple(coeffs), Image.Resampling.BICUBIC)


def overlay(im: Image.Image, rng: random.Random) -> Image.Image:
    im = im.copy()
    w, h = im.size
    draw = ImageDraw.Draw(im)
    for _ in range(rng.randint(2, 5)):
        sw, sh = rng.uniform(0.1, 0.3) * w, rng.uniform(0.1, 0.3) * h
        x, y = rng.uniform(0, w - sw), rng.uniform(0, h - sh)
        fill = tuple(rng.randint(0, 255) for _ in range(3))
        shape = draw.rectangle if rng.random() < 0.5 else draw.ellipse
        shape((x, y, x + sw, y + sh), fill=fill)
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3)))
    size = max(10, int(h * rng.uniform(0.08, 0.15)))
    draw.text((rng.uniform(0, w * 0.3), rng.uniform(0, h * 0.8)), text, font=_font(size),
              fill=tuple(rng.randint(0, 255) for _ in range(3)))
    return im


def paste(im: Image.Image, rng: random.Random, backgrounds: list[Path]) -> Image.Image:
    back = ImageOps.exif_transpose(Image.open(rng.choice(backgrounds))).convert("RGB")
    w, h = im.size
    bw = int(max(w, h) / rng.uniform(0.4, 0.7))
    back = back.resize((bw, int(bw * back.height / back.width) or 1), Image.Resampling.BICUBIC)
    if back.height < h or back.width < w:
        back = back.resize((max(back.width, w), max(back.height, h)), Image.Resampling.BICUBIC)
    x, y = rng.randint(0, back.width - w), rng.randint(0, back.height - h)
    back.paste(im, (x, y))
    return back


def edit(kind: str, im: Image.Image, rng: random.Random, backgrounds: list[Path]) -> Image.Image:
    w, h = im.size
    if kind == "crop":
        return crop(im, rng)
    if kind == "rotate":
        if rng.random() < 1 / 3:
            return im.rotate(rng.choice((90, 180, 270)), expand=True)
        angle = rng.choice((-1, 1)) * rng.uniform(10, 30)
        return im.rotate(angle, Image.Resampling.BICUBIC, expand=True)
    if kind == "scale":
        f = 2.0 if rng.random() < 0.25 else rng.uniform(0.25, 0.5)
        return im.resize((max(16, int(w * f)), max(16, int(h * f))), Image.Resampling.LANCZOS)
    if kind == "perspective":
        return perspective(im, rng)
    if kind == "colour":
        return colour(im, rng)
    if kind == "blur":
        return im.filter(ImageFilter.GaussianBlur(rng.uniform(1.5, 3.0)))
    if kind == "jpeg":
        return _jpeg(im, rng.randint(8, 25))
    if kind == "overlay":
        return overlay(im, rng)
    if kind == "paste":
        return paste(im, rng, backgrounds)
    if kind == "combo":
        im = crop(im, rng, 0.5, 0.8)
        im = im.rotate(rng.uniform(-15, 15), Image.Resampling.BICUBIC)
        im = colour(im, rng, 0.75)
        f = rng.uniform(0.5, 0.8)
        im = im.resize((max(16, int(im.width * f)), max(16, int(im.height * f))), Image.Resampling.LANCZOS)
        return _jpeg(im, 40)
    raise ValueError(kind)


def _jpeg(im: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def make_queries(work: Path, count: int, seed: int, db: list[Path], backgrounds: list[Path]) -> list[dict]:
    """Write the query JPEGs and ``queries.json`` under ``work`` (reused when unchanged)."""
    spec = {"count": count, "seed": seed, "version": 1}
    index_file = work / "queries.json"
    if index_file.exists():
        saved = json.loads(index_file.read_text())
        if saved.get("spec") == spec:
            return saved["queries"]
    labelled = [p for p in db if p.parent.name != "BACKGROUND_Google"]
    rng = random.Random(seed)
    sources = rng.sample(labelled, count)
    queries = []
    out_dir = work / "queries"
    out_dir.mkdir(parents=True, exist_ok=True)
    for n, source in enumerate(sources):
        kind = KINDS[n % len(KINDS)]
        qrng = random.Random(f"{seed}-{n}")
        im = ImageOps.exif_transpose(Image.open(source)).convert("RGB")
        im = edit(kind, im, qrng, backgrounds)
        path = out_dir / f"{n:04d}-{kind}.jpg"
        im.save(path, "JPEG", quality=qrng.randint(75, 95))
        queries.append({"path": str(path), "kind": kind, "source": f"{source.parent.name}/{source.name}",
                        "relevant": sorted(twins(source))})
    index_file.write_text(json.dumps({"spec": spec, "queries": queries}, indent=1))
    return queries


# ----------------------------------------------------------------------------- evaluation
CONFIGS = {
    # name: the whole query pipeline (lookalike.query.spec), or search options
    "default": lookalike.Settings().pipeline,  # the product's default pipeline
    "none": "cosine",
    "qe": "cosine,qe",
    "diffusion": "cosine,diffusion",
    "verify10": "cosine,verify:10,words:10,regions:10",
    "qe+verify10": "cosine,qe,verify:10,words:10,regions:10",
    "qe+verify20": "cosine,qe,verify:20,words:10,regions:10",
    "no-regions": {"regions": 0},  # the default pipeline without its regional stage
    "diffusion+verify10": "cosine,diffusion,verify:10,words:10,regions:10",
}


def parse_config(name: str) -> dict:
    """Search options (:class:`lookalike.SearchOptions` fields) of a ``--config``: a name in
    ``CONFIGS``, a JSON dict of options, or a pipeline spec string."""
    config = CONFIGS.get(name, name)
    if isinstance(config, dict):
        return config
    if config.lstrip().startswith("{"):
        return json.loads(config)
    return {"pipeline": parse(config).spec}  # an actionable error if it is no pipeline


def evaluate(index, queries: list[dict], photos: Path, options: dict, depth: int, batch: int = 1) -> dict:
    """Search every query (one at a time, as a user would) and score the ranking."""
    by_kind: dict[str, list[tuple[int | None, float]]] = {k: [] for k in KINDS}
    latencies = []
    failures = []
    for start in range(0, len(queries), batch):
        chunk = queries[start : start + batch]
        t0 = time.perf_counter()
        results = index.search_many([q["path"] for q in chunk], depth, **options)
        latencies.append((time.perf_counter() - t0) / len(chunk))
        for q, result in zip(chunk, results, strict=True):
            relevant = {os.path.join(photos, r) for r in q["relevant"]}
            ranks = [m.rank for m in result.matches if m.path in relevant]
            hits = sorted(ranks)
            ap = sum((i + 1) / r for i, r in enumerate(hits)) / len(relevant) if hits else 0.0
            first = hits[0] if hits else None
            by_kind[q["kind"]].append((first, ap))
            if first != 1:
                failures.append({"query": os.path.basename(q["path"]), "rank": first,
                                 "top": os.path.relpath(result.matches[0].path, photos) if result.matches else None})
    def summary(rows):
        firsts = [f for f, _ in rows]
        return {
            "queries": len(rows),
            "mAP": round(float(np.mean([a for _, a in rows])), 4),
            "recall@1": round(float(np.mean([f == 1 for f in firsts])), 4),
            "recall@10": round(float(np.mean([f is not None and f <= 10 for f in firsts])), 4),
            "recall@100": round(float(np.mean([f is not None for f in firsts])), 4),
        }
    everything = [row for rows in by_kind.values() for row in rows]
    return {
        "options": options,
        "pipeline": index.pipeline(lookalike.SearchOptions(**options)).spec,
        "all": summary(everything),
        "by_kind": {k: summary(v) for k, v in by_kind.items() if v},
        "latency_ms_p50": round(1000 * statistics.median(latencies), 1),
        "latency_ms_p90": round(1000 * float(np.percentile(latencies, 90)), 1),
        "failures": failures[:50],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("LOOKALIKE_INSTANCE_TMP", "/tmp/lookalike-instance")))
    parser.add_argument("--queries", type=int, default=600)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--depth", type=int, default=100, help="results per query scored (AP@depth)")
    parser.add_argument("--config", action="append", help=f"query pipeline: one of {', '.join(CONFIGS)}, a spec string or a JSON dict of search options (repeatable; default: default)")
    parser.add_argument("--limit", type=int, help="index a fixed-seed sample of N database photos in a temporary folder (quick check)")
    parser.add_argument("--region-size", type=int, help="input side of the regional pass (RegionParams.size; default: the settings')")
    parser.add_argument("--out", type=Path, help="write the results as JSON (e.g. benchmarks/results/instance.json)")
    args = parser.parse_args(argv)

    with caltech.quick_check_folder(args, "lookalike-instance-"):
        result = run(args, argv)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def run(args: argparse.Namespace, argv: list[str] | None) -> dict:
    db, backgrounds = database_files()
    db = database_sample(db, args.limit)
    queries = make_queries(args.work, args.queries, args.seed, db, backgrounds)
    photos = caltech.link_tree(db, args.work / "photos")
    t0 = time.perf_counter()
    settings = lookalike.Settings()
    if args.region_size:
        settings = settings.with_(regions=replace(settings.regions, size=args.region_size))
    with lookalike.Index.open(args.work / "index", settings=settings) as index:
        report = index.add([photos])
        index_seconds = time.perf_counter() - t0
        index.search(queries[0]["path"], 1)  # warm: model session, store, caches
        result = {
            "benchmark": "caltech101 instance-level: edited copies of database photos",
            **caltech.run_info(argv),
            "database_images": len(index),
            "queries": len(queries),
            "seed": args.seed,
            "depth": args.depth,
            "newly_indexed": report.embedded,
            "indexing_seconds": round(index_seconds, 1),
            "settings": {"model": index.settings.model, "pipeline": index.settings.pipeline,
                         "local_features": index.settings.local_features,
                         "region_size": index.settings.regions.size},
            "configs": {},
        }
        for name in args.config or ["default"]:
            res = evaluate(index, queries, photos, parse_config(name), args.depth)
            result["configs"][name] = res
            a = res["all"]
            print(f"{name:<22} mAP {a['mAP']:.3f}  R@1 {a['recall@1']:.3f}  R@10 {a['recall@10']:.3f}  "
                  f"R@100 {a['recall@100']:.3f}  p50 {res['latency_ms_p50']:.0f} ms", flush=True)
            print("    " + "  ".join(f"{k} {v['recall@1']:.2f}" for k, v in res["by_kind"].items()), flush=True)
    return result


if __name__ == "__main__":
    sys.exit(main())
