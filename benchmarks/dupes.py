"""Duplicate finding (``lookalike dupes``): precision and recall per tier on a planted set,
imagededup's hashes side by side, and time and memory at scale.

**Planted set** (fixed seed, flat folder under ``--work``): ``--originals`` Caltech-101
photos (every class but the faces); the first ``--copies`` of them get one edited copy each,
made here with Pillow, the edit types in turn (``EDITS``: re-encode q=30-90, resize
25-200 %, crop 50-95 % of the area, rotate 90/180/270, rotate 3-10 degrees, mirror, colour
and contrast, text and logo overlay, a screenshot-like frame, grayscale); the other
originals are unrelated distractors. A **similar-shots check** adds ``SIMILAR``: pairs of
consecutive Caltech ``Faces`` photos of one person in one place (a burst: the same moment,
different exposures), which must not land in ``copies``.

Scored on groups (two files are "found together" when one group holds both): a copy's
recall is whether it shares a ``copies`` group with its original; precision is the share of
the image pairs sharing a group that are an original and its copy. imagededup 0.3.3's
pHash, dHash, wHash and aHash (at its default threshold 10, and 4) are scored the same way,
their pairs grouped by union-find (``--imagededup-python``: a Python with imagededup
installed, e.g. a separate venv, since it pulls PyTorch in; skipped when not given).

**Scale**: ``--scale 10000 100000``: an index of synthetic descriptors derived from the
planted set's real ones (benchmarks/ann.py's generator) plus 1 % planted copies (a real
photo's descriptor and local features, and a perturbed descriptor with the same features),
then in a fresh process: wall and CPU time and peak memory of ``Index.duplicates`` from
scratch, then of a re-run on the unchanged index.

    python benchmarks/dupes.py --imagededup-python /work/venv-imagededup/bin/python \\
        --scale 10000 100000 --out benchmarks/results/dupes.json
    python benchmarks/dupes.py --originals 120 --copies 40 --out /tmp/dupes.json

``--keep-scale`` (without ``--scale``) re-measures the planted set only and carries the
scale results of the ``--out`` file over, under ``scale_from`` naming the run that made them.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))
import caltech  # noqa: E402

import lookalike  # noqa: E402
from lookalike.dupes.groups import UnionFind  # noqa: E402

SEED = 20261206
# Caltech-101 itself holds some pictures twice (Leopards image_N and image_N+100 are mirror
# images; others are re-scans or crops): pairs among the planted originals that lookalike
# grouped and a person confirmed to be one picture. Precision is given with them counted
# false (strict) and true.
SAME_PICTURE = {frozenset(pair) for pair in (
    ("euphonium/image_0009.jpg", "euphonium/image_0001.jpg"),
    ("Leopards/image_0032.jpg", "Leopards/image_0132.jpg"),
    ("watch/image_0013.jpg", "watch/image_0080.jpg"),
    ("octopus/image_0005.jpg", "octopus/image_0006.jpg"),
    ("Leopards/image_0013.jpg", "Leopards/image_0113.jpg"),
    ("Leopards/image_0171.jpg", "Leopards/image_0071.jpg"),
    ("anchor/image_0015.jpg", "anchor/image_0011.jpg"),
    ("Leopards/image_0095.jpg", "Leopards/image_0195.jpg"),
    ("elephant/image_0025.jpg", "elephant/image_0044.jpg"),
    ("Leopards/image_0100.jpg", "Leopards/image_0200.jpg"),
)}
SIMILAR = [(15, 16), (66, 67), (75, 76), (124, 125), (159, 160), (160, 161), (161, 162), (162, 163)]


def reencode(im, rng):
    return im, {"quality": rng.randint(30, 90)}


def resize(im, rng):
    s = rng.uniform(0.25, 2.0)
    return im.resize((max(16, round(im.width * s)), max(16, round(im.height * s)))), {}


def crop(im, rng):
    side = rng.uniform(0.5, 0.95) ** 0.5
    w, h = round(im.width * side), round(im.height * side)
    x, y = rng.randint(0, im.width - w), rng.randint(0, im.height - h)
    return im.crop((x, y, x + w, y + h)), {}


def rotate90(im, rng):
    return im.rotate(rng.choice((90, 180, 270)), expand=True), {}


def rotate_small(im, rng):
    return im.rotate(rng.choice((-1, 1)) * rng.uniform(3, 10), resample=Image.BICUBIC), {}


def mirror(im, rng):
    return ImageOps.mirror(im), {}


def colour(im, rng):
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        im = enhancer(im).enhance(rng.uniform(0.6, 1.4))
    return im, {}


def overlay(im, rng):
    im = im.copy()
    draw = ImageDraw.Draw(im)
    draw.text((im.width * 0.05, im.height * rng.uniform(0.7, 0.9)), "(c) lookalike 2026 holiday",
              fill=(255, 255, 255))
    s = max(12, im.width // 6)
    x, y = im.width - s - 5, 5
    draw.rectangle((x, y, x + s, y + s // 2), fill=(200, 30, 30))
    draw.ellipse((x + 4, y + 4, x + s // 2, y + s // 2 - 4), fill=(255, 255, 255))
    return im, {}


def screenshot(im, rng):
    top, side = rng.randint(20, 60), rng.randint(8, 40)
    frame = Image.new("RGB", (im.width + 2 * side, im.height + top + side), (236, 236, 236))
    ImageDraw.Draw(frame).rectangle((0, 0, frame.width, top // 2), fill=(60, 60, 70))
    frame.paste(im, (side, top))
    return frame, {"quality": 95}


def grayscale(im, rng):
    return ImageOps.grayscale(im).convert("RGB"), {}


EDITS = {f.__name__: f for f in (reencode, resize, crop, rotate90, rotate_small, mirror,
                                 colour, overlay, screenshot, grayscale)}


def make_planted(work: Path, originals: int, copies: int) -> dict:
    """Write the planted folder (reused when present); returns its truth."""
    truth_file = work / "truth.json"
    if truth_file.exists():
        return json.loads(truth_file.read_text())
    paths, labels = caltech.manifest()
    rng = random.Random(SEED)
    pool = [p for p, label in zip(paths, labels, strict=True) if label not in ("Faces", "Faces_easy")]
    chosen = rng.sample(pool, originals)
    photos = work / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    truth: dict = {"copies": {}, "originals": [], "similar": [], "sources": {}}
    names = list(EDITS)
    for n, path in enumerate(chosen):
        name = f"o{n:04d}_{path.parent.name}.jpg"
        (photos / name).write_bytes(path.read_bytes())
        truth["originals"].append(name)
        truth["sources"][name] = f"{path.parent.name}/{path.name}"
        if n < copies:
            kind = names[n % len(names)]
            edited, options = EDITS[kind](Image.open(path).convert("RGB"), rng)
            copy = f"c{n:04d}_{kind}.jpg"
            edited.save(photos / copy, **options)
            truth["copies"][copy] = {"original": name, "edit": kind}
    for a, b in SIMILAR:
        pair = []
        for number in (a, b):
            name = f"s{number:04d}_Faces.jpg"
            face = caltech.DATA / "images" / "Faces" / f"image_{number:04d}.jpg"
            (photos / name).write_bytes(face.read_bytes())
            pair.append(name)
        truth["similar"].append(pair)
    truth_file.write_text(json.dumps(truth))
    return truth


def together(groups: list[list[str]]) -> dict[str, int]:
    return {name: g for g, names in enumerate(groups) for name in names}


def score(groups: list[list[str]], truth: dict, similar_true: bool = False) -> dict:
    """Recall per edit type, pairwise precision, and where the similar shots landed (with
    ``similar_true``, a similar-shot pair in one group counts as a true pair)."""
    where = together(groups)
    same = lambda a, b: a in where and where.get(a) == where.get(b)  # noqa: E731
    per_edit: dict[str, list[int]] = {}
    for copy, info in truth["copies"].items():
        per_edit.setdefault(info["edit"], []).append(int(same(copy, info["original"])))
    related = {frozenset((c, i["original"])) for c, i in truth["copies"].items()}
    if similar_true:
        related |= {frozenset(pair) for pair in truth["similar"]}
    source = {c: truth["sources"][i["original"]] for c, i in truth["copies"].items()}
    source.update(truth["sources"])
    pairs = [(a, b) for names in groups for i, a in enumerate(names) for b in names[i + 1:]]
    true = sum(frozenset(p) in related for p in pairs)
    one_picture = sum(frozenset(p) in related or frozenset(map(source.get, p)) in SAME_PICTURE
                      for p in pairs)
    found = sum(sum(v) for v in per_edit.values())
    return {
        "recall": round(found / max(1, len(truth["copies"])), 3),
        "precision": round(true / len(pairs), 3) if pairs else None,
        "precision_same_picture_true": round(one_picture / len(pairs), 3) if pairs else None,
        "pairs": len(pairs), "false_pairs": len(pairs) - true,
        "recall_per_edit": {k: round(sum(v) / len(v), 3) for k, v in sorted(per_edit.items())},
        "similar_pairs_grouped": sum(same(a, b) for a, b in truth["similar"]),
        "similar_pairs": len(truth["similar"]),
    }


def lookalike_groups(index, level: str) -> tuple[list[list[str]], float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    groups = index.duplicates(level)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return [[Path(f.path).name for f in g.files] for g in groups], wall, cpu


def imagededup_scores(python: str, photos: Path, truth: dict, work: Path) -> dict:
    out = work / "imagededup.json"
    if not out.exists():
        subprocess.run([python, str(Path(__file__).with_name("imagededup_pairs.py")), str(photos), str(out)],
                       check=True)
    found = json.loads(out.read_text())
    scores = {"seconds": found.pop("seconds")}
    for name, pairs in found.items():
        sets = UnionFind()
        for a, b in pairs:
            sets.union(a, b)
        scores[name] = score([[str(x) for x in s] for s in sets.sets()], truth) if pairs else score([], truth)
        scores[name]["as_pairs"] = pairwise(pairs, truth)
    return scores


def pairwise(pairs: list, truth: dict) -> dict:
    """imagededup's own answer, a list of pairs (no grouping): the share of copies listed
    with their original, and of listed pairs that are a copy and its original."""
    listed = {frozenset(p) for p in pairs}
    related = {frozenset((c, i["original"])) for c, i in truth["copies"].items()}
    return {"recall": round(len(listed & related) / len(related), 3),
            "precision": round(len(listed & related) / len(listed), 3) if listed else None}


def planted(args) -> dict:
    truth = make_planted(args.work, args.originals, args.copies)
    photos = args.work / "photos"
    with lookalike.Index.open(args.work / "index") as index:
        started = time.perf_counter()
        index.add([photos])
        indexed = time.perf_counter() - started
        results: dict = {"images": len(index), "index_seconds": round(indexed, 1)}
        index.catalogue.save_dupe_pairs([], {}, clear=True)  # timed from scratch, also on a re-run
        for level in ("copies", "similar"):
            groups, wall, cpu = lookalike_groups(index, level)
            scored = score(groups, truth, similar_true=level == "similar")
            results[level] = {**scored, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}
        _, wall, cpu = lookalike_groups(index, "copies")
        results["rerun"] = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}
        base = index.catalogue.vectors_for([index.catalogue.image_for_location(str(photos / n))
                                            for n in truth["originals"]])
    if args.imagededup_python:
        results["imagededup"] = imagededup_scores(args.imagededup_python, photos, truth, args.work)
    results["truth"] = {"originals": len(truth["originals"]), "copies": len(truth["copies"]),
                        "similar_pairs": len(truth["similar"])}
    np.save(args.work / "base.npy", base)
    return results


def build_scale(work: Path, n: int) -> Path:
    """A folder of ``n`` synthetic images plus 1 % planted copy pairs (see the module)."""
    import ann

    from lookalike.index.formats import FileStat, NewImage

    folder = work / f"scale-{n}"
    if (folder / "done").exists():
        return folder
    base = np.load(work / "base.npy")
    labels = [str(i % 50) for i in range(len(base))]
    ann.write_catalogue(folder, base, labels, n)
    rng = np.random.default_rng(SEED)
    with lookalike.Index.open(work / "index", create=False) as source:
        ids = source.catalogue.image_ids()
        features = source.catalogue.local_features_for(ids.tolist())
    with lookalike.Index.open(folder) as index:
        cat = index.catalogue
        with cat.transaction() as db:
            for k in range(n // 100):
                src = int(ids[k % len(ids)])
                if src not in features:
                    continue
                vector = base[k % len(base)]
                for tag, v in (("o", vector), ("c", vector + 0.003 * rng.standard_normal(len(vector)))):
                    v = (v / np.linalg.norm(v)).astype(np.float32)
                    image_id = cat.insert_image(db, NewImage(f"{tag}{k:031x}", 640, 480, v, [1], [0.5]))
                    cat.upsert_file(db, FileStat(f"/planted/{tag}{k}.jpg", 1000, 1), image_id)
                    cat.insert_local_features(db, image_id, *features[src])
        len(index.store)  # build and save the store here, not in the measured process
    (folder / "done").touch()
    return folder


def measure_scale(folder: str) -> dict:
    """In a fresh process: ``duplicates`` from scratch, then again on the unchanged index."""
    import ann

    with lookalike.Index.open(folder, create=False) as index:
        index.catalogue.save_dupe_pairs([], {}, clear=True)  # from scratch, also when measured again
        len(index.store)
        before = ann.rss_mb()  # the store and the catalogue open: what dupes adds comes on top
        out: dict = {"images": len(index), "store": index.store.inner.kind}
        for run in ("first", "rerun"):
            wall, cpu = time.perf_counter(), time.process_time()
            groups = index.duplicates("copies")
            out[run] = {"wall_s": round(time.perf_counter() - wall, 2),
                        "cpu_s": round(time.process_time() - cpu, 2)}
        planted = [g for g in groups if any("/planted/" in f.path for f in g.files)]
        out["groups"], out["planted_groups"] = len(groups), len(planted)
        out["rss_mb_before"], out["peak_rss_mb"] = round(before), round(ann.rss_mb("VmHWM"))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=caltech.SCRATCH / "dupes")
    parser.add_argument("--originals", type=int, default=1000)
    parser.add_argument("--copies", type=int, default=300)
    parser.add_argument("--imagededup-python", metavar="PYTHON")
    parser.add_argument("--scale", type=int, nargs="*", default=[], metavar="N")
    parser.add_argument("--keep-scale", action="store_true",
                        help="keep the scale results already in --out (planted set only)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "dupes.json")
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure_scale(args.measure)))
        return
    report = {**caltech.run_info(argv), "planted": planted(args), "scale": {}}
    if args.keep_scale and not args.scale and args.out.exists():
        earlier = json.loads(args.out.read_text())
        report["scale"] = earlier.get("scale", {})
        report["scale_from"] = earlier.get("scale_from") or {k: earlier.get(k) for k in ("command", "date", "machine")}
    for n in args.scale:
        folder = build_scale(args.work, n)
        child = subprocess.run([sys.executable, __file__, "--measure", str(folder)],
                               check=True, capture_output=True, text=True)
        report["scale"][str(n)] = json.loads(child.stdout.strip().splitlines()[-1])
        print(n, report["scale"][str(n)], flush=True)
    caltech.write_report(report, args.out)


if __name__ == "__main__":
    main()
