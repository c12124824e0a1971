"""Incremental indexing and search on real Caltech-101 photos."""

from __future__ import annotations

import os
import shutil
import sqlite3

import numpy as np
import pytest
from PIL import Image

import lookalike
from conftest import PER_CLASS, SUBSET_CLASSES, caltech_image
from lookalike.errors import IndexFormatError, LookalikeError


def _label_of(path: str) -> str:
    return os.path.basename(os.path.dirname(path))


def test_nearest_neighbour_is_itself(built_index):
    db, photos = built_index
    with lookalike.Index.open(db, create=False) as index:
        for label in SUBSET_CLASSES:
            query = photos / label / "image_0003.jpg"
            result = index.search(query, k=5)
            assert result.matches[0].path == str(query)
            assert result.matches[0].score == pytest.approx(1.0, abs=2e-3)
            # Same-class neighbours dominate the top of the ranking.
            assert sum(_label_of(m.path) == label for m in result.matches[1:]) >= 3


def test_top_k_up_to_collection_size(built_index):
    db, photos = built_index
    with lookalike.Index.open(db, create=False) as index:
        total = len(SUBSET_CLASSES) * PER_CLASS
        result = index.search(photos / "watch" / "image_0001.jpg", k=10_000)
        assert len(result.matches) == total
        assert [m.rank for m in result.matches] == list(range(1, total + 1))
        # Scores are cosines; the plain ranking orders by them (re-ranking may reorder).
        plain = index.search(photos / "watch" / "image_0001.jpg", k=10_000, rerank="none", verify=0)
        scores = [m.score for m in plain.matches]
        assert scores == sorted(scores, reverse=True)
        assert {m.image_id for m in plain.matches} == {m.image_id for m in result.matches}


def test_query_from_outside_the_index(built_index):
    db, _ = built_index
    with lookalike.Index.open(db, create=False) as index:
        result = index.search(caltech_image("Leopards", 40), k=5)
        assert all(_label_of(m.path) == "Leopards" for m in result.matches)
        # The query's own predicted labels (top 5) name what it shows.
        assert len(result.query_labels) == 5
        assert any("leopard" in label.lower() for label in result.query_labels), result.query_labels


def test_label_filter(built_index):
    db, photos = built_index
    with lookalike.Index.open(db, create=False) as index:
        result = index.search(photos / "watch" / "image_0001.jpg", k=50, labels=["cheetah"])
        assert result.matches
        assert all("cheetah" in m.labels for m in result.matches)
        with pytest.raises(LookalikeError, match="unknown label"):
            index.search(photos / "watch" / "image_0001.jpg", labels=["no such thing"])


def test_category_routing_and_fallback(built_index):
    db, photos = built_index
    with lookalike.Index.open(db, create=False) as index:
        query = photos / "Leopards" / "image_0002.jpg"
        routed = index.search(query, k=3, route="categories")
        assert routed.route == "categories"
        assert all(set(m.labels) & set(routed.query_labels) for m in routed.matches)
        # Asking for more than the categories hold falls back to the global ranking
        # instead of failing (the 2019 script raised an error here).
        everything = index.search(query, k=40, route="categories")
        assert everything.route == "categories+global"
        assert len(everything.matches) == 40


def test_rerun_embeds_nothing_and_rename_is_not_reembedded(photos, tmp_path):
    db = tmp_path / "index"
    with lookalike.Index.open(db) as index:
        first = index.add([photos], prune=True)
        assert first.embedded == len(SUBSET_CLASSES) * PER_CLASS
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


