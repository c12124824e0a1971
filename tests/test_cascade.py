"""The cascade (lookalike.query.cascade, .stages): the first cosine search, the stages in
order, verified copies first, cosine scores. Through ``Index.rank`` on the shared index."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import caltech_image
from lookalike import SearchOptions
from lookalike.query.cascade import Cascade, Cosine, Ranked
from lookalike.query.spec import parse
from lookalike.query.stages import Query, Ranking

PIPELINES = ["cosine", "cosine,qe", "cosine,diffusion", "cosine,auto,verify:20,words:10,regions:10"]


def _query(index, path):
    picture = Image.open(path).convert("RGB")
    return index.embed([picture]).vectors, picture


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_rank_gives_what_search_returns(index, built_index, pipeline):
    _, photos = built_index
    for path in (photos / "watch" / "image_0002.jpg", caltech_image("Motorbikes", 30)):
        vectors, picture = _query(index, path)
        result = index.search(picture, 6, pipeline=pipeline)
        ranked = index.rank(vectors, SearchOptions(k=6, pipeline=pipeline), pictures=[lambda p=picture: p])[0]
        assert isinstance(ranked, Ranked) and ranked.route == "global"
        assert ranked.ids.tolist() == [m.image_id for m in result.matches]
        assert ranked.scores.tolist() == pytest.approx([m.score for m in result.matches])


@pytest.mark.parametrize("pipeline", PIPELINES[1:])
def test_scores_stay_cosines_whatever_the_order(index, built_index, pipeline):
    """Re-ranking and verification change the order, never a match's score: it stays the
    cosine similarity to the query, also for matches beyond the first search's depth."""
    _, photos = built_index
    for name in ("watch/image_0003.jpg", "Leopards/image_0005.jpg", "airplanes/image_0008.jpg"):
        vectors, picture = _query(index, photos / name)
        query = index.store.transform.apply(vectors)[0]
        for k in (3, 10):
            ranked = index.rank(vectors, SearchOptions(k=k, pipeline=pipeline), pictures=[lambda p=picture: p])[0]
            assert len(ranked.ids) == k
            expected = index.store.vectors(ranked.ids) @ query
            np.testing.assert_allclose(ranked.scores, expected, atol=1e-4)
    # The same through search: the re-ranked matches carry the plain ranking's scores.
    query = photos / "watch" / "image_0003.jpg"
    plain = {m.image_id: m.score for m in index.search(query, 20, rerank="none", verify=0).matches}
    for m in index.search(query, 10, pipeline=pipeline).matches:
        assert m.score == pytest.approx(plain[m.image_id], abs=1e-4)


@pytest.mark.parametrize("pipeline", PIPELINES[1:])
def test_exclude_query_leaves_the_indexed_query_out(index, built_index, pipeline):
    _, photos = built_index
    for name in ("sunflower/image_0001.jpg", "Motorbikes/image_0005.jpg"):
        image_id = index.catalogue.image_for_location(str(photos / name))
        vectors = index.catalogue.vectors_for([image_id])
        options = SearchOptions(k=5, pipeline=pipeline)
        kept = index.rank(vectors, options, query_ids=[image_id])[0]
        assert kept.ids[0] == image_id  # its own file is read for verification, if any
        left_out = index.rank(vectors, options, query_ids=[image_id], exclude_query=True)[0]
        assert image_id not in left_out.ids.tolist() and len(left_out.ids) == 5
        assert image_id not in left_out.inliers


def test_exclude_query_with_cosine_alone_keeps_the_rest_in_order(index, built_index):
    _, photos = built_index
    image_id = index.catalogue.image_for_location(str(photos / "sunflower" / "image_0001.jpg"))
    vectors = index.catalogue.vectors_for([image_id])
    options = SearchOptions(k=5, pipeline="cosine")
    everything = index.rank(vectors, options.with_(k=6))[0].ids.tolist()
    assert everything[0] == image_id
    left_out = index.rank(vectors, options, query_ids=[image_id], exclude_query=True)[0]
    assert left_out.ids.tolist() == everything[1 : 1 + len(left_out.ids)]


