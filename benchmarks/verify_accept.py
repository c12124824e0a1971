"""Spatial verification: how often does "same picture" go to a *different* photo?

A verified match is shown as a copy ("same picture, N matching points"), so the claim must be
right. Photos of one kind of thing with a repetitive or printed pattern (a dalmatian's spots,
a leopard's coat, tiled roofs, a watch dial, a football's panels) share many local features
without being one picture. This script measures both sides of the acceptance rule on
Caltech-101 classes chosen for such textures and structures (``--classes``):

* **different photos**: every photo of a class against its ``--neighbours`` (20) most similar
  other photos of the class by the global descriptor, the candidates the default pipeline
  verifies; the query's features are extracted from its file (as a search does), the
  candidate's are the ones stored while indexing.
* **copies**: ``--copies`` (2) edits of every photo (instance.py's crop, rotate, scale,
  perspective, colour, blur, jpeg, overlay and combo edits, in turn; its ``paste`` edit is
  verified region by region and measured there) against the original.
* **truth**: Caltech-101 holds some photos twice within a class (re-saved, re-cropped, rotated,
  recoloured). ``verify_pairs.csv`` lists the pairs judged by eye to be one photograph
  (``same``: counted as copies) or impossible to call (``unsure``: left out), among all pairs
  that the earlier rule accepted; every other pair is two different photos.

Each rule's row gives the false-accept rate (different pairs accepted / different pairs
checked), the true-accept rate of copies, and the precision of its "same picture" claims
(right claims / all claims, over copies, same-photo pairs and different pairs together).
``before`` is the earlier rule (``min_inliers`` raw homography inliers), ``now`` the
product's (:meth:`lookalike.verify.Fit.counted`). The index is kept under ``--work`` (default
``/tmp/lookalike-verify``) and reused.

    python benchmarks/verify_accept.py --out benchmarks/results/verify_accept.json
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import caltech  # noqa: E402
import instance  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

import lookalike  # noqa: E402
from lookalike.verify import Features, Fit, extract, fit  # noqa: E402

CLASSES = ("dalmatian", "Leopards", "wild_cat", "okapi", "hedgehog", "pagoda", "minaret",
           "chandelier", "joshua_tree", "sunflower", "soccer_ball", "watch")
EDITS = tuple(k for k in instance.KINDS if k != "paste")
TRUTH = Path(__file__).resolve().parent / "verify_pairs.csv"


def truth() -> dict[tuple[str, str, str], str]:
    """``(class, file, file) -> same | unsure`` for both orders of each listed pair."""
    out = {}
    with open(TRUTH, newline="") as f:
        for row in csv.DictReader(f):
            out[(row["class"], row["a"], row["b"])] = out[(row["class"], row["b"], row["a"])] = row["truth"]
    return out


def picture(path: Path) -> Image.Image:
    return ImageOps.exif_transpose(Image.open(path)).convert("RGB")


def measure(args: argparse.Namespace) -> tuple[list[dict], dict]:
    """One row per checked pair: its class, kind (different / same / unsure / an edit) and fit."""
    paths, labels = caltech.manifest()
    chosen = [p for p, label in zip(paths, labels, strict=True) if label in args.classes]
    photos = caltech.link_tree(chosen, args.work / "photos")
    _, backgrounds = instance.database_files()
    known = truth()
    with lookalike.Index.open(args.work / "index") as index:
        index.add([photos])
        params = index.settings.verify
        ids = [index.catalogue.image_for_location(str(photos / p.parent.name / p.name)) for p in chosen]
        vectors = index.catalogue.vectors_for(ids).astype(np.float32)
        stored = {i: Features(*f) for i, f in index.catalogue.local_features_for(ids).items()}
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    classes = np.array([p.parent.name for p in chosen])
    rows: list[dict] = []
    for a, path in enumerate(chosen):
        query = picture(path)
        features = extract(query, params)
        same = np.flatnonzero(classes == classes[a])
        same = same[same != a]
        for b in same[np.argsort(-(vectors[same] @ vectors[a]), kind="stable")][: args.neighbours]:
            kind = known.get((classes[a], path.name, chosen[b].name), "different")
            rows.append(_row(classes[a], kind, path, chosen[b], fit(features, stored[ids[b]], params)))
        for n in range(args.copies):
            kind = EDITS[(a * args.copies + n) % len(EDITS)]
            edited = instance.edit(kind, query, random.Random(f"{args.seed}-{a}-{n}"), backgrounds)
            copy_features = extract(instance._jpeg(edited, 85), params)
            rows.append(_row(classes[a], kind, path, path, fit(copy_features, stored[ids[a]], params)))
    return rows, {"photos": len(chosen), "min_inliers": params.min_inliers,
                  "min_share": params.min_share, "cell": params.cell, "verify": params}


def _row(cls: str, kind: str, a: Path, b: Path, one: Fit) -> dict:
    return {"class": cls, "kind": kind, "a": a.name, "b": b.name,
            "matches": one.matches, "inliers": one.inliers, "distinct": one.distinct, "fit": one}


def summary(rows: list[dict], accepts) -> dict:
    """False accepts, true accepts and the precision of the claims of one rule."""
    different = [r for r in rows if r["kind"] == "different"]
    copies = [r for r in rows if r["kind"] in EDITS]
    same = [r for r in rows if r["kind"] == "same"]
    false = [r for r in different if accepts(r)]
    right = sum(accepts(r) for r in copies) + sum(accepts(r) for r in same)
    by_edit = {k: round(float(np.mean([accepts(r) for r in copies if r["kind"] == k])), 4) for k in EDITS}
    return {
        "different_pairs": len(different),
        "false_accepts": len(false),
        "false_accept_rate": round(len(false) / max(len(different), 1), 5),
        "false_accepts_by_class": dict(Counter(r["class"] for r in false).most_common()),
        "copies": len(copies),
        "copy_accept_rate": round(float(np.mean([accepts(r) for r in copies])), 4),
        "copy_accept_rate_by_edit": by_edit,
        "same_photo_pairs": len(same),
        "same_photo_accepted": sum(accepts(r) for r in same),
        "claims": right + len(false),
        "claim_precision": round(right / max(right + len(false), 1), 4),
        "false_accept_examples": [f"{r['class']}/{r['a']} ~ {r['b']}: {r['inliers']} inliers, "
                                  f"{r['distinct']} distinct, {r['matches']} matches" for r in false[:20]],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/lookalike-verify"))
    parser.add_argument("--classes", nargs="+", default=list(CLASSES))
    parser.add_argument("--neighbours", type=int, default=20, help="most similar photos of the class checked per photo")
    parser.add_argument("--copies", type=int, default=2, help="edited copies of each photo")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    rows, info = measure(args)
    params = info.pop("verify")
    rules = {
        "before": lambda r: r["inliers"] >= params.min_inliers,  # raw inliers, the earlier rule
        "now": lambda r: r["fit"].counted(params) >= params.min_inliers,
    }
    report = {
        "benchmark": "spatial verification: different photos of one class vs edited copies",
        **caltech.run_info(argv),
        "classes": args.classes, "neighbours": args.neighbours, "copies_per_photo": args.copies,
        **info,
        "pairs": len(rows),
        "unsure_pairs": sum(r["kind"] == "unsure" for r in rows),
        "seconds": round(time.perf_counter() - t0, 1),
        "rules": {name: summary(rows, rule) for name, rule in rules.items()},
    }
    for name, res in report["rules"].items():
        print(f"{name:<7} false accepts {res['false_accepts']}/{res['different_pairs']} "
              f"({100 * res['false_accept_rate']:.2f} %)  copies {100 * res['copy_accept_rate']:.1f} %  "
              f"claims right {100 * res['claim_precision']:.2f} %", flush=True)
    if args.out:
        caltech.write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
