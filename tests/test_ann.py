"""The approximate vector store (usearch HNSW over int8 codes) and the int8 model.

Vectors are real: a few dozen Caltech-101 photos embedded by the product, augmented to
thousands by mixing and multiplicative noise (i.i.d. random vectors have no neighbourhood
structure and would test nothing). Thresholds are set low so the approximate path runs on
small data. No timing assertions.
"""

from __future__ import annotations

import numpy as np
import pytest

import lookalike
from conftest import SUBSET_CLASSES, caltech_image
from lookalike.index.ann import AnnParams, AnnStore, CatalogueVectors, Int8Codec
from lookalike.index.catalogue import Catalogue, FileStat, NewImage
from lookalike.index.vectors import FlatStore, open_store
from lookalike.settings import Settings

N_VECTORS = 3000
PARAMS = AnnParams(calibrate_at=500, scan_max=1500)


def _augment(base: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` unit vectors near the real ones: convex mixes of two, times log-normal noise."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(base), n), rng.integers(0, len(base), n)
    mix = rng.uniform(0.6, 1.0, (n, 1)).astype(np.float32)
    noise = np.exp(0.3 * rng.standard_normal((n, base.shape[1]))).astype(np.float32)
    v = (mix * base[a] + (1 - mix) * base[b]) * noise
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def real_vectors() -> np.ndarray:
    """Descriptors of 8 photos from each of 5 classes, embedded once."""
    from lookalike.embed.embedder import Embedder
    from lookalike.images import load_image

    embedder = Embedder(Settings())
    images = [
        load_image(caltech_image(label, n), target_size=embedder.input_size)
        for label in SUBSET_CLASSES
        for n in range(1, 9)
    ]
    return embedder.embed_images(images).vectors


@pytest.fixture(scope="module")
def data(real_vectors):
    """``(ids, database vectors, query vectors)``; ids are sparse like catalogue ids."""
    vectors = _augment(real_vectors, N_VECTORS, seed=1)
    queries = _augment(real_vectors, 40, seed=2)
    ids = np.arange(1, N_VECTORS + 1, dtype=np.int64) * 7
    return ids, vectors, queries


def _memory_source(ids: np.ndarray, vectors: np.ndarray):
    rows = {int(i): r for r, i in enumerate(ids)}

    def source(wanted):
        found = np.asarray([int(i) for i in wanted if int(i) in rows], dtype=np.int64)
        return found, vectors[[rows[int(i)] for i in found]].reshape(len(found), -1)

    return source


def _recall(expected: np.ndarray, got: np.ndarray) -> float:
    return float(
        np.mean([len(set(e) & set(g)) / len(e) for e, g in zip(expected, got, strict=True)])
    )


def _ann(ids, vectors, params=PARAMS) -> AnnStore:
    store = AnnStore(_memory_source(ids, vectors), params)
    for start in range(0, len(ids), 250):  # incremental, like the indexing pipeline
        store.add(ids[start : start + 250], vectors[start : start + 250])
    return store


def test_codec_keeps_neighbourhoods(data):
    ids, vectors, queries = data
    codec = Int8Codec.fit(vectors[:500], dims=256)
    codes, query_codes = codec.encode(vectors), codec.encode(queries)
    assert codes.dtype == np.int8 and codes.shape == (N_VECTORS, 256)
    assert np.abs(codes).max() <= 127
    d = ((query_codes[:, None, :].astype(np.float32) - codes[None].astype(np.float32)) ** 2).sum(-1)
    by_code = np.argsort(d, axis=1)[:, :50]
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    assert _recall(exact, by_code) >= 0.98  # the true top-10 is among the 50 closest codes


@pytest.fixture(scope="module")
def built(data) -> AnnStore:
    """A graph over the test vectors, shared by the read-only tests."""
    ids, vectors, _ = data
    return _ann(ids, vectors)


def test_recall_and_exact_scores_against_flat(data, built):
    ids, vectors, queries = data
    ann, flat = built, FlatStore(ids, vectors)
    assert len(ann) == N_VECTORS and ann._index is not None  # the graph path, not the buffer
    a_scores, a_ids = ann.search(queries, 10)
    f_scores, f_ids = flat.search(queries, 10)
    assert a_ids.shape == (len(queries), 10)
    assert _recall(f_ids, a_ids) >= 0.97
    # Candidates are re-scored exactly: a returned id carries FlatStore's score.
    same = a_ids[:, 0] == f_ids[:, 0]
    np.testing.assert_allclose(a_scores[same, 0], f_scores[same, 0], rtol=1e-5)
    assert np.all(np.diff(a_scores, axis=1) <= 1e-6)  # best first
    # A rough search (candidates for verification) re-scores fewer graph candidates but
    # still finds the nearest neighbours, with exact scores for what it returns.
    r_scores, r_ids = ann.search(queries, 3, rough=True)
    assert _recall(f_ids[:, :3], r_ids) >= 0.9
    assert flat.search(queries, 3, rough=True)[1].tolist() == f_ids[:, :3].tolist()


def test_add_replace_and_remove(data):
    ids, vectors, queries = data
    ann = _ann(ids, vectors)
    gone = ids[:100]
    ann.remove(np.concatenate([gone, [999_999_999]]))  # unknown ids are ignored
    assert len(ann) == N_VECTORS - 100
    _, found = ann.search(vectors[:100], 5)
    assert not np.isin(found, gone).any()
    ann.add(ids[:1], vectors[:1])  # back again
    ann.add(ids[:1], vectors[:1])  # re-adding replaces, never duplicates
    assert len(ann) == N_VECTORS - 99
    _, found = ann.search(vectors[:1], 1)
    assert found[0, 0] == ids[0]


@pytest.mark.parametrize("step", [3, 1], ids=["code-scan", "graph-oversampled"])
def test_label_filter_paths(data, built, step):
    ids, vectors, queries = data
    ann, flat = built, FlatStore(ids, vectors)
    small = ids[::20]  # 150 ids <= rerank: scored exactly
    assert np.array_equal(ann.search(queries, 10, small)[1], flat.search(queries, 10, small)[1])
    # 1000 ids <= scan_max: ranked by codes; 2999 > scan_max: graph, oversampled, filtered
    allowed = ids[::step][: len(ids) - 1]
    _, a_ids = ann.search(queries, 10, allowed)
    _, f_ids = flat.search(queries, 10, allowed)
    assert np.isin(a_ids, allowed).all()
    assert _recall(f_ids, a_ids) >= 0.95
    tiny = ids[:3]  # fewer than k allowed
    assert ann.search(queries[:2], 10, tiny)[1].shape == (2, 3)


def test_small_store_is_exact_until_calibrated(data):
    ids, vectors, queries = data
    ann = _ann(ids[:100], vectors[:100])  # below calibrate_at: the exact buffer
    assert ann._index is None
    assert np.array_equal(
        ann.search(queries, 5)[1], FlatStore(ids[:100], vectors[:100]).search(queries, 5)[1]
    )


def _catalogue_with(path, vectors: np.ndarray) -> Catalogue:
    catalogue = Catalogue(path)
    with catalogue.transaction() as db:
        for i, vector in enumerate(vectors):
            image_id = Catalogue.insert_image(
                db, NewImage(f"hash{i}", 1, 1, vector, [1, 2], [0.6, 0.3])
            )
            Catalogue.upsert_file(db, FileStat(f"/photos/{i}.jpg", 1, 1), image_id)
    return catalogue


@pytest.fixture(scope="module")
def catalogue_vectors(real_vectors) -> np.ndarray:
    """Enough vectors for the default codec calibration (4,096), so a graph is built."""
    return _augment(real_vectors, 5000, seed=3)


def test_save_reopen_memory_mapped_and_stale_repair(data, catalogue_vectors, tmp_path, monkeypatch):
    _, _, queries = data
    catalogue = _catalogue_with(tmp_path / "catalogue.sqlite", catalogue_vectors)
    settings = Settings(ann_threshold=1000)
    store = open_store(tmp_path, catalogue, settings)
    assert isinstance(store, AnnStore) and (tmp_path / "ann.usearch").exists()
    expected = store.search(queries, 10)

    reopened = open_store(tmp_path, catalogue, settings)  # current: mapped, not rebuilt
    assert reopened._viewed is not None
    np.testing.assert_array_equal(reopened.search(queries, 10)[1], expected[1])

    # The catalogue moves on without the store (an interrupted run): repaired by id diff.
    with catalogue.transaction() as db:
        removed = Catalogue.delete_locations(db, [f"/photos/{i}.jpg" for i in range(50)])
        new_id = Catalogue.insert_image(db, NewImage("new", 1, 1, queries[0], [1], [1.0]))
        Catalogue.upsert_file(db, FileStat("/photos/new.jpg", 1, 1), new_id)
    monkeypatch.setattr(AnnStore, "build", classmethod(lambda *a, **k: pytest.fail("rebuilt")))
    repaired = open_store(tmp_path, catalogue, settings)
    assert set(repaired.ids()) == set(CatalogueVectors(catalogue).ids())
    _, top = repaired.search(queries[:1], 1)
    assert top[0, 0] == new_id and not np.isin(top, removed).any()
    monkeypatch.undo()

    # Another transform (e.g. a re-learned centre) cannot be repaired: rebuilt.
    rebuilt = open_store(tmp_path, catalogue, settings, fingerprint="another centre")
    assert rebuilt._viewed is None and len(rebuilt) == len(repaired)
    catalogue.close()


def test_damaged_file_is_rebuilt(data, catalogue_vectors, tmp_path):
    _, _, queries = data
    catalogue = _catalogue_with(tmp_path / "catalogue.sqlite", catalogue_vectors)
    settings = Settings(ann_threshold=500)
    open_store(tmp_path, catalogue, settings)
    (tmp_path / "ann.usearch").write_bytes(b"not an index")
    store = open_store(tmp_path, catalogue, settings)
    assert len(store) == 5000 and store.search(queries, 3)[1].shape == (len(queries), 3)
    catalogue.close()


def test_index_above_threshold_uses_ann_end_to_end(photos, tmp_path):
    settings = Settings(ann_threshold=10)
    with lookalike.Index.open(tmp_path / "index", settings=settings) as index:
        index.add([photos])
        assert isinstance(index.store.inner, AnnStore)
        query = photos / "watch" / "image_0003.jpg"
        result = index.search(query, k=5)
        assert result.matches[0].path == str(query)
        filtered = index.search(query, k=5, labels=["analog clock"])
        assert all("analog clock" in m.labels for m in filtered.matches)
    with lookalike.Index.open(tmp_path / "index", settings=settings) as index:
        assert index.search(query, k=1).matches[0].path == str(query)


def test_int8_model_agrees_with_float(tmp_path):
    from lookalike.embed.embedder import Embedder
    from lookalike.images import load_image

    images = [
        load_image(caltech_image(label, n), target_size=224)
        for label in SUBSET_CLASSES
        for n in (1, 2)
    ]
    float_embedder = Embedder(Settings(model="lite0"))
    fp32 = float_embedder.embed_images(images)
    int8_embedder = Embedder(Settings(model="lite0-int8"))
    assert int8_embedder.model_id != float_embedder.model_id  # never mixed in one index
    int8 = int8_embedder.embed_images(images)
    agree = np.mean(fp32.label_ids[:, 0] == int8.label_ids[:, 0])
    assert agree >= 0.8
    cosine = (fp32.vectors * int8.vectors).sum(axis=1)
    assert cosine.mean() >= 0.97


def test_shipped_int8_ranges_are_the_measured_ones():
    """The package's int8 ranges are what measuring the sample photos gives (reproducible)."""
    from lookalike.embed.quantize import calibration_images, load_ranges, measure_ranges
    from lookalike.embed.registry import get_model

    spec = get_model("lite0")
    measured = measure_ranges(
        spec.builder(spec.loader(spec.weights_path())), spec.preprocess, calibration_images()
    )
    shipped = load_ranges("lite0")
    assert measured.keys() == shipped.keys() and len(shipped) > 50
    np.testing.assert_allclose(
        np.array([measured[k] for k in shipped]), np.array(list(shipped.values())), rtol=1e-4, atol=1e-4
    )
