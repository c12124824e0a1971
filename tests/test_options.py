"""SearchOptions (lookalike.query.options): the one carrier of per-query options, checked
when it is made, so a bad option fails before anything is embedded."""

from __future__ import annotations

import dataclasses

import pytest

from lookalike import SearchOptions
from lookalike.errors import LookalikeError
from lookalike.query.options import RERANK_METHODS, ROUTES, as_labels


def test_defaults_and_names():
    options = SearchOptions()
    assert (options.k, options.label, options.route, options.min_score) == (10, None, "global", None)
    # None: the index's settings decide (its pipeline, edited by the shorthands).
    assert options.pipeline is options.rerank is options.verify is options.words is options.regions is None
    assert SearchOptions.names() == (
        "k", "label", "route", "min_score", "pipeline", "rerank", "verify", "words", "regions"
    )
    assert SearchOptions.default("k") == 10 and SearchOptions.default("route") == "global"
    assert ROUTES == ("global", "categories")
    assert set(RERANK_METHODS) == {"auto", "diffusion", "qe", "none"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.k = 3  # type: ignore[misc]


def test_a_single_label_is_one_name_not_letters():
    assert SearchOptions(label="tabby").label == ("tabby",)
    assert SearchOptions(label="tiger cat").label == ("tiger cat",)
    assert SearchOptions(label=["tabby", " tiger cat "]).label == ("tabby", "tiger cat")
    assert SearchOptions(label=("tabby",)).label == ("tabby",)
    assert SearchOptions(label=["", "  "]).label is None  # nothing asked: no filter
    assert SearchOptions(label="").label is None
    assert as_labels("tabby") == ("tabby",) and as_labels(["a", "b"]) == ("a", "b")
    assert as_labels(None) is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"k": 0}, "k must be at least 1"),
        ({"route": "sideways"}, "unknown route 'sideways'; choose one of: global, categories"),
        ({"rerank": "magic"}, "unknown re-ranking 'magic'"),
        ({"verify": -1}, "verify must be 0"),
        ({"words": -1}, "words must be 0"),
        ({"regions": -1}, "regions must be 0"),
    ],
)
def test_bad_values_are_refused(changes, message):
    with pytest.raises(LookalikeError, match=message):
        SearchOptions(**changes)
    with pytest.raises(LookalikeError, match=message):
        SearchOptions().with_(**changes)


def test_zero_turns_a_stage_off():
    options = SearchOptions(verify=0, words=0, regions=0)
    assert (options.verify, options.words, options.regions) == (0, 0, 0)


def test_unknown_option_names_are_refused():
    with pytest.raises(LookalikeError, match="unknown search option labels; options are: k, label"):
        SearchOptions().with_(labels=["tabby"])  # the old name
    with pytest.raises(LookalikeError, match="unknown search option top, verify_top"):
        SearchOptions.from_any(None, top=3, verify_top=0)
    with pytest.raises(TypeError):
        SearchOptions(labels=["tabby"])  # type: ignore[call-arg]


def test_with_and_from_any():
    base = SearchOptions(k=5, rerank="qe")
    changed = base.with_(k=7, verify=0)
    assert (changed.k, changed.rerank, changed.verify) == (7, "qe", 0)
    assert base.k == 5  # a copy: frozen options never change
    assert base.with_(k=None, rerank=None) == base  # None leaves an option as it is
    assert base.with_(label="tabby").label == ("tabby",)  # checked like a new object
    assert SearchOptions.from_any(None) == SearchOptions()
    assert SearchOptions.from_any(base, k=2) == SearchOptions(k=2, rerank="qe")


def test_the_index_refuses_bad_options_before_embedding(index, tmp_path):
    # The query does not even exist: options are checked first.
    missing = tmp_path / "not-there.jpg"
    for changes, message in (
        ({"rerank": "magic"}, "unknown re-ranking"),
        ({"regions": -1}, "regions must be"),
        ({"words": -1}, "words must be"),
        ({"verify": -2}, "verify must be"),
        ({"labels": ["cheetah"]}, "unknown search option labels"),
    ):
        with pytest.raises(LookalikeError, match=message):
            index.search(missing, 5, **changes)
        with pytest.raises(LookalikeError, match=message):
            index.search_by_id(1, 5, **changes)
