"""The store factory (lookalike.index.stores): exact or approximate by collection size,
loaded when current, repaired or rebuilt from the catalogue when not. Vectors are real
descriptors, augmented (see conftest.augment); thresholds are low so the approximate store
is built on small data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import augment, catalogue_with
from lookalike.index.ann import AnnStore, CatalogueVectors
from lookalike.index.catalogue import Catalogue
from lookalike.index.formats import FileStat, NewImage
from lookalike.index.stores import approximate_for, open_store
from lookalike.index.vectors import FlatStore
from lookalike.settings import AnnParams

# A graph from 500 vectors on (the default calibration needs 4,096).
ANN = AnnParams(threshold=1000, calibrate_at=500, scan_max=1500)


@pytest.fixture(scope="module")
def vectors(real_vectors) -> np.ndarray:
    return augment(real_vectors, 1500, seed=3)


@pytest.fixture(scope="module")
def queries(real_vectors) -> np.ndarray:
    return augment(real_vectors, 40, seed=2)


@pytest.fixture
def catalogue(vectors, tmp_path):
    catalogue = catalogue_with(tmp_path / "catalogue.sqlite", vectors)
    yield catalogue
    catalogue.close()


def _mapped(path: Path) -> bool:
    """Whether this process has ``path`` memory-mapped."""
    return str(path) in Path("/proc/self/maps").read_text()


def _count_builds(monkeypatch) -> list[int]:
    built: list[int] = []
    build = AnnStore.build.__func__

    def counting(cls, *args, **kwargs):
        built.append(1)
        return build(cls, *args, **kwargs)

    monkeypatch.setattr(AnnStore, "build", classmethod(counting))
    return built


def test_approximate_from_the_threshold_and_kept_down_to_half(tmp_path):
    params = AnnParams(threshold=100)
    assert not approximate_for(tmp_path, 99, params) and approximate_for(tmp_path, 100, params)
    (tmp_path / "ann.json").write_text("{}")  # an index that has an approximate store keeps it
    assert approximate_for(tmp_path, 50, params) and not approximate_for(tmp_path, 49, params)


def test_exact_store_saved_loaded_and_rebuilt(catalogue, vectors, tmp_path, monkeypatch):
    store = open_store(tmp_path, catalogue, AnnParams())
    assert isinstance(store, FlatStore) and len(store) == len(vectors)
    assert FlatStore.load(tmp_path, catalogue.generation) is not None  # saved
    # Current: loaded, nothing read from the catalogue.
    with monkeypatch.context() as patch:
        patch.setattr(Catalogue, "all_vectors", lambda self: pytest.fail("rebuilt"))
        loaded = open_store(tmp_path, catalogue, AnnParams())
    assert loaded.ids.tolist() == store.ids.tolist()
    # The catalogue moved on: rebuilt, with the transform applied, and saved again.
    with catalogue.transaction() as db:
        Catalogue.delete_locations(db, ["/photos/0.jpg"])
    rebuilt = open_store(tmp_path, catalogue, AnnParams(), transform=lambda v: -v)
    assert len(rebuilt) == len(vectors) - 1 and 1 not in rebuilt.ids
    np.testing.assert_allclose(rebuilt.vectors(np.array([2])), -vectors[1:2], atol=1e-3)
    assert len(FlatStore.load(tmp_path, catalogue.generation)) == len(vectors) - 1
    # A new transform rebuilds a current store too.
    again = open_store(tmp_path, catalogue, AnnParams(), rebuild=True)
    np.testing.assert_allclose(again.vectors(np.array([2])), vectors[1:2], atol=1e-3)
    (tmp_path / "flat-vectors.npy").write_bytes(b"damaged")
    assert len(open_store(tmp_path, catalogue, AnnParams())) == len(vectors) - 1


def test_exact_store_reads_back_its_float16_precision_mapped(vectors, tmp_path):
    ids = np.arange(1, len(vectors) + 1, dtype=np.int64)
    FlatStore(ids, vectors).save(tmp_path, 3)
    loaded = FlatStore.load(tmp_path, 3)
    rounded = vectors.astype(np.float16).astype(np.float32)
    assert loaded.matrix.dtype == np.float32 and np.array_equal(loaded.matrix, rounded)
    assert isinstance(loaded.matrix, np.memmap) or isinstance(loaded.matrix.base, np.memmap)
    # An older store file (float16 on disk) loads to the same matrix.
    np.save(tmp_path / "flat-vectors.npy", vectors.astype(np.float16))
    assert np.array_equal(FlatStore.load(tmp_path, 3).matrix, rounded)


def test_expected_images_choose_the_store(catalogue, tmp_path):
    assert isinstance(open_store(tmp_path, catalogue, AnnParams(threshold=5000)), FlatStore)
    # A big first run (images about to be added) goes approximate at once.
    store = open_store(tmp_path, catalogue, AnnParams(threshold=5000), expected=6000)
    assert isinstance(store, AnnStore) and len(store) == 1500
    assert not any((tmp_path / name).exists() for name in FlatStore.FILES)


def test_save_reopen_memory_mapped_and_stale_repair(catalogue, queries, tmp_path, monkeypatch):
    built = _count_builds(monkeypatch)
    store = open_store(tmp_path, catalogue, ANN)
    assert isinstance(store, AnnStore) and (tmp_path / "ann.usearch").exists() and built == [1]
    expected = store.search(queries, 10)
    stamp = (tmp_path / "ann.usearch").stat().st_mtime_ns

    reopened = open_store(tmp_path, catalogue, ANN)  # current: mapped, not rebuilt
    assert _mapped(tmp_path / "ann.usearch") and built == [1]
    assert (tmp_path / "ann.usearch").stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(reopened.search(queries, 10)[1], expected[1])

    # The catalogue moves on without the store (an interrupted run): repaired by id diff.
    with catalogue.transaction() as db:
        removed = Catalogue.delete_locations(db, [f"/photos/{i}.jpg" for i in range(50)])
        new_id = Catalogue.insert_image(db, NewImage("new", 1, 1, queries[0], [1], [1.0]))
        Catalogue.upsert_file(db, FileStat("/photos/new.jpg", 1, 1), new_id)
    repaired = open_store(tmp_path, catalogue, ANN)
    assert built == [1]  # not rebuilt
    assert set(repaired.ids()) == set(CatalogueVectors(catalogue).ids())
    _, top = repaired.search(queries[:1], 1)
    assert top[0, 0] == new_id and not np.isin(top, removed).any()

    # Another transform (e.g. a re-learned centre) cannot be repaired: rebuilt.
    rebuilt = open_store(tmp_path, catalogue, ANN, fingerprint="another centre")
    assert built == [1, 1] and len(rebuilt) == len(repaired)


def test_damaged_file_is_rebuilt_and_a_shrunk_collection_goes_exact(catalogue, vectors, queries, tmp_path):
    params = AnnParams(threshold=500, calibrate_at=500, scan_max=1500)
    open_store(tmp_path, catalogue, params)
    (tmp_path / "ann.usearch").write_bytes(b"not an index")
    store = open_store(tmp_path, catalogue, params)
    assert len(store) == len(vectors) and store.search(queries, 3)[1].shape == (len(queries), 3)
    assert (tmp_path / "ann.json").exists()
    # 1,500 images: fewer than half of a 4,000 threshold, back on the exact store.
    store = open_store(tmp_path, catalogue, AnnParams(threshold=4000))
    assert isinstance(store, FlatStore) and len(store) == len(vectors)
    assert not any((tmp_path / name).exists() for name in AnnStore.FILES)
