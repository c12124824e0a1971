"""Indexing (lookalike.indexing) on real Caltech-101 photos: incremental runs, moves,
duplicates, pruning, failures, Ctrl-C, and what a run writes to the catalogue."""

from __future__ import annotations

import os
import shutil
import sqlite3

import numpy as np
import pytest
from PIL import Image

import lookalike
from conftest import PER_CLASS, SUBSET_CLASSES, caltech_image
from lookalike.discovery import discover, is_under
from lookalike.errors import LookalikeError
from lookalike.index.catalogue import Catalogue
from lookalike.index.vectors import FlatStore
from lookalike.indexing import IndexReport, forget

TOTAL = len(SUBSET_CLASSES) * PER_CLASS


def test_discover_finds_supported_images_recursively(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "index").mkdir()
    for name in ("a/one.JPG", "a/b/two.png", "a/notes.txt", ".hidden/three.jpg", "index/four.jpg", "five.webp"):
        (tmp_path / name).write_bytes(b"x" * 3)
    (tmp_path / "a" / "loop").symlink_to(tmp_path / "a")  # never followed
    found = [s.location for s in discover([tmp_path], exclude=[tmp_path / "index"])]
    # Hidden and excluded folders skipped, folders walked top-down in name order.
    assert found == [str(tmp_path / p) for p in ("five.webp", "a/one.JPG", "a/b/two.png")]
    stat = next(discover([tmp_path / "a" / "one.JPG"]))  # a file is itself
    assert (stat.location, stat.size) == (str(tmp_path / "a" / "one.JPG"), 3) and stat.mtime_ns > 0


def test_is_under():
    assert is_under("/a/b/c.jpg", ["/a/b"]) and is_under("/a/b/c.jpg", ["/a/b/"])
    assert is_under("/a/b", ["/a/b"]) and not is_under("/a/bc/d.jpg", ["/a/b"])
    assert not is_under("/z/c.jpg", ["/a", "/b"])


def test_report_as_dict():
    report = IndexReport(discovered=3, embedded=2, failed=[("/x.jpg", "bad")], seconds=0.5)
    assert report.images_per_second == 4.0 and IndexReport().images_per_second == 0.0
    assert report.as_dict() == {
        "discovered": 3, "unchanged": 0, "embedded": 2, "reused": 0, "removed": 0,
        "skipped_known_bad": 0, "failed": [{"path": "/x.jpg", "reason": "bad"}],
        "interrupted": False, "seconds": 0.5,
    }


def test_rerun_embeds_nothing_and_rename_is_not_reembedded(photos, tmp_path):
    db = tmp_path / "index"
    with lookalike.Index.open(db) as index:
        first = index.add([photos], prune=True)
        assert first.embedded == first.discovered == TOTAL
        again = index.add([photos], prune=True)
        assert (again.embedded, again.reused, again.unchanged) == (0, 0, first.embedded)

        old = photos / "watch" / "image_0001.jpg"
        new = photos / "watch" / "renamed.jpg"
        old.rename(new)
        shutil.copy2(photos / "airplanes" / "image_0002.jpg", photos / "duplicate.JPG")
        report = index.add([photos], prune=True)
        assert report.embedded == 0
        assert report.reused == 2  # the renamed file and the duplicate
        assert report.removed == 1  # the old name
        match = index.search(new, k=1).matches[0]
        assert match.path == str(new)
        assert len(index) == first.embedded
        assert index.catalogue.count_files() == first.embedded + 1
        # Two files of one image are two matches with the same score.
        twins = index.search(photos / "duplicate.JPG", k=2, verify=0).matches
        assert {m.path for m in twins} == {str(photos / "duplicate.JPG"), str(photos / "airplanes" / "image_0002.jpg")}
        assert twins[0].image_id == twins[1].image_id and twins[0].score == twins[1].score


def test_changed_and_deleted_files(photos, tmp_path):
    with lookalike.Index.open(tmp_path / "index") as index:
        index.add([photos], prune=True)
        target = photos / "sunflower" / "image_0001.jpg"
        Image.open(photos / "Leopards" / "image_0001.jpg").save(target)  # new content, same name
        (photos / "sunflower" / "image_0002.jpg").unlink()
        report = index.add([photos], prune=True)
        assert report.embedded == 1 and report.removed == 1
        assert len(index) == TOTAL - 1
        assert index.search(target, k=1).matches[0].path == str(target)
        assert index.remove([photos / "sunflower"]) == PER_CLASS - 1
        assert len(index) == TOTAL - PER_CLASS
        assert index.remove([photos / "sunflower"]) == 0  # nothing left there


def test_without_prune_deleted_files_are_kept(photos, tmp_path):
    with lookalike.Index.open(tmp_path / "index") as index:
        index.add([photos / "watch"])
        (photos / "watch" / "image_0002.jpg").unlink()
        report = index.add([photos / "watch"])
        assert report.removed == 0 and len(index) == PER_CLASS


