"""Results explain themselves: a verified copy is marked "same picture" with its matching
points and comes first; a different photo of the same kind of thing, even one whose spots
or print share many local features with the query, is only "similar". Real Caltech-101
dalmatians; no timing assertions."""

from __future__ import annotations

import shutil
import warnings
from io import BytesIO

import pytest
from PIL import Image

with warnings.catch_warnings():  # Starlette >= 1.x nags about httpx on import
    warnings.filterwarnings("ignore", message="Using `httpx`")
    from fastapi.testclient import TestClient

import lookalike
from conftest import caltech_image, edited
from lookalike.cli.search import print_results
from lookalike.server.app import ServerConfig, create_app
from lookalike.server.models import MatchOut
from lookalike.verify import Features, extract, fit

# Different dalmatian photos that share many ORB features (printed spots, a calendar cover)
# and that raw homography inliers took for copies: (query, indexed photo).
LOOKALIKES = ((14, 2), (55, 52))
PHOTOS = (1, 2, 3, 4, 5, 6, 52)


@pytest.fixture(scope="module")
def dalmatians(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    photos = root / "photos" / "dalmatian"
    photos.mkdir(parents=True)
    for n in PHOTOS:
        shutil.copy2(caltech_image("dalmatian", n), photos / f"image_{n:04d}.jpg")
    with lookalike.Index.open(root / "index") as index:
        index.add([photos])
        yield index, photos


def test_a_real_copy_is_marked_as_the_same_picture_and_comes_first(dalmatians):
    index, photos = dalmatians
    result = index.search(edited("dalmatian", 3), 5)
    first = result.matches[0]
    assert first.path == str(photos / "image_0003.jpg")
    assert first.kind == "copy" and first.inliers >= index.settings.verify.min_inliers
    assert first.why == f"same picture, {first.inliers} matching points"
    assert all(m.kind == "similar" and m.why.startswith("similar") for m in result.matches[1:])
    assert {k: first.as_dict()[k] for k in ("kind", "inliers", "why")} == {
        "kind": "copy", "inliers": first.inliers, "why": first.why}


@pytest.mark.parametrize(("query", "indexed"), LOOKALIKES)
def test_a_different_photo_of_the_class_is_only_similar(dalmatians, query, indexed):
    index, photos = dalmatians
    params = index.settings.verify
    path = caltech_image("dalmatian", query)
    other = index.catalogue.image_for_location(str(photos / f"image_{indexed:04d}.jpg"))
    # Raw inliers would have verified the pair: the spots line up often enough by chance...
    stored = Features(*index.catalogue.local_features_for([other])[other])
    raw = fit(extract(Image.open(path).convert("RGB"), params), stored, params)
    assert raw.inliers >= params.min_inliers
    # ...but too few distinct points, and too small a share of the matches, agree.
    assert raw.counted(params) < params.min_inliers
    matches = index.search(path, len(PHOTOS)).matches
    match = next(m for m in matches if m.image_id == other)
    assert match.inliers is not None and match.kind == "similar"
    assert not any(m.kind == "copy" for m in matches)


def test_the_order_reads_as_copies_then_similar_images(dalmatians, capsys):
    index, photos = dalmatians
    result = index.search(edited("dalmatian", 3), len(PHOTOS))
    kinds = [m.kind for m in result.matches]
    assert kinds == sorted(kinds)  # "copy" < "similar": all copies first
    # A similar image above one with a higher score says why it is there.
    similar = [m for m in result.matches if m.kind == "similar"]
    for n, m in enumerate(similar):
        raised = any(later.score > m.score for later in similar[n + 1:])
        assert m.why == ("similar, ranked up by its likeness to the top matches" if raised else "similar")
    print_results([result])
    table = capsys.readouterr().out.splitlines()
    assert table[1].startswith("  same picture") and "similar:" in table[3]
    assert f"(same picture, {result.matches[0].inliers} matching points)" in table[2]


def test_the_rest_api_carries_the_explanation(dalmatians):
    index, photos = dalmatians
    client = TestClient(create_app(index, ServerConfig()))
    buffer = BytesIO()
    edited("dalmatian", 3).save(buffer, "JPEG", quality=90)
    files = {"file": ("copy.jpg", buffer.getvalue(), "image/jpeg")}
    matches = client.post("/api/search", params={"k": 3}, files=files).json()["matches"]
    assert matches[0]["kind"] == "copy" and matches[0]["inliers"] >= 15
    assert matches[0]["why"].startswith("same picture")
    assert [m["kind"] for m in matches[1:]] == ["similar", "similar"]
    assert {"kind", "inliers", "why"} <= set(MatchOut.model_json_schema()["properties"])