def test_changed_and_deleted_files(photos, tmp_path):
    with lookalike.Index.open(tmp_path / "index") as index:
        index.add([photos], prune=True)
        target = photos / "sunflower" / "image_0001.jpg"
        Image.open(photos / "Leopards" / "image_0001.jpg").save(target)  # new content, same name
        (photos / "sunflower" / "image_0002.jpg").unlink()
        report = index.add([photos], prune=True)
        assert report.embedded == 1 and report.removed == 1
        assert len(index) == len(SUBSET_CLASSES) * PER_CLASS - 1
        assert index.search(target, k=1).matches[0].path == str(target)
        assert index.remove([photos / "sunflower"]) == PER_CLASS - 1
        assert len(index) == len(SUBSET_CLASSES) * PER_CLASS - PER_CLASS


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
        assert report.embedded == len(SUBSET_CLASSES) * PER_CLASS
        # Unchanged bad files are not retried on every run, but still counted.
        again = index.add([photos])
        assert again.failed == [] and again.skipped_known_bad == 2
        assert index.info()["failed_files"] == 2


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
        assert 0 < kept < len(SUBSET_CLASSES) * PER_CLASS
    with lookalike.Index.open(tmp_path / "index", settings=settings) as index:
        # The vector store agrees with the catalogue after the interruption.
        assert len(index.store) == kept
        resumed = index.add([photos])
        assert resumed.embedded == len(SUBSET_CLASSES) * PER_CLASS - kept
        assert resumed.unchanged == kept
        assert len(index.store) == len(index) == len(SUBSET_CLASSES) * PER_CLASS


def test_stale_vector_store_is_rebuilt(built_index, tmp_path):
    db, photos = built_index
    copy = tmp_path / "copy"
    shutil.copytree(db, copy)
    (copy / "flat-vectors.npy").write_bytes(b"garbage")
    with lookalike.Index.open(copy, create=False) as index:
        assert index.search(photos / "watch" / "image_0004.jpg", k=1).matches[0].score > 0.99


def test_model_mismatch_and_bad_paths(built_index, tmp_path):
    db, _ = built_index
    with pytest.raises(IndexFormatError, match="built with model 'lite0-int8'"):
        lookalike.Index.open(db, model="lite2")
    with pytest.raises(IndexFormatError, match="no index"):
        lookalike.Index.open(tmp_path / "nothing", create=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file.txt").write_text("x")
    with pytest.raises(IndexFormatError, match="non-empty folder"):
        lookalike.Index.open(tmp_path / "busy")
    with lookalike.Index.open(tmp_path / "new") as index:
        with pytest.raises(LookalikeError, match="no such file or folder"):
            index.add([tmp_path / "missing"])


def test_existing_index_keeps_its_model(tmp_path):
    """An index made with the float model stays float when opened with the (int8) defaults."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for n in (1, 2, 3):
        shutil.copy(caltech_image("watch", n), photos / f"w{n}.jpg")
    with lookalike.Index.open(tmp_path / "db", model="lite0") as index:
        index.add([photos])
    with lookalike.Index.open(tmp_path / "db") as index:
        assert index.settings.model == "lite0"
        assert index.info()["model_id"].startswith("lite0-") and "int8" not in index.info()["model_id"]
        assert index.search(photos / "w2.jpg", k=1).matches[0].score > 0.99


def test_catalogue_contents(built_index):
    db, _ = built_index
    con = sqlite3.connect(db / "catalogue.sqlite")
    rows = con.execute("SELECT hash, width, height, length(vector) FROM images").fetchall()
    assert len(rows) == len(SUBSET_CLASSES) * PER_CLASS
    assert all(len(h) == 32 and w > 0 and h_ > 0 and n == 1280 * 2 for h, w, h_, n in rows)
    labels = con.execute("SELECT count(*) FROM labels").fetchone()[0]
    assert labels == 5 * len(rows)
    meta = dict(con.execute("SELECT key, value FROM meta"))
    assert meta["format_version"] == "1" and meta["model_id"].startswith("lite0-")
    con.close()


def test_identical_vectors_for_identical_pixels(built_index):
    db, photos = built_index
    with lookalike.Index.open(db, create=False) as index:
        path = photos / "Motorbikes" / "image_0005.jpg"
        a = index.embed([path]).vectors[0]
        b = index.embed([path.read_bytes()]).vectors[0]
        c = index.embed([Image.open(path)]).vectors[0]
        np.testing.assert_allclose(a, b, atol=1e-6)
        assert float(a @ c) > 0.999
