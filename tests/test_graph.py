"""The neighbour graph (lookalike.index.graph.KnnGraph): build, sync, links, save and load,
and the graph file an index keeps current with its catalogue."""

from __future__ import annotations

import numpy as np
import pytest

import lookalike
from conftest import SUBSET_CLASSES, augment, copy_subset
from lookalike.index.files import load_with_meta, save_with_meta
from lookalike.index.graph import KnnGraph
from lookalike.index.vectors import FlatStore
from lookalike.settings import RerankParams


@pytest.fixture(scope="module")
def vectors(real_vectors) -> np.ndarray:
    return augment(real_vectors, 60, seed=4)


def _exact_neighbours(ids: np.ndarray, vectors: np.ndarray, k: int) -> dict[int, list[int]]:
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    return {int(ids[r]): ids[np.argsort(-sims[r], kind="stable")[:k]].tolist() for r in range(len(ids))}


def test_build_links_each_image_to_its_nearest(vectors):
    ids = np.arange(1, 61, dtype=np.int64) * 3
    store = FlatStore(ids, vectors)
    calls = []
    graph = KnnGraph.build(ids[::-1], store.vectors, store.search, 5, "space",
                           chunk=16, progress=lambda done, total: calls.append((done, total)))
    assert len(graph) == 60 and graph.k == 5 and graph.fingerprint == "space"
    assert graph.ids.tolist() == sorted(ids.tolist())  # rows sorted by id
    exact = _exact_neighbours(ids, vectors, 5)
    for image_id, row, sims in zip(graph.ids, graph.neighbours, graph.sims, strict=True):
        assert set(row.tolist()) == set(exact[int(image_id)]) and image_id not in row
        np.testing.assert_allclose(sims, vectors[row // 3 - 1] @ vectors[image_id // 3 - 1], atol=2e-3)
    assert calls == [(16, 60), (32, 60), (48, 60), (60, 60)]


def test_sync_follows_removals_and_additions(vectors):
    ids = np.arange(1, 61, dtype=np.int64)
    store = FlatStore(ids[:40], vectors[:40])
    graph = KnnGraph.build(ids[:40], store.vectors, store.search, 5)
    assert graph.sync(ids[:40], store.vectors, store.search) is False  # nothing changed
    # Ten removed, twenty added.
    store.remove(ids[:10])
    store.add(ids[40:], vectors[40:])
    current = ids[10:]
    assert graph.sync(current[::-1], store.vectors, store.search) is True
    assert graph.ids.tolist() == current.tolist()
    assert not np.isin(graph.neighbours, ids[:10]).any()  # no link to a removed image
    gone = graph.neighbours < 0
    assert np.all(np.isneginf(graph.sims[gone]))
    # New images get their exact neighbours among the current ones...
    exact = _exact_neighbours(current, vectors[10:], 5)
    for image_id in ids[40:]:
        row = graph.neighbours[graph.ids.tolist().index(int(image_id))]
        assert set(row.tolist()) == set(exact[int(image_id)])
    # ...and enter an older image's list where they beat its worst neighbour.
    newcomers = np.isin(graph.neighbours[: 30], ids[40:]).sum()
    assert newcomers > 0


def test_save_and_load(vectors, tmp_path):
    ids = np.arange(1, 31, dtype=np.int64)
    store = FlatStore(ids, vectors[:30])
    graph = KnnGraph.build(ids, store.vectors, store.search, 8, "space")
    assert not graph.links_saved
    graph.save(tmp_path, 7, RerankParams(graph_k=4, hub_k=2))
    assert graph.links_saved
    loaded, generation = KnnGraph.load(tmp_path, "space")
    assert generation == 7 and loaded.links_saved and loaded.fingerprint == "space"
    assert np.array_equal(loaded.ids, graph.ids) and np.array_equal(loaded.neighbours, graph.neighbours)
    assert np.array_equal(loaded.sims, graph.sims)  # kept at the file's precision in memory too
    for keep, hub_k in ((4, 2), (8, 0)):
        assert all(np.array_equal(a, b) for a, b in zip(loaded.links(keep, hub_k), graph.links(keep, hub_k), strict=True))
    assert KnnGraph.load(tmp_path, "another space") == (None, -1)  # another transform
    (tmp_path / KnnGraph.FILE).write_bytes(b"damaged")
    assert KnnGraph.load(tmp_path, "space") == (None, -1)
    assert KnnGraph.load(tmp_path / "nowhere", "space") == (None, -1)


def _mapped(array: np.ndarray) -> bool:
    """Whether ``array`` views a file's pages (no copy read into memory)."""
    while array is not None:
        if isinstance(array, np.memmap):
            return True
        array = array.base if isinstance(array, np.ndarray) else None
    return False


def test_a_loaded_graph_is_mapped_and_syncs_without_touching_its_file(vectors, tmp_path):
    ids = np.arange(1, 41, dtype=np.int64)
    store = FlatStore(ids[:30], vectors[:30])
    KnnGraph.build(ids[:30], store.vectors, store.search, 5, "space").save(tmp_path, 1)
    before = (tmp_path / KnnGraph.FILE).read_bytes()
    loaded, _ = KnnGraph.load(tmp_path, "space")
    assert _mapped(loaded.neighbours)  # a view of the file's pages, not a copy
    store.add(ids[30:], vectors[30:40])
    assert loaded.sync(ids, store.vectors, store.search) is True  # written in place
    assert np.isin(loaded.neighbours, ids[30:]).any()
    assert (tmp_path / KnnGraph.FILE).read_bytes() == before  # (copy-on-write)
    # The checked read (lookalike check) sees the same arrays as the mapped one.
    mapped, _ = load_with_meta(tmp_path / KnnGraph.FILE, ("ids", "neighbours"), mapped=True)
    read, _ = load_with_meta(tmp_path / KnnGraph.FILE, ("ids", "neighbours"))
    assert all(np.array_equal(mapped[n], read[n]) for n in ("ids", "neighbours"))


def test_hubness_corrected_links():
    # H is a hub: as close to A, B, C, D (0.70) as they are to their own partners (0.68),
    # and very close to G. Raw similarity links A to H; CSLS, which discounts images that
    # are close to their whole neighbourhood, links A to its partner B.
    names = ["A", "B", "C", "D", "H", "G"]
    sims = {("A", "B"): 0.68, ("C", "D"): 0.68, ("H", "G"): 0.95}
    sims.update({(x, "H"): 0.70 for x in "ABCD"})
    sims.update({(x, "G"): 0.40 for x in "ABCD"})
    sims.update({("A", "C"): 0.2, ("A", "D"): 0.2, ("B", "C"): 0.2, ("B", "D"): 0.2})
    full = np.eye(6)
    for (x, y), v in sims.items():
        full[names.index(x), names.index(y)] = full[names.index(y), names.index(x)] = v
    np.fill_diagonal(full, -np.inf)
    nbrs = np.argsort(-full, axis=1)[:, :5]
    graph = KnnGraph(np.arange(6), nbrs, np.take_along_axis(full, nbrs, axis=1))
    assert names[nbrs[0, 0]] == "H"  # raw: A's best neighbour is the hub
    linked, weights = graph.links(keep=1, hub_k=2)
    assert [names[i] for i in linked[:4, 0]] == ["B", "A", "D", "C"]
    r = -np.sort(-full, axis=1)[:, :2].mean(axis=1)  # mean of the 2 best similarities
    # (abs 1e-3: the graph keeps similarities at float16 precision, as its file does)
    assert weights[0, 0] == pytest.approx(0.68 - (r[0] + r[1]) / 2 + r.mean(), abs=1e-3)
    assert graph.links(keep=1, hub_k=2) is graph.links(keep=1, hub_k=2)  # computed once
    sparse = KnnGraph(np.arange(6) * 10_000, nbrs * 10_000, graph.sims)  # ids far apart
    assert np.array_equal(sparse.links(keep=1, hub_k=2)[0], linked * 10_000)


# --- the index's graph file --------------------------------------------------------------
def test_neighbour_graph_follows_adds_and_removes(tmp_path):
    photos = copy_subset(tmp_path / "photos", classes=SUBSET_CLASSES[:3])
    with lookalike.Index.open(tmp_path / "index") as ix:
        ix.add([photos / "airplanes", photos / "Leopards"])
        graph = ix.graph()
        assert sorted(graph.ids) == sorted(ix.catalogue.all_vectors()[0])
        ix.add([photos / "Motorbikes"])
        ix.remove([photos / "airplanes"])
        graph = ix.graph()
        ids = set(ix.catalogue.all_vectors()[0].tolist())
        assert set(graph.ids.tolist()) == ids
        linked = graph.neighbours[graph.neighbours >= 0]
        assert set(linked.tolist()) <= ids  # no edge to a removed image
        assert (tmp_path / "index" / KnnGraph.FILE).exists()
        saved = (tmp_path / "index" / KnnGraph.FILE).read_bytes()
    # Reopened: the saved graph is loaded, not rebuilt or rewritten.
    with lookalike.Index.open(tmp_path / "index") as ix:
        assert set(ix.graph().ids.tolist()) == ids
        assert ix.search(photos / "Leopards" / "image_0001.jpg", 3, rerank="diffusion").matches
    assert (tmp_path / "index" / KnnGraph.FILE).read_bytes() == saved


def test_neighbour_graph_stores_the_pool_and_diffusion_uses_links(index):
    graph = index.graph()
    params = RerankParams()
    assert graph.k == params.graph_pool
    linked, weights = graph.links(params.graph_k, params.hub_k)
    assert linked.shape == (len(graph), min(params.graph_k, graph.k))
    real = linked >= 0
    assert np.all(linked[real] != np.repeat(graph.ids, linked.shape[1]).reshape(linked.shape)[real])
    assert np.all(np.isfinite(weights[real])) and np.all(np.isneginf(weights[~real]))


def _mutual(graph: KnnGraph, keep: int, hub_k: int) -> tuple[np.ndarray, np.ndarray]:
    """The mutual links, worked out the slow way: graph rows of the links both ends hold,
    each weighted by the smaller of its two directions; -1 / -inf elsewhere."""
    linked, weights = graph.links(keep, hub_k)
    row_of = {int(i): r for r, i in enumerate(graph.ids)}
    weight = {(r, row_of[int(o)]): float(w) for r in range(len(graph))
              for o, w in zip(linked[r], weights[r], strict=True) if np.isfinite(w)}
    rows = np.full(linked.shape, -1, dtype=np.int64)
    both = np.full(linked.shape, -np.inf, dtype=np.float32)
    for r in range(len(graph)):
        for c, (o, w) in enumerate(zip(linked[r], weights[r], strict=True)):
            if np.isfinite(w) and (row_of[int(o)], r) in weight:
                rows[r, c] = row_of[int(o)]
                both[r, c] = min(w, weight[(row_of[int(o)], r)])
    return rows, both


def test_saved_graph_carries_its_mutual_links(index, built_index):
    """The graph file holds the default mutual links, so a new process (a CLI search) reads
    them instead of working them out; a search on an up-to-date index does not rewrite it."""
    db, photos = built_index
    graph = index.graph()
    params = RerankParams()
    file = db / KnnGraph.FILE
    loaded, generation = KnnGraph.load(db, graph.fingerprint)
    assert generation == index.catalogue.generation and loaded.links_saved
    saved, _ = load_with_meta(file, ("link_params", "link_rows", "link_weights"))
    assert saved["link_params"].tolist() == [params.graph_k, params.hub_k]
    rows, weights = saved["link_rows"], saved["link_weights"]
    expected_rows, expected_weights = _mutual(loaded, params.graph_k, params.hub_k)
    assert np.array_equal(rows, expected_rows)
    np.testing.assert_allclose(weights, expected_weights, atol=1e-6)
    kept = rows >= 0
    assert kept.sum() > 5 * len(loaded)  # many mutual links
    back = [r in rows[rows[r, c]] for r, c in zip(*np.nonzero(kept), strict=True)]
    assert all(back)  # each kept link is held by both ends
    stamp = file.stat().st_mtime_ns
    with lookalike.Index.open(db) as again:
        again.search(photos / "watch" / "image_0001.jpg", 5, rerank="diffusion", verify=0)
    assert file.stat().st_mtime_ns == stamp
    # A file written before the links were saved gets them on its first use.
    save_with_meta(file, {"generation": generation, "fingerprint": graph.fingerprint},
                   ids=loaded.ids, neighbours=loaded.neighbours, sims=loaded.sims.astype(np.float16))
    assert not KnnGraph.load(db, graph.fingerprint)[0].links_saved
    with lookalike.Index.open(db) as again:
        again.search(photos / "watch" / "image_0001.jpg", 5, rerank="diffusion", verify=0)
    assert KnnGraph.load(db, graph.fingerprint)[0].links_saved
    assert np.array_equal(load_with_meta(file, ("link_rows",))[0]["link_rows"], rows)
