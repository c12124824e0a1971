"""Re-ranking stages (lookalike.query.rerank): query expansion, diffusion, pin_first, and
``auto``, which picks one by collection size. Real photos where a collection is needed."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import lookalike
from conftest import PER_CLASS, SUBSET_CLASSES, caltech_image, copy_subset
from lookalike import SearchOptions
from lookalike.embed.pooling import l2_normalise
from lookalike.index.graph import KnnGraph
from lookalike.progress import Progress
from lookalike.query.rerank import Auto, Diffusion, QueryExpansion, expand_query, pin_first
from lookalike.settings import RerankParams, Settings


def _classes(ix) -> dict[int, str]:
    ids, _ = ix.catalogue.all_vectors()
    return {i: Path(locs[0]).parent.name for i, locs in ix.catalogue.locations_for(ids.tolist()).items()}


def _collection(images: int, **rerank) -> SimpleNamespace:
    """What the stages read of an index, for those that only read settings and its size."""
    return SimpleNamespace(settings=Settings(rerank=RerankParams(**rerank)), store=range(images))


def test_expand_query_adds_the_best_matches():
    query = l2_normalise(np.array([[1.0, 0.0, 0.0]], np.float32))[0]
    vectors = np.eye(3, dtype=np.float32)[[1, 2, 0]]
    scores = np.array([0.5, -0.2, 0.1], np.float32)
    expanded = expand_query(query, scores, vectors, n=2, alpha=3.0)
    # L2(q + sum max(s_i, 0)^alpha x_i): a negative score adds nothing.
    expected = l2_normalise((query + 0.5**3 * vectors[0])[None, :])[0]
    np.testing.assert_allclose(expanded, expected, atol=1e-6)
    assert np.linalg.norm(expanded) == pytest.approx(1.0)
    assert expand_query(query, scores[:0], vectors[:0], n=3, alpha=3.0) is query  # nothing found


def test_stage_specs_and_params():
    collection = _collection(10, qe_n=3, depth=3000)
    assert QueryExpansion().spec == "qe" and QueryExpansion(5).spec == "qe:5"
    assert QueryExpansion().depth(collection) == 3 and QueryExpansion(5).depth(collection) == 5
    assert QueryExpansion(5).params(collection).qe_alpha == RerankParams().qe_alpha
    assert Diffusion().spec == "diffusion" and Diffusion(800).spec == "diffusion:800"
    assert Diffusion().depth(collection) == 3000 and Diffusion(800).depth(collection) == 800
    assert Auto().spec == "auto" and {s.kind for s in (Auto(), Diffusion(), QueryExpansion())} == {"rerank"}


@pytest.mark.parametrize(
    ("images", "expected"), [(9, QueryExpansion()), (10, Diffusion()), (20, Diffusion()), (21, QueryExpansion())]
)
def test_auto_resolves_by_collection_size(images, expected):
    collection = _collection(images, min_images=10, max_images=20)
    assert Auto().resolve(collection) == expected
    assert Auto().depth(collection) == expected.depth(collection)


def test_diffusion_reorders_by_graph():
    # Two clusters; the query's first match is an outlier linked to cluster B, but most of
    # its top matches are in cluster A, so diffusion ranks cluster A first.
    ids = np.arange(6)
    nbrs = np.array([[1, 2], [0, 2], [0, 1], [4, 5], [3, 5], [3, 4]])
    sims = np.full((6, 2), 0.9, dtype=np.float32)
    graph = KnnGraph(ids, nbrs, sims)
    first = np.array([3, 0, 1, 2, 4, 5])
    scores = np.array([0.9, 0.85, 0.84, 0.83, 0.2, 0.2], dtype=np.float32)
    order = graph.diffuse(first, scores, RerankParams(diffusion_seeds=4))
    assert set(order[:3].tolist()) == {0, 1, 2}
    # The product keeps the cosine top-1 first (a copy of the query may stand alone).
    pinned = pin_first(order, first)
    assert pinned[0] == 3 and set(pinned[1:4].tolist()) == {0, 1, 2} and len(pinned) == len(order)
    assert pin_first(order, first, exclude=3)[0] == 0
    assert pin_first(order, first[:0]) is order  # no cosine ranking: nothing to pin
    # Diffusion re-orders the first ``depth`` ids; any beyond keep their order after them.
    shallow = graph.diffuse(first, scores, RerankParams(diffusion_seeds=4, depth=4))
    assert set(shallow[:4].tolist()) == set(first[:4].tolist()) and shallow[4:].tolist() == [4, 5]
    assert 3 not in graph.diffuse(first, scores, RerankParams(), exclude=3).tolist()


def test_sparse_diffusion_matches_the_dense_formula(index):
    """Diffusion walks only the mutual links among its candidates (sparse, so ``depth`` can
    be large); its ranking must be the textbook one: f = seeds + alpha * D^-1/2 A D^-1/2 f,
    A = min(L, L^T) of the links' weights**gamma, over the real test index's graph."""
    graph = index.graph()
    params = RerankParams(depth=len(graph) - 1)
    ids, vectors = graph.ids, index.store.vectors(graph.ids)
    first = ids[np.argsort(-(vectors @ vectors[3]))][1:]  # image 3's ranking, itself left out
    scores = np.sort(-(vectors @ vectors[3]))[1:] * -1
    linked, weights = graph.links(params.graph_k, params.hub_k)
    place = {int(i): p for p, i in enumerate(first)}
    dense = np.zeros((len(first), len(first)))
    for row, image_id in enumerate(ids):
        for other, w in zip(linked[row], weights[row], strict=True):
            if int(image_id) in place and int(other) in place and np.isfinite(w):
                dense[place[int(image_id)], place[int(other)]] = max(w, 0) ** params.gamma
    dense = np.minimum(dense, dense.T)
    assert (dense > 0).sum() > 5 * len(first)  # a real graph, many mutual links
    inv = np.where(dense.sum(1) > 0, 1 / np.sqrt(np.maximum(dense.sum(1), 1e-12)), 0)
    seeds = np.zeros(len(first))
    seeds[: params.diffusion_seeds] = np.maximum(scores[: params.diffusion_seeds], 0) ** params.gamma
    f = seeds.copy()
    for _ in range(params.iterations):
        f = params.diffusion_alpha * (inv[:, None] * dense * inv[None, :]) @ f + seeds
    expected = first[np.argsort(-f, kind="stable")]
    got = graph.diffuse(first, scores, params)
    assert np.array_equal(got[:20], expected[:20])
    assert sorted(got.tolist()) == sorted(first.tolist())


@pytest.mark.parametrize("method", ["qe", "diffusion"])
def test_reranking_keeps_the_image_first_and_class_precision(index, method):
    classes = _classes(index)
    precision = {}
    for name in ("none", method):
        p = []
        for image_id, label in classes.items():
            result = index.search_by_id(image_id, PER_CLASS, rerank=name, verify=0)
            assert result.matches[0].image_id == image_id  # an indexed image finds itself first
            assert [m.rank for m in result.matches] == list(range(1, PER_CLASS + 1))
            p.append(np.mean([classes[m.image_id] == label for m in result.matches[1:]]))
        precision[name] = float(np.mean(p))
    assert precision[method] >= precision["none"] - 1e-9, precision


def test_diffusion_on_too_small_a_graph_is_query_expansion(index, built_index):
    # 40 images, fewer than RerankParams.min_images: a graph of them means little.
    _, photos = built_index
    for query in (photos / "watch" / "image_0003.jpg", caltech_image("Leopards", 20)):
        diffused = index.search(query, 10, rerank="diffusion", verify=0).matches
        expanded = index.search(query, 10, rerank="qe", verify=0).matches
        assert [m.image_id for m in diffused] == [m.image_id for m in expanded]


def test_auto_reranking_diffuses_within_its_size_range(tmp_path):
    photos = copy_subset(tmp_path / "photos", classes=SUBSET_CLASSES[:3])
    query = caltech_image("Leopards", 20)  # not indexed
    settings = Settings(rerank=RerankParams(min_images=10))
    with lookalike.Index.open(tmp_path / "index", settings=settings) as ix:
        log = io.StringIO()
        ix.add([photos], progress=Progress(stream=log, interval=0))
        assert (tmp_path / "index" / KnnGraph.FILE).exists()  # built by add, not by a query
        lines = log.getvalue().splitlines()  # files, then the graph as a stage of its own
        assert lines[0].startswith("indexing:") and lines[-1].startswith("linking neighbours: 24/24 images")
        assert ix.rerank_method() == "diffusion"
        assert ix.rerank_method(SearchOptions(rerank="qe")) == "qe"
        default = [m.image_id for m in ix.search(query, 10, verify=0).matches]
        diffused = [m.image_id for m in ix.search(query, 10, rerank="diffusion", verify=0).matches]
        assert default == diffused
        expanded = [m.image_id for m in ix.search(query, 10, rerank="qe", verify=0).matches]
        assert diffused != expanded  # a real diffusion, not the small-graph fallback
        ix.remove([photos / "airplanes"])  # the graph follows removals at once
        graph, _ = KnnGraph.load(tmp_path / "index", ix.store.transform.fingerprint)
        assert set(graph.ids.tolist()) == set(ix.catalogue.all_vectors()[0].tolist())
    for limits in ({"max_images": 10}, {}):  # too many / too few images: qe
        folder = tmp_path / f"qe{len(limits)}"
        with lookalike.Index.open(folder, settings=Settings(rerank=RerankParams(**limits))) as ix:
            ix.add([photos])
            assert ix.rerank_method() == "qe" and not (folder / KnnGraph.FILE).exists()
            default = [m.image_id for m in ix.search(query, 10, verify=0).matches]
            assert default == [m.image_id for m in ix.search(query, 10, rerank="qe", verify=0).matches]
