"""Tag search by words on Caltech-101: how well a class's own name finds its photos.

Indexes the 8,677 labelled photos (every class folder but BACKGROUND_Google; the index of
benchmarks/quality.py under ``--work``, reused) with the default settings. For each class
whose name maps to ImageNet words (:func:`lookalike.embed.tags.lookup` of the folder name
with ``_`` as a space, else of its first word: ``car_side`` -> ``car``), it runs
``Index.search_text(word)`` over the whole collection and reports precision@10 and average
precision over the full ranking (relevant = the class's photos; photos the words do not
reach count as never found), for all of them and apart for "direct" words (a class name, a
synonym or a broader word) and kinds (a word just below a broader one, which lends its
classes: a weaker guess). Not CLIP: words name ImageNet classes through WordNet and
photos are ranked by their stored label probabilities.

    python benchmarks/tags.py [--out benchmarks/results/tags.json]
    python benchmarks/tags.py --limit 400 --out /tmp/tags.json   # quick check
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import caltech
import numpy as np
from quality import labelled_images

import lookalike
from lookalike.embed.labels import label_ids
from lookalike.embed.tags import Tag, lookup, singulars

REPO = Path(__file__).resolve().parents[1]


def class_word(name: str) -> tuple[str, Tag] | None:
    """The words a Caltech folder name maps to (all of it, else its first word), or None."""
    words = name.replace("_", " ")
    for word in (words, words.split()[0]):
        tag = lookup(word)
        if tag is not None:
            return word, tag
    return None


def how(tag: Tag) -> str:
    """How a word names its classes: an ImageNet class name itself, its synonym, a
    broader word (several classes) or a kind of a broader word."""
    if tag.meaning.lower() not in (tag.word, f"{tag.word}s", *singulars(tag.word)):
        return f"kind of {tag.meaning}"
    if len(tag.classes) > 1:
        return f"broader word ({len(tag.classes)} classes)"
    return "class name" if tag.meaning.lower() in label_ids() else "synonym"


def scores(ranked: list[str], name: str, relevant: int) -> tuple[float, float]:
    """Precision@10 and average precision of a ranking of class names (``relevant``: how
    many photos of ``name`` there are, found or not)."""
    hits = np.array([c == name for c in ranked], dtype=bool)
    p10 = float(hits[:10].sum() / 10)
    ranks = np.flatnonzero(hits) + 1
    ap = float((np.arange(1, len(ranks) + 1) / ranks).sum() / relevant) if relevant else 0.0
    return p10, ap


def means(rows: list[dict]) -> dict:
    """Classes, mean precision@10 and mAP of some rows."""
    return {"classes": len(rows), "mean_P@10": round(float(np.mean([r["P@10"] for r in rows])), 4),
            "mAP": round(float(np.mean([r["AP"] for r in rows])), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "tags.json")
    parser.add_argument("--work", type=Path, default=Path("/tmp/lookalike-quality"),
                        help="index folder parent, reused (shared with benchmarks/quality.py)")
    parser.add_argument("--limit", type=int, help="index a fixed-seed sample of N photos (quick check)")
    args = parser.parse_args()
    with caltech.quick_check_folder(args, "lookalike-tags-"):
        photos = caltech.link_tree(labelled_images(args.limit), args.work / "photos")
        with lookalike.Index.open(args.work / "index") as index:
            report = index.add([photos])
            ids = index.catalogue.image_ids().tolist()
            folder = {i: Path(locs[0]).parent.name for i, locs in index.catalogue.locations_for(ids).items()}
            sizes = {name: list(folder.values()).count(name) for name in set(folder.values())}
            rows, unmapped = [], []
            for name in sorted(sizes, key=str.lower):
                mapped = class_word(name)
                if mapped is None:
                    unmapped.append(name)
                    continue
                word, tag = mapped
                t0 = time.process_time()
                result = index.search_text(word, k=len(ids))
                cpu_ms = 1000 * (time.process_time() - t0)
                ranked = [folder[m.image_id] for m in result.matches]
                p10, ap = scores(ranked, name, sizes[name])
                rows.append({"class": name, "photos": sizes[name], "word": word, "how": how(tag),
                             "found": ranked.count(name), "listed": len(ranked),
                             "P@10": round(p10, 3), "AP": round(ap, 4), "cpu_ms": round(cpu_ms, 1)})
                print(f"{name:18s} {word!r:18s} {how(tag):28s} P@10 {p10:.1f}  AP {ap:.3f}", flush=True)
            direct = [r for r in rows if not r["how"].startswith("kind of")]
            summary = {
                "classes": len(sizes), "classes_mapped": len(rows),
                "exact_class_names": sum(r["how"] == "class name" for r in rows),
                "all": means(rows), "direct": means(direct),
                "kinds": means([r for r in rows if r not in direct]),
            }
            print(summary)
            caltech.write_report({
                "benchmark": "tag search by class name on the labelled Caltech-101 photos",
                **caltech.run_info(), "model": index.settings.model, "images": len(index),
                "newly_embedded": report.embedded, "summary": summary, "classes": rows,
                "unmapped": unmapped,
            }, args.out)


if __name__ == "__main__":
    main()
