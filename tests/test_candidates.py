"""Which images a query may match (lookalike.query.candidates): label filters and the
2019 script's category routing, with its fallback to the whole collection."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import PER_CLASS, class_of
from lookalike.embed.labels import label_ids
from lookalike.errors import LookalikeError
from lookalike.query.candidates import candidate_ids, resolve_label


def test_resolve_label():
    assert resolve_label("cheetah") == {label_ids()["cheetah"]}
    assert resolve_label("  Tabby ") == {label_ids()["tabby"]}  # case and spaces do not matter
    with pytest.raises(LookalikeError, match=r"unknown label 'leopar': did you mean: leopard, "):
        resolve_label("leopar")
    with pytest.raises(LookalikeError, match=r"unknown label 'xyzzy': \(`lookalike tags PREFIX` lists"):
        resolve_label("xyzzy")


def test_candidate_ids(index):
    catalogue = index.catalogue
    cheetahs = catalogue.image_ids_with_labels([label_ids()["cheetah"]])
    assert len(cheetahs) == PER_CLASS
    assert candidate_ids(catalogue) == (None, "global")  # every image
    allowed, route = candidate_ids(catalogue, label=["cheetah"])
    assert route == "global" and allowed.tolist() == cheetahs.tolist()
    mopeds = catalogue.image_ids_with_labels([label_ids()["moped"]])
    both, _ = candidate_ids(catalogue, label=["cheetah", "moped"])
    assert sorted(both.tolist()) == sorted(set(cheetahs.tolist()) | set(mopeds.tolist()))
    # Routing: the images sharing one of the query's labels, while there are k of them...
    query_labels = np.array([label_ids()["cheetah"]])
    routed, route = candidate_ids(catalogue, route="categories", query_label_ids=query_labels, k=3)
    assert route == "categories" and routed.tolist() == cheetahs.tolist()
    # ...intersected with a label filter, and all of the filter's when too few are left.
    routed, route = candidate_ids(catalogue, label=["moped"], route="categories",
                                  query_label_ids=query_labels, k=1)
    assert route == "categories+global" and routed.tolist() == mopeds.tolist()
    assert candidate_ids(catalogue, route="categories", query_label_ids=query_labels, k=9) == (
        None, "categories+global")


def test_label_filter(index, built_index):
    _, photos = built_index
    result = index.search(photos / "watch" / "image_0001.jpg", k=50, label=["cheetah"])
    assert result.matches
    assert all("cheetah" in m.labels for m in result.matches)
    assert {class_of(m.path) for m in result.matches} == {"Leopards"}
    single = index.search(photos / "watch" / "image_0001.jpg", k=50, label="cheetah")
    assert [m.image_id for m in single.matches] == [m.image_id for m in result.matches]
    with pytest.raises(LookalikeError, match="unknown label"):
        index.search(photos / "watch" / "image_0001.jpg", label=["no such thing"])


def test_category_routing_and_fallback(index, built_index):
    _, photos = built_index
    query = photos / "Leopards" / "image_0002.jpg"
    routed = index.search(query, k=3, route="categories")
    assert routed.route == "categories"
    assert all(set(m.labels) & set(routed.query_labels) for m in routed.matches)
    # Asking for more than the categories hold falls back to the global ranking
    # instead of failing (the 2019 script raised an error here).
    everything = index.search(query, k=40, route="categories")
    assert everything.route == "categories+global"
    assert len(everything.matches) == 40
    assert index.search(query, k=3).route == "global"
