"""Tag search by words (lookalike.embed.tags, lookalike.query.text): words name ImageNet
classes through WordNet, and images are ranked by their real stored label probabilities
(a small Caltech index); the label filter takes the same words. CLI and REST included."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from conftest import class_of, copy_subset
from lookalike import Index, cli
from lookalike.embed.labels import label_ids
from lookalike.embed.tags import lookup, parse_text, resolve
from lookalike.errors import LookalikeError
from lookalike.server.app import ServerConfig, create_app

with warnings.catch_warnings():  # Starlette >= 1.x nags about httpx on import
    warnings.filterwarnings("ignore", message="Using `httpx`")
    from fastapi.testclient import TestClient

CLASSES = ("dalmatian", "Leopards", "car_side", "grand_piano", "helicopter")
PER_CLASS = 3


@pytest.fixture(scope="module")
def tagged(tmp_path_factory) -> tuple[Index, Path]:
    """An index of 3 photos of 5 Caltech classes: ``(index, photos)``."""
    root = tmp_path_factory.mktemp("tags")
    photos = copy_subset(root / "photos", CLASSES, PER_CLASS)
    with Index.open(root / "index") as index:
        index.add([photos])
        yield index, photos


def ids(*names: str) -> set[int]:
    return {label_ids()[n.lower()] for n in names}


# --- words -> classes -------------------------------------------------------------------
def test_synonyms_plurals_and_broader_words_name_classes():
    dog = lookup("dog").classes
    assert ids("dalmatian", "Great Dane", "Chihuahua", "toy poodle") <= dog
    assert not ids("tabby", "cheetah", "hotdog") & dog
    assert lookup("Dogs").classes == dog and lookup("domestic dog").classes == dog  # plural, synonym
    assert lookup("puppy").classes == dog and lookup("puppy").meaning == "dog"  # a kind of dog
    assert lookup("cars").classes == lookup("car").classes >= ids("sports car", "cab", "convertible")
    assert lookup("automobile").classes < lookup("car").classes  # "car" is a railway car too
    assert lookup("Leopards").classes == ids("leopard")
    assert lookup("mice").classes == lookup("mouse").classes  # WordNet's irregular plurals
    assert lookup("binocular").classes == ids("binoculars")  # a plural-only word
    assert ids("goldfinch", "hen", "bald eagle") <= lookup("bird").classes
    assert ids("sports car", "airliner", "canoe", "bicycle-built-for-two") <= lookup("vehicle").classes
    assert ids("strawberry", "banana", "acorn") <= lookup("fruit").classes
    assert ids("grand piano", "violin", "banjo") <= lookup("instrument").classes
    assert ids("airliner") <= lookup("helicopter").classes  # a kind of heavier-than-air craft
    assert lookup("cheetah").classes == ids("cheetah")  # an exact class name: that class only


def test_text_is_read_as_phrases_and_small_words_are_skipped():
    tags = parse_text("dog on a sofa")
    assert [t.meaning for t in tags] == ["dog", "sofa"]
    assert ids("studio couch") <= tags[1].classes
    assert [t.classes for t in parse_text("hot dog")] == [ids("hotdog")]  # one phrase, not two
    assert [t.shown for t in parse_text("Puppies, cars")] == ["puppies (dog)", "cars (car)"]


def test_unknown_words_get_the_closest_known_ones():
    with pytest.raises(LookalikeError, match=r"unknown word 'dgo': did you mean: dog, "):
        resolve("dgo")
    with pytest.raises(LookalikeError, match=r"unknown word 'sofaa': did you mean: sofa"):
        parse_text("dog on a sofaa")
    with pytest.raises(LookalikeError, match=r"'xyzzy': \(`lookalike tags PREFIX` lists the known"):
        parse_text("xyzzy")
    with pytest.raises(LookalikeError, match="no word in 'on the' names a tag"):
        parse_text("on the")


# --- ranking by stored labels ----------------------------------------------------------
def test_text_search_ranks_by_stored_label_probabilities(tagged):
    index, _ = tagged
    result = index.search_text("dog", k=10)
    assert result.route == "text" and result.query_labels == ["dog"]
    first = [class_of(m.path) for m in result.matches[:PER_CLASS]]
    assert first == ["dalmatian"] * PER_CLASS
    scores = [m.score for m in result.matches]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    dog = lookup("dog").classes
    for m in result.matches:  # each match says which of its labels made it a dog
        assert m.matched_labels and all(label_ids()[x.lower()] in dog for x in m.matched_labels)
        assert set(m.matched_labels) <= set(m.shown_labels())
    stored = index.catalogue.labels_for([m.image_id for m in result.matches])
    best = result.matches[0]
    expected = min(1.0, sum(p for c, p in stored[best.image_id] if c in dog))
    assert best.score == pytest.approx(expected)  # the summed probability
    assert [m.image_id for m in index.search_text("dogs", k=10).matches] == [
        m.image_id for m in result.matches]
    pianos = index.search_text("instrument", k=PER_CLASS).matches
    assert [class_of(m.path) for m in pianos] == ["grand_piano"] * PER_CLASS
    vehicles = index.search_text("vehicle", k=2 * PER_CLASS).matches
    assert {class_of(m.path) for m in vehicles} <= {"car_side", "helicopter"}


def test_several_words_average_and_a_label_filter_narrows(tagged):
    index, _ = tagged
    dog = {m.image_id: m.score for m in index.search_text("dog", k=50).matches}
    both = index.search_text("dog on a sofa", k=50)
    assert both.query_labels == ["dog", "sofa"]
    for m in both.matches:  # no sofas here: half a dog score, or a sofa score alone
        assert m.image_id not in dog or m.score >= dog[m.image_id] / 2 - 1e-9
    narrowed = index.search_text("vehicle", k=50, label="car")
    car = index.catalogue.image_ids_with_labels(sorted(lookup("car").classes)).tolist()
    assert narrowed.matches and {m.image_id for m in narrowed.matches} <= set(car)


# --- the label filter takes the same words ---------------------------------------------
def test_label_filter_takes_words_and_shows_why_a_match_passed(tagged):
    index, photos = tagged
    query = photos / "car_side" / "image_0001.jpg"
    dogs = index.search(query, k=20, label="dog", verify=0).matches
    assert {class_of(m.path) for m in dogs[:PER_CLASS]} == {"dalmatian"}
    assert all(m.matched_labels for m in dogs)
    leopards = index.search(query, k=20, label="Leopards", verify=0).matches
    assert leopards and all("leopard" in m.matched_labels for m in leopards)
    with pytest.raises(LookalikeError, match="unknown label 'dalmation': did you mean: dalmatian"):
        index.search(query, label="dalmation")
    # A label kept on its 4th or 5th stored label is shown, though only 3 are shown by default.
    everything = index.search(query, k=50, verify=0).matches
    late = next(m for m in everything if len(m.labels) > 3 and m.labels[3] not in m.labels[:3])
    kept = index.search(query, k=50, label=late.labels[3], verify=0).matches
    match = next(m for m in kept if m.image_id == late.image_id)
    assert late.labels[3] in match.shown_labels() and late.labels[3] not in match.labels[:3]


def test_suggestions_count_the_images_a_word_keeps(tagged):
    index, _ = tagged
    tags = index.tags("do", 5)
    assert 0 < len(tags) <= 5 and all(t["word"].lower().startswith("do") for t in tags)
    assert tags[0]["word"] == "dog" and tags[0]["classes"] == len(lookup("dog").classes)
    kept = index.catalogue.image_ids_with_labels(sorted(lookup("dog").classes))
    assert tags[0]["images"] == len(kept) >= PER_CLASS
    assert [t["images"] for t in tags] == sorted((t["images"] for t in tags), reverse=True)
    assert "domestic dog" not in [t["word"] for t in tags]  # one word per meaning
    assert index.tags("zzzq") == []
    # "entity" names all 1,000 classes (queried in chunks): every image, each counted once.
    assert index.tags("entity", 1) == [{"word": "entity", "classes": 1000, "images": len(index)}]


# --- faces ------------------------------------------------------------------------------
def test_cli_text_search_and_tags(tagged, capsys):
    index, _ = tagged
    db = str(index.path)
    assert cli.main(["search", "--db", db, "--text", "puppies", "-k", "2", "--json"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    assert result["query"] == "puppies" and len(result["matches"]) == 2
    assert all(class_of(m["path"]) == "dalmatian" and m["matched_labels"] for m in result["matches"])
    assert cli.main(["search", "--db", db, "--text", "dgo"]) == 1
    assert capsys.readouterr().err.startswith("error: unknown word 'dgo': did you mean: dog")
    with pytest.raises(SystemExit) as usage:  # neither images nor --text: a usage error
        cli.main(["search", "--db", db])
    assert usage.value.code == 2 and "query images or --text" in capsys.readouterr().err
    assert cli.main(["tags", "do", "--db", db, "--limit", "3"]) == 0
    assert "images  dog  (" in capsys.readouterr().out


def test_rest_text_search_and_tags(tagged):
    index, _ = tagged
    client = TestClient(create_app(index, ServerConfig()))
    response = client.get("/api/search/text", params={"q": "dog on a sofa", "k": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"query", "query_labels", "route", "matches"}
    assert body["query"] == "dog on a sofa" and body["route"] == "text"
    direct = index.search_text("dog on a sofa", k=3).matches
    assert [m["id"] for m in body["matches"]] == [m.image_id for m in direct]
    assert all(m["matched_labels"] and m["thumbnail_url"] for m in body["matches"])
    bad = client.get("/api/search/text", params={"q": "dgo"})
    assert bad.status_code == 422 and "did you mean: dog" in bad.json()["error"]
    tags = client.get("/api/tags", params={"prefix": "do", "limit": 3}).json()
    assert tags == {"tags": index.tags("do", 3)}
    assert client.get("/api/tags", params={"limit": 0}).status_code == 422
    filtered = client.get("/api/search/text", params={"q": "vehicle", "label": "dalmation"})
    assert filtered.status_code == 422 and "did you mean: dalmatian" in filtered.json()["error"]
