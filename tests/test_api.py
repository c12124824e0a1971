"""The :class:`lookalike.Index` facade end to end, on the shared real index (5 classes x 8
photos): search, search_many, search_by_id, rank, pipeline, info and friends."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import lookalike
from conftest import PER_CLASS, SUBSET_CLASSES, caltech_image, class_of
from lookalike import SearchOptions
from lookalike.errors import LookalikeError
from lookalike.index.catalogue import Catalogue
from lookalike.index.folder import IndexFolder
from lookalike.index.graph import KnnGraph
from lookalike.index.words import InvertedFile

TOTAL = len(SUBSET_CLASSES) * PER_CLASS


def test_nearest_neighbour_is_itself(index, built_index):
    _, photos = built_index
    for label in SUBSET_CLASSES:
        query = photos / label / "image_0003.jpg"
        result = index.search(query, k=5)
        assert result.query == str(query)
        assert result.matches[0].path == str(query)
        assert result.matches[0].score == pytest.approx(1.0, abs=2e-3)
        # Same-class neighbours dominate the top of the ranking.
        assert sum(class_of(m.path) == label for m in result.matches[1:]) >= 3


def test_top_k_up_to_collection_size(index, built_index):
    _, photos = built_index
    result = index.search(photos / "watch" / "image_0001.jpg", k=10_000)
    assert len(result.matches) == TOTAL
    assert [m.rank for m in result.matches] == list(range(1, TOTAL + 1))
    # Scores are cosines; the plain ranking orders by them (re-ranking may reorder).
    plain = index.search(photos / "watch" / "image_0001.jpg", k=10_000, rerank="none", verify=0)
    scores = [m.score for m in plain.matches]
    assert scores == sorted(scores, reverse=True)
    assert {m.image_id for m in plain.matches} == {m.image_id for m in result.matches}


def test_query_from_outside_the_index(index):
    result = index.search(caltech_image("Leopards", 40), k=5)
    assert all(class_of(m.path) == "Leopards" for m in result.matches)
    # The query's own predicted labels (top 5) name what it shows.
    assert len(result.query_labels) == 5
    assert any("leopard" in label.lower() for label in result.query_labels), result.query_labels


def test_identical_vectors_for_identical_pixels(index, built_index):
    _, photos = built_index
    path = photos / "Motorbikes" / "image_0005.jpg"
    a = index.embed([path]).vectors[0]
    b = index.embed([path.read_bytes()]).vectors[0]
    c = index.embed([Image.open(path)]).vectors[0]
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert float(a @ c) > 0.999


def test_search_many_is_search_per_query_in_one_batch(index, built_index):
    _, photos = built_index
    queries = [photos / "watch" / "image_0002.jpg", caltech_image("sunflower", 20)]
    many = index.search_many(queries, 4, verify=0)
    assert [r.query for r in many] == [str(q) for q in queries]
    for query, result in zip(queries, many, strict=True):
        alone = index.search(query, 4, verify=0)
        assert [(m.image_id, m.rank) for m in result.matches] == [
            (m.image_id, m.rank) for m in alone.matches
        ]
        assert [m.score for m in result.matches] == pytest.approx([m.score for m in alone.matches])
    named = index.search_many([Image.open(queries[0]), queries[0].read_bytes()], 1,
                              names=["first", "second"])
    assert [r.query for r in named] == ["first", "second"]
    assert index.search_many([Image.open(queries[0])], 1)[0].query == "<image>"


def test_options_as_an_object_or_keywords(index, built_index):
    _, photos = built_index
    query = photos / "Leopards" / "image_0004.jpg"
    options = SearchOptions(k=3, rerank="none", verify=0)
    by_object = index.search(query, options=options)
    by_keywords = index.search(query, 3, rerank="none", verify=0)
    assert [m.image_id for m in by_object.matches] == [m.image_id for m in by_keywords.matches]
    assert len(by_object.matches) == 3
    # Keywords win over the object, k included.
    wider = index.search(query, 6, options=options)
    assert len(wider.matches) == 6
    assert [m.image_id for m in wider.matches[:3]] == [m.image_id for m in by_object.matches]
    filtered = index.search(query, options=options, label="cheetah").matches
    assert len(filtered) == 3 and all("cheetah" in m.labels for m in filtered)
    with pytest.raises(LookalikeError, match="unknown search option labels"):
        index.search(query, labels=["cheetah"])  # the old keyword is gone, not ignored


def test_search_by_id_is_more_like_this(index, built_index):
    _, photos = built_index
    path = photos / "airplanes" / "image_0004.jpg"
    image_id = index.catalogue.image_for_location(str(path))
    result = index.search_by_id(image_id, 5)
    assert result.query == f"image:{image_id}"
    assert result.matches[0].image_id == image_id and result.matches[0].path == str(path)
    assert result.matches[0].score == pytest.approx(1.0, abs=2e-3)
    assert all(class_of(m.path) == "airplanes" for m in result.matches)
    assert result.query_labels  # the stored labels of the image
    # The same ranking as a search with the file itself.
    searched = index.search(path, 5)
    assert [m.image_id for m in result.matches] == [m.image_id for m in searched.matches]
    with pytest.raises(LookalikeError, match="no indexed image with id 987654"):
        index.search_by_id(987654)


def test_rank_is_the_ranking_behind_search(index, built_index):
    _, photos = built_index
    query = Image.open(photos / "sunflower" / "image_0006.jpg").convert("RGB")
    result = index.search(query, 7)
    embedded = index.embed([query])
    ranked = index.rank(embedded.vectors, SearchOptions(k=7), label_ids=embedded.label_ids,
                        pictures=[lambda: query])
    assert len(ranked) == 1
    assert ranked[0].ids.tolist() == [m.image_id for m in result.matches]
    assert ranked[0].scores.tolist() == pytest.approx([m.score for m in result.matches])
    assert ranked[0].pairs() == list(zip(ranked[0].ids.tolist(), ranked[0].scores.tolist(),
                                         strict=True))
    assert {m.image_id: m.inliers for m in result.matches} == {
        i: ranked[0].inliers.get(i) for i in ranked[0].ids.tolist()
    }
    # One vector or several; without options, the defaults (k=10).
    assert len(index.rank(embedded.vectors[0])[0].ids) == 10
    assert len(index.rank(np.vstack([embedded.vectors] * 3), SearchOptions(k=2))) == 3


def test_pipeline_and_rerank_method(index):
    assert index.pipeline().spec == index.settings.pipeline == lookalike.Settings().pipeline
    assert index.pipeline(SearchOptions(pipeline="cosine,qe")).spec == "cosine,qe"
    # The shorthands edit the pipeline asked for (or the index's).
    assert index.pipeline(SearchOptions(verify=0)).spec == "cosine,auto"
    assert index.pipeline(SearchOptions(pipeline="cosine,qe:5", verify=3)).spec == "cosine,qe:5,verify:3"
    with pytest.raises(LookalikeError, match="unknown stage 'magic'"):
        index.pipeline(SearchOptions(pipeline="cosine,magic"))
    # 40 images are too few for diffusion: auto resolves to query expansion.
    assert index.rerank_method() == "qe"
    assert index.rerank_method(SearchOptions(rerank="diffusion")) == "diffusion"
    assert index.rerank_method(SearchOptions(pipeline="cosine,verify:5")) == "none"


def test_graph_and_word_index_are_current(index):
    ids = index.catalogue.all_vectors()[0]
    graph = index.graph()
    assert isinstance(graph, KnnGraph) and sorted(graph.ids.tolist()) == sorted(ids.tolist())
    assert graph.fingerprint == index.store.transform.fingerprint
    assert index.graph() is graph  # kept while the catalogue is unchanged
    words = index.word_index()
    assert isinstance(words, InvertedFile) and sorted(words.image_ids.tolist()) == sorted(ids.tolist())
    assert index.word_index() is words


def test_properties_info_and_repr(index, built_index):
    db, _ = built_index
    assert index.path == db and isinstance(index.folder, IndexFolder)
    assert len(index) == len(index.store) == TOTAL
    assert index.query_size == max(index.embedder.input_size, index.settings.regions.size)
    assert repr(index) == f"<lookalike.Index {str(db)!r}: {TOTAL} images, lite0-int8>"
    info = index.info()
    assert info["path"] == str(db)
    assert info["images"] == info["files"] == info["images_with_local_features"] == TOTAL
    assert info["failed_files"] == 0
    assert info["store"] == "flat" and info["model"] == "lite0-int8"
    assert info["model_id"].startswith("lite0-int8") and info["format_version"] == Catalogue.VERSION
    assert info["pipeline"] == index.settings.pipeline and info["rerank"] == "qe"
    assert info["bytes_on_disk"] > 0
    assert {"label": "cheetah", "images": PER_CLASS} in info["top_labels"]
