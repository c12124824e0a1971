"""The index folder (lookalike.index.folder.IndexFolder): opening and creating it, the
settings it fixes, and the derived files it keeps current (rebuilt when deleted or
damaged, never required to be writable)."""

from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lookalike
from conftest import PER_CLASS, SUBSET_CLASSES, caltech_image
from lookalike.errors import IndexFormatError
from lookalike.index.catalogue import Catalogue
from lookalike.index.folder import IndexFolder
from lookalike.index.graph import KnnGraph
from lookalike.index.vectors import FlatStore
from lookalike.index.words import InvertedFile, shipped_vocabulary
from lookalike.settings import Settings
from lookalike.verify import Features

TOTAL = len(SUBSET_CLASSES) * PER_CLASS
DERIVED = ("flat-ids.npy", "flat-vectors.npy", "flat.json", KnnGraph.FILE, InvertedFile.FILE)


@pytest.fixture
def copied(index, built_index, tmp_path) -> Path:
    """A private copy of the shared index folder, with every derived file (its photos stay
    where they are)."""
    db, photos = built_index
    index.search(photos / "watch" / "image_0001.jpg", 1, rerank="diffusion")  # graph, words
    assert all((db / name).exists() for name in DERIVED)
    return Path(shutil.copytree(db, tmp_path / "index"))


def _ranking(index: lookalike.Index, query: Path) -> list[tuple[int, int | None]]:
    return [(m.image_id, m.inliers) for m in index.search(query, 10, rerank="diffusion").matches]


# --- opening and creating ----------------------------------------------------------------
def test_open_and_create_errors(built_index, tmp_path):
    db, _ = built_index
    with pytest.raises(IndexFormatError, match="built with model 'lite0-int8', not 'lite2'"):
        lookalike.Index.open(db, model="lite2")
    with pytest.raises(IndexFormatError, match="no index at .*nothing; create one with: lookalike index"):
        lookalike.Index.open(tmp_path / "nothing", create=False)
    assert not (tmp_path / "nothing").exists()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file.txt").write_text("x")
    with pytest.raises(IndexFormatError, match="non-empty folder"):
        lookalike.Index.open(tmp_path / "busy")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(IndexFormatError, match="exists and is not an index folder"):
        lookalike.Index.open(tmp_path / "a-file")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "catalogue.sqlite").write_bytes(b"not a database, not at all" * 100)
    with pytest.raises(IndexFormatError, match=r"is damaged \(file is not a database\); run: lookalike check"):
        lookalike.Index.open(tmp_path / "junk")


def test_a_new_folder_is_created_and_stamped(tmp_path):
    with lookalike.Index.open(tmp_path / "deep" / "new", model="lite0") as index:
        assert index.path == tmp_path / "deep" / "new" and index.path.is_dir()
        assert len(index) == 0 and index.settings.model == "lite0"
        meta = index.catalogue.get_meta
        assert meta("format_version") == str(Catalogue.VERSION)
        assert meta("model_id").startswith("lite0-")
        assert meta("created_by").startswith("lookalike ")
    with lookalike.Index.open(tmp_path / "empty-but-there", create=True) as index:
        assert len(index) == 0  # an empty folder is fine


def test_a_newer_format_version_is_refused(copied):
    with lookalike.Index.open(copied) as index:
        index.catalogue.set_meta({"format_version": str(Catalogue.VERSION + 1)})
    with pytest.raises(IndexFormatError, match=f"newer lookalike \\(format {Catalogue.VERSION + 1}\\)"):
        lookalike.Index.open(copied)


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


def test_fixed_settings_win_others_are_taken(built_index):
    db, _ = built_index
    asked = Settings(gem_p=1.0, batch_size=7, pipeline="cosine,qe")
    folder = IndexFolder.open(db, asked, create=False)
    try:
        # What a stored vector means is the index's; how to search it is the caller's.
        assert folder.settings.gem_p == 3.0 and folder.settings.model == "lite0-int8"
        assert folder.settings.batch_size == 7 and folder.settings.pipeline == "cosine,qe"
        assert folder.path == db and len(folder.store) == TOTAL
    finally:
        folder.close()


# --- derived files -----------------------------------------------------------------------
def test_derived_files_are_saved_current(index, built_index):
    db, photos = built_index
    index.search(photos / "watch" / "image_0001.jpg", 3, rerank="diffusion")  # graph and words
    generation = index.catalogue.generation
    store = FlatStore.load(db, generation)
    assert store is not None and np.array_equal(store.ids, index.store.inner.ids)
    assert KnnGraph.load(db, index.store.transform.fingerprint)[1] == generation
    assert InvertedFile.load(db, shipped_vocabulary().fingerprint)[1] == generation


