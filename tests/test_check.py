"""A damaged catalogue and ``lookalike check [--repair]`` (:mod:`lookalike.index.check`),
reproduced for real: bytes overwritten in the catalogue, derived files deleted or damaged.
See docs/reliability.md."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from test_reliability import clean_error, main

from conftest import caltech_image
from lookalike import Index


def small_index(root: Path, classes=("airplanes", "Leopards", "watch"), per_class: int = 8) -> tuple[Path, Path]:
    """An index of ``per_class`` photos of each class: ``(db, photos)``."""
    photos = root / "photos"
    for label in classes:
        (photos / label).mkdir(parents=True)
        for number in range(1, per_class + 1):
            shutil.copy(caltech_image(label, number), photos / label / f"{number}.jpg")
    with Index.open(root / "index") as index:
        assert index.add([photos]).embedded == len(classes) * per_class
    return root / "index", photos


def test_damaged_catalogue_fails_in_one_line_and_check_repairs_it(tmp_path, capsys):
    db, photos = small_index(tmp_path)
    catalogue = db / "catalogue.sqlite"
    size = catalogue.stat().st_size
    with open(catalogue, "r+b") as f:  # a few KB overwritten in the middle
        f.seek(size // 2 // 4096 * 4096)
        f.write(b"\x5a" * 16384)
    damaged = f"the catalogue at {db} is damaged (database disk image is malformed); " \
              f"run: lookalike check --db {db}"
    query = photos / "watch" / "1.jpg"

    # Every command works or says so in one line; with the vector store to rebuild from
    # the damaged rows, search must fail.
    for command in (["info"], ["search", query], ["eval", "--rerank", "none", "--verify", "0"],
                    ["index", photos], ["remove", photos / "watch" / "8.jpg"]):
        result = main(capsys, *command, "--db", db)
        if result[0] != 0:
            clean_error(result, damaged)
    for name in ("flat-ids.npy", "flat-vectors.npy", "flat.json"):
        (db / name).unlink()
    clean_error(main(capsys, "search", query, "--db", db), damaged)

    # check names the damage and what is lost; --repair recovers the rest.
    code, out, _ = main(capsys, "check", "--db", db)
    assert code == 1 and "problem: catalogue: " in out and "lost: " in out
    assert out.splitlines()[-1] == f"{_count(out, 'problem')} problem{'s' * (_count(out, 'problem') != 1)} " \
        f"in the index at {db}; run: lookalike check --db {db} --repair"
    code, out, _ = main(capsys, "check", "--db", db, "--json")
    found = json.loads(out)
    assert code == 1 and not found["healthy"] and found["lost"] and found["remaining"] is None
    code, out, _ = main(capsys, "check", "--db", db, "--repair")
    assert code == 0 and "repaired: catalogue: " in out and out.endswith("is repaired\n"), out
    assert (db / "catalogue.sqlite.damaged").exists()
    code, out, _ = main(capsys, "check", "--db", db)
    assert (code, out) == (0, f"ok: the index at {db} is healthy\n")

    # The recovered catalogue opens and searches; what it lost is re-added by indexing again.
    with Index.open(db, create=False) as index:
        kept = index.catalogue.files_by_location()
        assert 0 < len(kept) < 24
        one = next(iter(kept))
        assert index.search(one, k=1, verify=0).matches[0].path == one
    code, out, _ = main(capsys, "index", photos, "--db", db, "--json")
    assert code == 0 and json.loads(out)["embedded"] == 24 - len(kept)
    assert main(capsys, "check", "--db", db)[0] == 0


def _count(text: str, kind: str) -> int:
    return sum(line.startswith(f"{kind}: ") for line in text.splitlines())


def test_check_reports_each_derived_file_problem_in_one_line_and_repairs_them(tmp_path, capsys):
    from lookalike.index.vectors import FlatStore

    db, photos = small_index(tmp_path, classes=("airplanes", "Leopards"), per_class=6)
    with Index.open(db, create=False) as index:
        index.search(photos / "Leopards" / "1.jpg")  # the word index is built and saved
        graph = index.graph()
        generation = index.catalogue.generation
        ids = index.catalogue.image_ids()
        assert index.check().healthy
    code, out, _ = main(capsys, "check", "--db", db, "--json")
    assert code == 0 and json.loads(out)["problems"] == []

    # One of each: a graph missing an image, a store with a vector of no image, a word index
    # that is not an npz any more, and a temporary file left by an interrupted write.
    graph.ids, graph.neighbours, graph.sims = graph.ids[1:], graph.neighbours[1:], graph.sims[1:]
    graph.neighbours[graph.neighbours == ids[0]] = -1
    graph.save(db, generation)
    store = FlatStore.load(db, generation)
    store.add(np.array([ids.max() + 7]), store.matrix[:1])
    store.save(db, generation)
    (db / "words-index.npz").write_bytes(b"not a zip file")
    (db / "flat.json.tmp").write_bytes(b"{")
    code, out, _ = main(capsys, "check", "--db", db)
    assert code == 1 and out.splitlines() == [
        f"problem: vector store (flat): 1 ids the catalogue does not hold ({ids.max() + 7})",
        f"problem: neighbour graph: 1 catalogue images missing ({ids[0]})",
        "problem: word index: words-index.npz is unreadable",
        "problem: flat.json.tmp: a temporary file left by an interrupted write",
        f"4 problems in the index at {db}; run: lookalike check --db {db} --repair",
    ]
    code, out, _ = main(capsys, "check", "--db", db, "--repair")
    assert code == 0 and _count(out, "repaired") == 3 and "remaining" not in out, out
    code, out, _ = main(capsys, "check", "--db", db)
    assert (code, out) == (0, f"ok: the index at {db} is healthy\n")

    # A missing store, and vectors of another model, are problems too (the Python API).
    (db / "flat-vectors.npy").unlink()
    with Index.open(db, create=False) as index:
        assert index.check().problems == [
            "vector store (flat): flat-ids.npy or flat-vectors.npy is missing, unreadable or "
            "does not match flat.json"]
        report = index.check(repair=True)
        assert report.healthy and report.remaining == [] and len(index.search(photos / "airplanes" / "1.jpg").matches)
        index.catalogue.set_meta({"model_id": "another-model"})
        [problem] = index.check().problems
        assert problem.startswith("model: the index holds vectors of another-model, this lookalike computes ")


def test_repair_keeps_the_validators_of_urls_still_indexed(tmp_path):
    """A recovered catalogue keeps each indexed URL's ETag / Last-Modified (the next run
    re-fetches nothing unchanged), and drops validators whose file row is gone."""
    import sqlite3

    from lookalike.index.catalogue import Catalogue
    from lookalike.index.check import read_back

    db, _ = small_index(tmp_path, classes=("watch",), per_class=2)
    catalogue = Catalogue(db / "catalogue.sqlite")
    indexed = next(iter(catalogue.files_by_location()))
    with catalogue.transaction() as write:
        Catalogue.record_validators(write, [(indexed, '"v1"', None), ("https://gone.test/a.jpg", '"v2"', None)])
    catalogue.close()
    salvage = read_back(sqlite3.connect(db / "catalogue.sqlite"))
    assert [row[:3] for row in salvage.tables["url_sources"]] == [(indexed, '"v1"', None)]
