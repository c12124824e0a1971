"""The approximate vector store (lookalike.index.ann): usearch HNSW over int8 codes.

Vectors are real: a few dozen Caltech-101 photos embedded by the product, augmented to
thousands by mixing and multiplicative noise (conftest.augment). Thresholds are set low so
the approximate path runs on small data. Opening a store from an index folder (saved,
repaired, rebuilt) is in test_stores.py. No timing assertions.
"""

from __future__ import annotations

import numpy as np
import pytest

import lookalike
from conftest import augment, catalogue_with
from lookalike.index.ann import AnnStore, CatalogueVectors, Int8Codec
from lookalike.index.rescore import rescore
from lookalike.index.vectors import FlatStore
from lookalike.settings import AnnParams, Settings

N_VECTORS = 3000
PARAMS = AnnParams(calibrate_at=500, scan_max=1500)


@pytest.fixture(scope="module")
def data(real_vectors):
    """``(ids, database vectors, query vectors)``; ids are sparse like catalogue ids."""
    vectors = augment(real_vectors, N_VECTORS, seed=1)
    queries = augment(real_vectors, 40, seed=2)
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
    c, q = codes.astype(np.float64), query_codes.astype(np.float64)  # exact for int8 codes
    d = (q**2).sum(1)[:, None] + (c**2).sum(1)[None, :] - 2 * q @ c.T
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
    assert len(ann) == N_VECTORS and ann.codec is not None  # the graph path, not the buffer
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
    # A batch is searched and re-scored together, and answers as each query alone would.
    alone = [ann.search(q, 10) for q in queries[:5]]
    assert np.array_equal(np.concatenate([i for _, i in alone]), a_ids[:5])
    assert np.array_equal(np.concatenate([s for s, _ in alone]), a_scores[:5])


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
    assert ann.codec is None
    assert np.array_equal(
        ann.search(queries, 5)[1], FlatStore(ids[:100], vectors[:100]).search(queries, 5)[1]
    )


def test_vectors_by_id_are_the_exact_ones(data, built):
    ids, vectors, _ = data
    np.testing.assert_array_equal(built.vectors(ids[[5, 2, 900]]), vectors[[5, 2, 900]])
    assert sorted(built.ids().tolist()) == ids.tolist()


def test_rescoring_nothing_proposed_gives_empty_rows(data):
    """A filtered search the index found nothing for (each query's proposals empty) answers
    empty rows, and proposals longer than one read are still all scored."""
    ids, vectors, queries = data
    source = FlatStore(ids, vectors)
    exact = lambda wanted: (wanted, source.vectors(wanted))  # noqa: E731
    scores, found = rescore(queries[:3], [ids[:0]] * 3, 10, exact)
    assert scores.shape == found.shape == (3, 0)
    scores, found = rescore(queries[:2], [ids] * 2, 10, exact)
    assert np.array_equal(found, source.search(queries[:2], 10)[1])


def test_catalogue_vectors(real_vectors, tmp_path):
    catalogue = catalogue_with(tmp_path / "catalogue.sqlite", real_vectors)
    source = CatalogueVectors(catalogue)
    assert source.ids().tolist() == list(range(1, len(real_vectors) + 1))
    found, got = source(np.array([3, 1, 999]))  # unknown ids are left out
    assert sorted(found.tolist()) == [1, 3]
    expected = real_vectors[np.asarray(found) - 1]
    np.testing.assert_allclose(got, expected, atol=1e-3)  # stored at float16
    chunks = list(source.chunks(size=16))
    assert [len(i) for i, _ in chunks] == [16, 16, len(real_vectors) - 32]
    assert np.concatenate([i for i, _ in chunks]).tolist() == source.ids().tolist()
    doubled = CatalogueVectors(catalogue, lambda v: 2 * v)(np.array([1]))[1]
    np.testing.assert_allclose(doubled, 2 * real_vectors[:1], atol=2e-3)
    catalogue.close()


def test_index_above_threshold_uses_ann_end_to_end(photos, tmp_path):
    settings = Settings(ann=AnnParams(threshold=10))
    with lookalike.Index.open(tmp_path / "index", settings=settings) as index:
        index.add([photos])
        assert isinstance(index.store.inner, AnnStore)
        query = photos / "watch" / "image_0003.jpg"
        result = index.search(query, k=5)
        assert result.matches[0].path == str(query)
        filtered = index.search(query, k=5, label="analog clock")
        assert all("analog clock" in m.labels for m in filtered.matches)
    with lookalike.Index.open(tmp_path / "index", settings=settings) as index:
        assert index.search(query, k=1).matches[0].path == str(query)


def test_a_fresh_process_adds_to_an_approximate_store_without_crashing(photos, tmp_path):
    """Adding to an index with an approximate store opens the store before the model runs;
    loading ONNX Runtime after usearch's compiled module used to kill that process with a
    segmentation fault (every collection from AnnParams.threshold images up)."""
    import subprocess
    import sys

    folders = sorted(p for p in photos.iterdir() if p.is_dir())
    settings = "Settings(ann=AnnParams(threshold=5))"  # (also in the fresh process)
    with lookalike.Index.open(tmp_path / "index", settings=Settings(ann=AnnParams(threshold=5))) as index:
        index.add(folders[:2])
        assert isinstance(index.store.inner, AnnStore)
    code = (
        "import lookalike\nfrom lookalike.settings import AnnParams, Settings\n"
        f"with lookalike.Index.open({str(tmp_path / 'index')!r}, settings={settings}) as index:\n"
        f"    print(index.add([{str(folders[2])!r}]).embedded)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) == len(list(folders[2].iterdir()))