def test_stale_vector_store_is_rebuilt(built_index, copied):
    _, photos = built_index
    (copied / "flat-vectors.npy").write_bytes(b"garbage")
    with lookalike.Index.open(copied, create=False) as index:
        assert index.search(photos / "watch" / "image_0004.jpg", k=1).matches[0].score > 0.99
        generation = index.catalogue.generation
    assert len(FlatStore.load(copied, generation)) == TOTAL  # and saved again


@pytest.mark.parametrize("damage", ["deleted", "damaged"])
def test_derived_files_are_rebuilt_when_deleted_or_damaged(index, built_index, copied, damage):
    _, photos = built_index
    query = photos / "Motorbikes" / "image_0002.jpg"
    expected = _ranking(index, query)
    for name in DERIVED:
        if damage == "deleted":
            (copied / name).unlink()
        else:
            (copied / name).write_bytes(b"damaged")
    with lookalike.Index.open(copied, create=False) as reopened:
        assert _ranking(reopened, query) == expected
        assert np.array_equal(reopened.graph().neighbours, index.graph().neighbours)
        generation = reopened.catalogue.generation
        fingerprint = reopened.store.transform.fingerprint
    assert len(FlatStore.load(copied, generation)) == TOTAL
    assert KnnGraph.load(copied, fingerprint)[1] == generation
    assert InvertedFile.load(copied, shipped_vocabulary().fingerprint)[1] == generation


@contextmanager
def unwritable(folder: Path):
    """No new file can be made in ``folder``, as on read-only media (root ignores file
    modes, so it gets the immutable flag instead)."""
    if os.geteuid() == 0:
        done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
        undo = ["chattr", "-i", str(folder)]
        if done.returncode != 0:
            pytest.skip(f"cannot make a folder read-only here: {done.stderr.decode().strip()}")
    else:
        folder.chmod(0o555)
        undo = None
    try:
        with pytest.raises(OSError):
            (folder / "probe").write_bytes(b"")
        yield
    finally:
        if undo:
            subprocess.run(undo, check=True)
        else:
            folder.chmod(0o755)


def test_a_read_only_folder_still_searches(index, built_index, copied):
    _, photos = built_index
    query = photos / "airplanes" / "image_0003.jpg"
    expected = _ranking(index, query)
    for name in DERIVED:
        (copied / name).unlink()
    with lookalike.Index.open(copied, create=False) as holder:  # the catalogue's own files
        len(holder)
        before = sorted(os.listdir(copied))
        with unwritable(copied):
            with lookalike.Index.open(copied, create=False) as index_ro:
                # Every derived file is rebuilt in memory; none can be saved.
                assert _ranking(index_ro, query) == expected
                assert len(index_ro.graph()) == len(index_ro.word_index()) == TOTAL
                assert index_ro.info()["images"] == TOTAL
            assert sorted(os.listdir(copied)) == before
    assert not any(name in os.listdir(copied) for name in DERIVED)


def test_a_folder_on_read_only_media_opens_and_searches(built_index, copied):
    _, photos = built_index
    for name in DERIVED:
        (copied / name).unlink()
    with lookalike.Index.open(copied, create=False):
        pass  # the last connection closed: only the catalogue (and the writers' lock file) is left
    assert sorted(os.listdir(copied)) in (["catalogue.sqlite"], ["catalogue.sqlite", "write.lock"])
    with unwritable(copied), lookalike.Index.open(copied, create=False) as index_ro:
        assert index_ro.search(photos / "watch" / "image_0001.jpg", 3).matches


# --- what the stages read ----------------------------------------------------------------
def test_pictures_features_and_words_of_indexed_images(index, built_index):
    _, photos = built_index
    folder = index.folder
    path = photos / "sunflower" / "image_0004.jpg"
    image_id = index.catalogue.image_for_location(str(path))
    pictures = folder.picture_loader([image_id, 987654], 300)
    picture = pictures(image_id)
    assert isinstance(picture, Image.Image) and picture.size == Image.open(path).size
    assert pictures(987654) is None  # no such image: nothing to read
    load = folder.feature_loader([image_id, 987654])
    features = load(image_id)
    assert isinstance(features, Features) and len(features.points) == len(features.descriptors) > 100
    assert load(987654) is None
    ids, words = folder.stored_words(np.array([image_id]))
    assert ids.tolist() == [image_id] and len(words) == 1 and len(words[0]) > 0
    assert len(folder.stored_words()[0]) == TOTAL
    assert folder.verifier is folder.verifier  # one verifier, with its feature cache