def test_image_ids_are_never_reused(photos, tmp_path):
    # Files derived from the catalogue (stores, graph, word index) follow it by id.
    with lookalike.Index.open(tmp_path / "index") as index:
        index.add([photos / "watch", photos / "sunflower"])
        newest = int(index.catalogue.all_vectors()[0].max())
        newest_path = index.catalogue.locations_for([newest])[newest][0]
        index.remove([newest_path])
        index.add([photos / "Leopards" / "image_0001.jpg"])
        ids = index.catalogue.all_vectors()[0]
        assert newest not in ids.tolist() and int(ids.max()) == newest + 1


def test_forget_removes_orphans_from_catalogue_and_store(photos, tmp_path):
    with lookalike.Index.open(tmp_path / "index") as index:
        index.add([photos / "watch"])
        store = FlatStore(*index.catalogue.all_vectors())
        shutil.copy2(photos / "watch" / "image_0003.jpg", photos / "copy.jpg")
        index.add([photos / "copy.jpg"])
        keep = str(photos / "watch" / "image_0003.jpg")
        gone = [str(photos / "watch" / "image_0001.jpg"), keep]
        orphans = forget(index.catalogue, store, gone)
        # image_0003 still has a file (the copy): only image_0001's image is forgotten.
        assert len(orphans) == 1 and len(store) == PER_CLASS - 1
        assert orphans[0] not in store.ids and index.catalogue.image_for_location(keep) is None
        assert index.catalogue.count_images() == PER_CLASS - 1


def test_corrupt_file_is_reported_and_skipped(photos, tmp_path):
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    truncated = (photos / "airplanes" / "image_0001.jpg").read_bytes()[:2000]
    (photos / "truncated.jpg").write_bytes(truncated)
    (photos / "notes.txt").write_text("ignored: not an image type")
    with lookalike.Index.open(tmp_path / "index") as index:
        report = index.add([photos])
        failed = dict(report.failed)
        assert set(failed) == {str(photos / "broken.jpg"), str(photos / "truncated.jpg")}
        assert all(reason for reason in failed.values())
        assert report.embedded == TOTAL
        # Unchanged bad files are not retried on every run, but still counted.
        again = index.add([photos])
        assert again.failed == [] and again.skipped_known_bad == 2
        assert index.info()["failed_files"] == 2
        # Once gone, a pruning run forgets them.
        (photos / "broken.jpg").unlink()
        index.add([photos], prune=True)
        assert index.info()["failed_files"] == 1


def test_bad_paths_to_add(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with lookalike.Index.open(tmp_path / "new") as index:
        with pytest.raises(LookalikeError, match="no such file or folder"):
            index.add([tmp_path / "missing"])
        with pytest.raises(LookalikeError, match="not a supported image type"):
            index.add([tmp_path / "notes.txt"])
        assert len(index) == 0


def test_interrupted_run_keeps_batches_and_resumes(photos, tmp_path):
    settings = lookalike.Settings(batch_size=4)
    calls = {"n": 0}

    def interrupt_after_two_batches(done, total):
        calls["n"] += 1
        if done >= 10:
            raise KeyboardInterrupt

    with lookalike.Index.open(tmp_path / "index", settings=settings) as index:
        report = index.add([photos], progress=interrupt_after_two_batches)
        assert report.interrupted
        kept = len(index)
        assert 0 < kept < TOTAL
    with lookalike.Index.open(tmp_path / "index", settings=settings) as index:
        # The vector store agrees with the catalogue after the interruption.
        assert len(index.store) == kept
        resumed = index.add([photos])
        assert resumed.embedded == TOTAL - kept
        assert resumed.unchanged == kept
        assert len(index.store) == len(index) == TOTAL


def test_catalogue_contents(built_index):
    db, photos = built_index
    con = sqlite3.connect(db / "catalogue.sqlite")
    rows = con.execute("SELECT hash, width, height, length(vector) FROM images").fetchall()
    assert len(rows) == TOTAL
    assert all(len(h) == 32 and w > 0 and h_ > 0 and n == 1280 * 2 for h, w, h_, n in rows)
    labels = con.execute("SELECT count(*) FROM labels").fetchone()[0]
    assert labels == 5 * len(rows)
    meta = dict(con.execute("SELECT key, value FROM meta"))
    assert meta["format_version"] == str(Catalogue.VERSION) and meta["model_id"].startswith("lite0-")
    files = [row[0] for row in con.execute("SELECT location FROM files")]
    assert sorted(files) == sorted(str(p) for p in photos.rglob("*.jpg"))
    assert all(os.path.isabs(f) for f in files)
    features = con.execute("SELECT count(*) FROM local_features WHERE words IS NOT NULL").fetchone()[0]
    assert features == TOTAL  # local features and their visual words, stored while indexing
    con.close()


def test_vectors_are_the_embedder_s(built_index, index):
    _, photos = built_index
    path = photos / "Leopards" / "image_0006.jpg"
    stored = index.catalogue.vectors_for([index.catalogue.image_for_location(str(path))])[0]
    fresh = index.embed([path]).vectors[0]
    assert float(stored @ fresh) > 0.999  # (stored at float16)
    assert np.linalg.norm(stored) == pytest.approx(1.0, abs=1e-3)
    assert caltech_image("Leopards", 6).read_bytes() == path.read_bytes()
