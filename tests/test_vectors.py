"""Vector stores' contract and the exact store (lookalike.index.vectors): FlatStore, top_k."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import augment
from lookalike.index.ann import AnnStore
from lookalike.index.transform import Transform, TransformedStore
from lookalike.index.vectors import FlatStore, VectorStore, top_k


@pytest.fixture(scope="module")
def data(real_vectors):
    """``(ids, vectors, queries)``; ids are sparse like catalogue ids."""
    vectors = augment(real_vectors, 300, seed=5)
    ids = np.arange(1, 301, dtype=np.int64) * 5
    return ids, vectors, augment(real_vectors, 10, seed=6)


def test_every_store_keeps_the_contract():
    for store in (FlatStore(), AnnStore(lambda ids: (ids, None)), TransformedStore(FlatStore(), Transform(None, 0))):
        assert isinstance(store, VectorStore)


def test_top_k():
    scores = np.array([[0.1, 0.9, 0.5, 0.9], [0.3, 0.2, 0.1, 0.0]])
    assert top_k(scores, 2).tolist() == [[1, 3], [0, 1]]  # ties by index
    assert top_k(scores, 10).tolist() == [[1, 3, 2, 0], [0, 1, 2, 3]]  # k beyond the columns
    assert top_k(scores, 0).shape == (2, 0)


def test_exact_search_and_filters(data):
    ids, vectors, queries = data
    store = FlatStore(ids[::-1], vectors[::-1])  # any order in: kept sorted by id
    assert len(store) == 300 and store.ids.tolist() == ids.tolist()
    np.testing.assert_array_equal(store.matrix, vectors)
    scores, found = store.search(queries, 7)
    exact = np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :7]
    assert found.tolist() == ids[exact].tolist()
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ vectors.T, exact, axis=1), atol=1e-6)
    assert found.dtype == np.int64 and scores.dtype == np.float32
    # Candidates restrict the search (unknown and repeated ids are ignored).
    allowed = np.concatenate([ids[10:20], ids[10:12], [999_999]])
    _, within = store.search(queries, 5, allowed)
    assert np.isin(within, ids[10:20]).all()
    assert store.search(queries, 50, ids[:3])[1].shape == (len(queries), 3)  # fewer than k
    empty = store.search(queries, 5, np.array([999_999]))
    assert empty[0].shape == empty[1].shape == (len(queries), 0)
    assert store.search(queries[0], 1)[1].shape == (1, 1)  # one query
    assert store.search(queries, 3, rough=True)[1].tolist() == found[:, :3].tolist()  # exact anyway


def test_add_replace_remove_and_vectors(data):
    ids, vectors, queries = data
    store = FlatStore()
    assert len(store) == 0 and store.search(queries, 3)[1].shape == (len(queries), 0)
    store.remove(ids[:3])  # nothing to remove: fine
    store.add(ids[100:], vectors[100:])
    store.add(ids[:100], vectors[:100])
    assert store.ids.tolist() == ids.tolist()
    store.add(ids[:1], vectors[5:6])  # re-adding replaces, never duplicates
    assert len(store) == 300 and np.allclose(store.vectors(ids[:1]), vectors[5:6])
    store.remove(np.concatenate([ids[:50], [999_999]]))  # unknown ids are ignored
    assert len(store) == 250 and not np.isin(store.search(queries, 20)[1], ids[:50]).any()
    # Vectors by id, in the order asked; asking for one not held is an error.
    np.testing.assert_array_equal(store.vectors(ids[[200, 60, 61]]), vectors[[200, 60, 61]])
    assert store.rows_of(np.array([ids[60], ids[0], 999_999])).tolist() == [10]
    with pytest.raises(KeyError):
        store.vectors(ids[:1])
    with pytest.raises(KeyError):
        FlatStore().vectors(ids[:1])


def test_save_and_load(data, tmp_path):
    ids, vectors, queries = data
    store = FlatStore(ids, vectors)
    store.save(tmp_path, 12)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FlatStore.FILES)
    loaded = FlatStore.load(tmp_path, 12)
    assert loaded.ids.tolist() == ids.tolist()
    np.testing.assert_allclose(loaded.matrix, vectors, atol=1e-3)  # kept at float16
    assert loaded.search(queries, 1)[1].tolist() == store.search(queries, 1)[1].tolist()
    assert FlatStore.load(tmp_path, 13) is None  # another catalogue generation: stale
    (tmp_path / "flat-ids.npy").write_bytes(b"damaged")
    assert FlatStore.load(tmp_path, 12) is None
    FlatStore(ids[:5], vectors[:5]).save(tmp_path, 14)
    np.save(tmp_path / "flat-ids.npy", ids[:4])  # a file of another store
    assert FlatStore.load(tmp_path, 14) is None
    assert FlatStore.load(tmp_path / "nowhere", 1) is None
