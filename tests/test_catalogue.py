"""The SQLite catalogue: its writes and reads, its format version and its migrations.

The migration tests open catalogues written by an older lookalike (format 1, committed
under ``tests/data/format1``; its README says how they were made), so they check real old
files, not a shape this code made up.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import lookalike
from conftest import caltech_image
from lookalike.errors import IndexFormatError
from lookalike.index import schema
from lookalike.index.ann import CatalogueVectors
from lookalike.index.catalogue import FORMAT_VERSION, Catalogue
from lookalike.index.formats import FileStat, NewImage

FORMAT1 = Path(__file__).parent / "data" / "format1"
# The photos in the format-1 catalogues; the watch photo is there under two names.
FORMAT1_PHOTOS = [("watch", 1), ("sunflower", 1), ("airplanes", 2), ("Leopards", 1), ("Motorbikes", 1)]


def _image(n: int, dims: int = 8) -> NewImage:
    """A small distinct image record (the catalogue does not care about the dimension)."""
    vector = np.linspace(-1, 1, dims, dtype=np.float32) * (n + 1) / 10
    return NewImage(f"hash{n}", 100 + n, 50 + n, vector, [n, n + 1], [0.75, 0.25])


def _stat(location: str, size: int = 10) -> FileStat:
    return FileStat(location, size, 1_000)


@pytest.fixture
def cat(tmp_path):
    catalogue = Catalogue(tmp_path / "catalogue.sqlite")
    yield catalogue
    catalogue.close()


def _add(cat: Catalogue, n: int, *locations: str) -> int:
    with cat.transaction() as db:
        image_id = Catalogue.insert_image(db, _image(n))
        for location in locations:
            assert Catalogue.upsert_file(db, _stat(location), image_id) is None
    return image_id


# --- writes and reads ---------------------------------------------------------------------
def test_insert_image_and_read_it_back(cat):
    image_id = _add(cat, 3, "/photos/a.jpg")
    assert cat.count_images() == 1 and cat.count_files() == 1
    assert cat.known_hashes() == {"hash3"}
    assert cat.image_for_location("/photos/a.jpg") == image_id
    with cat.transaction() as db:
        assert Catalogue.image_id_for_hash(db, "hash3") == image_id
        assert Catalogue.image_id_for_hash(db, "nothing") is None
    stored = np.asarray(_image(3).vector, dtype=np.float16).astype(np.float32)  # kept as float16
    ids, vectors = cat.vectors_by_id([image_id, 999])  # an absent id is skipped
    assert ids.tolist() == [image_id] and vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors[0], stored)
    np.testing.assert_array_equal(cat.vectors_for([image_id])[0], stored)
    assert cat.labels_for([image_id]) == {image_id: [(3, 0.75), (4, 0.25)]}
    assert cat.locations_for([image_id]) == {image_id: ["/photos/a.jpg"]}
    record = cat.files_by_location()["/photos/a.jpg"]
    assert (record.image_id, record.size, record.mtime_ns) == (image_id, 10, 1_000)


def test_vector_reads_agree(cat):
    ids = [_add(cat, n, f"/p/{n}.jpg") for n in range(5)]
    all_ids, all_vectors = cat.all_vectors()
    assert all_ids.tolist() == ids == cat.image_ids().tolist()
    chunks = list(cat.vector_chunks(2))
    assert [len(c[0]) for c in chunks] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate([c[0] for c in chunks]), all_ids)
    np.testing.assert_array_equal(np.concatenate([c[1] for c in chunks]), all_vectors)
    found, vectors = cat.vectors_by_id(reversed(ids))
    np.testing.assert_array_equal(vectors[np.argsort(found)], all_vectors)
    empty_ids, empty = cat.vectors_by_id([])
    assert empty_ids.shape == (0,) and empty.shape == (0, 0)
    # The ANN store's view of the same rows, with its transform applied.
    source = CatalogueVectors(cat, lambda v: v * 2)
    np.testing.assert_array_equal(source(np.asarray(ids[:2]))[1], all_vectors[:2] * 2)
    assert source.ids().tolist() == ids
    assert sum(len(i) for i, _ in source.chunks(3)) == 5


def test_upsert_file_orphans_the_old_image(cat):
    old = _add(cat, 1, "/p/a.jpg")
    new = _add(cat, 2, "/p/b.jpg")
    with cat.transaction() as db:  # a.jpg now holds b's content: its old image has no file
        assert Catalogue.upsert_file(db, _stat("/p/a.jpg", 20), new) == old
        assert Catalogue.upsert_file(db, _stat("/p/a.jpg", 20), new) is None  # unchanged
    assert cat.image_ids().tolist() == [new]
    assert cat.locations_for([new]) == {new: ["/p/a.jpg", "/p/b.jpg"]}
    assert cat.labels_for([old]) == {old: []}  # its labels went with it
    assert cat.files_by_location()["/p/a.jpg"].size == 20


def test_delete_locations_returns_the_orphans(cat):
    shared = _add(cat, 1, "/p/a.jpg", "/p/copy.jpg")
    alone = _add(cat, 2, "/p/b.jpg")
    with cat.transaction() as db:
        assert Catalogue.delete_locations(db, ["/p/a.jpg", "/p/unknown.jpg"]) == []
    assert cat.image_ids().tolist() == [shared, alone]
    with cat.transaction() as db:
        assert Catalogue.delete_locations(db, ["/p/copy.jpg", "/p/b.jpg"]) == [shared, alone]
    assert cat.count_images() == 0 and cat.count_files() == 0


def test_image_ids_are_never_reused(cat, tmp_path):
    first = _add(cat, 1, "/p/1.jpg")
    highest = _add(cat, 2, "/p/2.jpg")
    with cat.transaction() as db:
        assert Catalogue.delete_locations(db, ["/p/2.jpg"]) == [highest]
    third = _add(cat, 3, "/p/3.jpg")
    assert first < highest < third
    cat.close()
    again = Catalogue(tmp_path / "catalogue.sqlite")  # and after reopening
    try:
        with again.transaction() as db:
            assert Catalogue.delete_locations(db, ["/p/3.jpg"]) == [third]
        assert _add(again, 4, "/p/4.jpg") == third + 1
    finally:
        again.close()


def test_failures_are_recorded_and_cleared(cat):
    with cat.transaction() as db:
        Catalogue.record_failure(db, _stat("/p/bad.jpg"), "not an image")
        Catalogue.record_failure(db, _stat("/p/gone.jpg"), "unreadable")
        Catalogue.record_failure(db, _stat("/p/bad.jpg", 11), "still not an image")
    assert cat.failures() == {
        "/p/bad.jpg": (11, 1_000, "still not an image"),
        "/p/gone.jpg": (10, 1_000, "unreadable"),
    }
    _add(cat, 1, "/p/bad.jpg")  # fixed: indexing it clears the failure
    with cat.transaction() as db:
        Catalogue.delete_locations(db, ["/p/gone.jpg"])  # deleted: forgotten
    assert cat.failures() == {}


def test_generation_counts_transactions_and_rollback_leaves_nothing(cat):
    start = cat.generation
    _add(cat, 1, "/p/1.jpg")
    cat.set_meta({"note": "x"})
    with cat.transaction():
        pass
    assert cat.generation == start + 3
    with pytest.raises(RuntimeError), cat.transaction() as db:
        image_id = Catalogue.insert_image(db, _image(2))
        Catalogue.upsert_file(db, _stat("/p/2.jpg"), image_id)
        Catalogue.insert_local_features(db, image_id, np.ones((3, 2)), np.ones((3, 32)))
        Catalogue.record_failure(db, _stat("/p/3.jpg"), "bad")
        raise RuntimeError("interrupted")
    assert cat.generation == start + 3
    assert cat.count_images() == 1 and cat.count_files() == 1
    assert cat.count_local_features() == 0 and cat.failures() == {}
    assert cat.known_hashes() == {"hash1"}
    with cat.transaction():  # the connection is usable again
        pass
    assert cat.generation == start + 4


def test_local_features_and_words_round_trip(cat):
    image_id = _add(cat, 1, "/p/1.jpg")
    points = np.array([[1.5, 2.0], [300.25, 40.0]], dtype=np.float32)
    descriptors = np.arange(64, dtype=np.uint8).reshape(2, 32)
    with cat.transaction() as db:
        Catalogue.insert_local_features(db, image_id, points, descriptors, np.array([7, 40_000]))
    got_points, got_descriptors = cat.local_features_for([image_id])[image_id]
    np.testing.assert_array_equal(got_points, points)
    np.testing.assert_array_equal(got_descriptors, descriptors)
    [(got_id, words, blob)] = list(cat.visual_words())
    assert got_id == image_id and words.tolist() == [7, 40_000] and blob == descriptors.tobytes()
    assert cat.local_feature_ids().tolist() == [image_id]


# --- format version -----------------------------------------------------------------------
def test_new_catalogue_records_its_version(cat):
    assert Catalogue.VERSION == FORMAT_VERSION == schema.VERSION == 7
    assert cat.version == Catalogue.VERSION and cat.get_meta("format_version") == "7"
    assert cat.generation == 0  # creating it changed no content
    assert cat.ensure_version() == Catalogue.VERSION


def test_newer_format_is_refused_in_one_line(tmp_path):
    path = tmp_path / "index" / "catalogue.sqlite"
    path.parent.mkdir()
    shutil.copy(FORMAT1 / "catalogue.sqlite", path)
    newer = Catalogue.VERSION + 1
    _set_version(path, str(newer))
    before = _digest(path)
    expected = f"{path} was written by a newer lookalike (format {newer}); upgrade lookalike"
    for opening in (
        lambda: Catalogue(path),
        lambda: Catalogue(path, readonly=True),
        lambda: lookalike.Index.open(path.parent),
    ):
        with pytest.raises(IndexFormatError) as error:
            opening()
        assert str(error.value) == expected
    assert _digest(path) == before


def test_another_database_is_not_written_into(tmp_path):
    path = tmp_path / "other.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (text TEXT)")
    db.commit()
    db.close()
    with pytest.raises(IndexFormatError, match="not a lookalike catalogue"):
        Catalogue(path)
    db = sqlite3.connect(path)
    assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["notes"]
    db.close()


def test_unreadable_version_is_refused(tmp_path):
    path = tmp_path / "catalogue.sqlite"
    shutil.copy(FORMAT1 / "catalogue.sqlite", path)
    _set_version(path, "two")
    with pytest.raises(IndexFormatError, match="not a lookalike catalogue .*'two'"):
        Catalogue(path)
    assert _rows(path)["meta"]["format_version"] == "two"


def test_catalogue_without_a_recorded_version_is_format_1(tmp_path):
    """Before format 2, a catalogue made by Catalogue alone (not Index) recorded none."""
    path = tmp_path / "catalogue.sqlite"
    shutil.copy(FORMAT1 / "catalogue-nowords.sqlite", path)
    db = sqlite3.connect(path)
    db.execute("DELETE FROM meta WHERE key = 'format_version'")
    db.commit()
    db.close()
    readonly = Catalogue(path, readonly=True)
    assert readonly.version == 1
    readonly.close()
    cat = Catalogue(path)
    assert cat.version == Catalogue.VERSION and "words" in _columns(cat.db, "local_features")
    cat.close()


# --- format-1 catalogues: migration ------------------------------------------------------
@pytest.mark.parametrize("name", ["catalogue.sqlite", "catalogue-nowords.sqlite"])
def test_format1_index_is_migrated_and_searches_as_before(tmp_path, name):
    folder = tmp_path / "index"
    folder.mkdir()
    path = folder / "catalogue.sqlite"
    shutil.copy(FORMAT1 / name, path)
    before = _rows(path)
    assert before["meta"]["format_version"] == "1"
    assert ("words" in _columns_of(path, "local_features")) == (name == "catalogue.sqlite")

    with lookalike.Index.open(folder, create=False) as index:
        assert index.catalogue.version == Catalogue.VERSION
        assert index.info()["format_version"] == Catalogue.VERSION
        # Every old image is found again from its stored vector, by a photo's bytes.
        for label, number in FORMAT1_PHOTOS:
            photo = caltech_image(label, number)
            best = index.search(photo.read_bytes(), k=3, verify=0).matches[0]
            assert best.image_id == before["hash_ids"][_hash(photo)], (label, best)
            assert best.score > 0.99
        # The default search (verification and word candidates from the stored local
        # features; words of old rows quantised from their descriptors) agrees.
        watch = index.search(caltech_image("watch", 1), k=3).matches[0]
        assert watch.image_id == before["hash_ids"][_hash(caltech_image("watch", 1))]
        assert watch.inliers is not None and watch.inliers >= 15

    after = _rows(path)
    assert after["meta"].pop("format_version") == str(Catalogue.VERSION)
    before["meta"].pop("format_version")
    # Every image (its pixel size unknown since format 7: 0 x 0), file, label, feature (with
    # its words, or none), failure and meta row kept; the generation too: nothing derived
    # needs rebuilding.
    assert {row[2:4] for row in after["images"]} == {(0, 0)}
    before["images"] = [(*row[:2], 0, 0, *row[4:]) for row in before["images"]]
    assert after == before
    assert all((w is None) == (name != "catalogue.sqlite") for *_, w in after["features"])
    assert "words" in _columns_of(path, "local_features")


def test_format1_opens_read_only_without_migrating(tmp_path):
    path = tmp_path / "catalogue.sqlite"
    shutil.copy(FORMAT1 / "catalogue-nowords.sqlite", path)
    before = _digest(path)
    cat = Catalogue(path, readonly=True)
    try:
        assert cat.version == 1
        assert cat.count_images() == 5 and cat.count_files() == 6 and len(cat.failures()) == 1
        assert cat.count_local_features() == 5
        features = cat.local_features_for(cat.image_ids().tolist())
        assert len(features) == 5 and all(d.shape[1] == 32 for _, d in features.values())
        assert list(cat.visual_words()) == []  # no words column: the caller's fallback
        _, vectors = cat.all_vectors()
        assert vectors.shape == (5, 1280) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-2)
    finally:
        cat.close()
    assert _digest(path) == before
    assert "words" not in _columns_of(path, "local_features")


def test_failed_migration_changes_nothing(tmp_path, monkeypatch):
    """Steps run in one transaction with the version record: a failing new step undoes the
    earlier ones."""
    path = tmp_path / "catalogue.sqlite"
    shutil.copy(FORMAT1 / "catalogue-nowords.sqlite", path)
    images = _rows(path)["images"]

    def broken_step(db):
        db.execute("ALTER TABLE images ADD COLUMN source TEXT")
        db.execute("SELECT no_such_column FROM images")

    monkeypatch.setattr(schema, "STEPS", (*schema.STEPS, (8, broken_step)))
    monkeypatch.setattr(schema, "VERSION", 8)
    monkeypatch.setattr(Catalogue, "VERSION", 8)
    with pytest.raises(IndexFormatError, match="no such column"):
        Catalogue(path)
    assert _rows(path)["meta"]["format_version"] == "1"
    assert "words" not in _columns_of(path, "local_features")
    assert "source" not in _columns_of(path, "images")
    assert _rows(path)["images"] == images


def test_a_new_step_is_one_more_entry(tmp_path, monkeypatch):
    path = tmp_path / "catalogue.sqlite"
    shutil.copy(FORMAT1 / "catalogue-nowords.sqlite", path)
    ran: list[int] = []

    def step8(db):
        assert "words" in _columns(db, "local_features")  # the earlier steps ran first
        ran.append(8)
        db.execute("ALTER TABLE images ADD COLUMN source TEXT")

    monkeypatch.setattr(schema, "STEPS", (*schema.STEPS, (8, step8)))
    monkeypatch.setattr(schema, "VERSION", 8)
    monkeypatch.setattr(Catalogue, "VERSION", 8)
    cat = Catalogue(path)
    cat.close()
    cat = Catalogue(path)  # already at 8: nothing runs again
    assert cat.version == 8 and ran == [8] and "source" in _columns(cat.db, "images")
    cat.close()


# --- helpers -------------------------------------------------------------------------------
def _hash(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _set_version(path: Path, version: str) -> None:
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'format_version'", (version,))
    db.commit()
    db.close()


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def _columns_of(path: Path, table: str) -> set[str]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return _columns(db, table)
    finally:
        db.close()


def _rows(path: Path) -> dict:
    """Every row of every table (words NULL where the column is missing), and the image id
    of each hash."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        words = "words" if "words" in _columns(db, "local_features") else "NULL"
        query = {
            "images": "SELECT id, hash, width, height, vector, added_at FROM images ORDER BY id",
            "files": "SELECT id, location, image_id, size, mtime_ns, indexed_at FROM files ORDER BY id",
            "labels": "SELECT image_id, rank, class_id, prob FROM labels ORDER BY image_id, rank",
            "features": f"SELECT image_id, points, descriptors, {words} FROM local_features "
            "ORDER BY image_id",
            "failures": "SELECT location, size, mtime_ns, reason, at FROM failures ORDER BY location",
        }
        rows = {name: db.execute(sql).fetchall() for name, sql in query.items()}
        rows["meta"] = dict(db.execute("SELECT key, value FROM meta"))
        rows["hash_ids"] = {h: i for i, h, *_ in rows["images"]}
        return rows
    finally:
        db.close()