@pytest.mark.parametrize("pipeline", ["cosine", "cosine,verify:2"])
def test_exclude_query_still_returns_k_matches(index, built_index, pipeline):
    _, photos = built_index
    image_id = index.catalogue.image_for_location(str(photos / "sunflower" / "image_0001.jpg"))
    vectors = index.catalogue.vectors_for([image_id])
    options = SearchOptions(k=5, pipeline=pipeline)
    left_out = index.rank(vectors, options, query_ids=[image_id], exclude_query=True)[0]
    assert len(left_out.ids) == 5


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_min_score_drops_weak_matches_and_keeps_the_order(index, built_index, pipeline):
    _, photos = built_index
    vectors, picture = _query(index, photos / "airplanes" / "image_0002.jpg")
    options = SearchOptions(k=40, pipeline=pipeline)
    everything = index.rank(vectors, options, pictures=[lambda: picture])[0]
    strong = index.rank(vectors, options.with_(min_score=0.5), pictures=[lambda: picture])[0]
    assert 1 <= len(strong.ids) < len(everything.ids)
    assert np.all(strong.scores >= 0.5)
    assert strong.pairs() == [(i, s) for i, s in everything.pairs() if s >= 0.5]
    assert index.rank(vectors, options.with_(min_score=1.01))[0].ids.tolist() == []


def test_cosine_alone_is_the_store_search(index, built_index):
    _, photos = built_index
    vectors, _ = _query(index, photos / "Leopards" / "image_0001.jpg")
    query = index.store.transform.apply(vectors)[0]
    ranked = Cascade([Cosine()]).rank(Query(query, 8), index.folder)
    scores, ids = index.store.search(vectors, 8)
    assert ranked.ids.tolist() == ids[0].tolist()
    np.testing.assert_allclose(ranked.scores, scores[0], atol=1e-6)
    assert ranked.inliers == {}
    assert parse("cosine").rank(Query(query, 8), index.folder).ids.tolist() == ids[0].tolist()


def test_verified_candidates_come_first():
    order = np.array([1, 2, 3, 4, 5])
    ranking = Ranking(order, np.linspace(0.9, 0.5, 5), order, min_inliers=15)
    assert ranking.verified_first() is order  # nothing checked: unchanged
    ranking.inliers.update({4: 16, 2: 5, 5: 40, 3: 16})
    # Verified ones (15+) first, most inliers first, ties in the order they were checked.
    assert ranking.verified_first().tolist() == [5, 4, 3, 1, 2]
    ranking.inliers.clear()
    ranking.inliers.update({1: 3, 2: 14})
    assert ranking.verified_first().tolist() == [1, 2, 3, 4, 5]  # class-level: left alone


def test_query_skips_one_more_when_it_leaves_itself_out():
    vector = np.zeros(4, np.float32)
    assert Query(vector, 5).skip == 0 and Query(vector, 5, exclude=7).skip == 1
    calls = []
    query = Query(vector, 5, picture=lambda: calls.append(1) or "picture")
    assert query.image() == "picture" and query.image() == "picture" and calls == [1]  # once
    assert Query(vector, 5).image() is None


def test_prepare_loads_what_the_stages_read_before_any_search(built_index, monkeypatch):
    """A search loads the graph and the word index while its query is embedded; a pipeline
    that does not read them leaves them unloaded."""
    import lookalike
    from lookalike.index.folder import IndexFolder

    read: list[str] = []

    def recording(name):
        original = getattr(IndexFolder, name)

        def method(self, *args, **kwargs):
            read.append(name)
            return original(self, *args, **kwargs)
        return method

    for name in ("graph", "word_index"):
        monkeypatch.setattr(IndexFolder, name, recording(name))
    with lookalike.Index.open(built_index[0], create=False) as index:
        parse("cosine,qe,verify:20").prepare(index.folder)
        assert read == []
        parse("cosine,diffusion,words:10").prepare(index.folder)
        assert read == ["graph", "word_index"]


def test_query_features_are_those_the_stages_would_extract():
    """A search extracts the query's local features while it waits for the embedding; they
    must be exactly what the verifying stages would extract themselves, and nothing when
    the pipeline verifies nothing or the picture is too small to verify."""
    from lookalike.settings import VerifyParams
    from lookalike.verify import extract

    params = VerifyParams()
    photo = Image.open(caltech_image("Motorbikes", 30)).convert("RGB")
    tiny = photo.resize((params.min_side - 1, params.min_side - 1))
    found = parse("cosine,auto,verify:20").query_features([photo, tiny], params)
    expected = extract(photo, params)
    assert np.array_equal(found[0].points, expected.points) and found[1] is None
    assert np.array_equal(found[0].descriptor_array(), expected.descriptor_array())
    assert parse("cosine,qe").query_features([photo], params) == [None]
