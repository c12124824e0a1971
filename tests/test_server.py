"""The REST API of ``lookalike serve``, through FastAPI's TestClient on a real Caltech index."""

from __future__ import annotations

import functools
import http.server
import io
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from PIL import Image

with warnings.catch_warnings():  # Starlette >= 1.x nags about httpx on import
    warnings.filterwarnings("ignore", message="Using `httpx`")
    from fastapi.testclient import TestClient

from conftest import PER_CLASS, SUBSET_CLASSES, edited
from lookalike import Index
from lookalike.server.app import ServerConfig, create_app

CLASSES = SUBSET_CLASSES
MATCH_FIELDS = {"rank", "path", "score", "labels", "kind", "inliers", "why", "id", "thumbnail_url", "original_url"}


class Collection(NamedTuple):
    photos: Path  # one sub-folder per class, so a match's class is its parent folder's name
    db: Path


def class_of(path: str) -> str:
    return Path(path).parent.name


@pytest.fixture(scope="module")
def collection(built_index: tuple[Path, Path]) -> Collection:
    """conftest's session-wide Caltech index (5 classes x 8 photos); never written to here."""
    db, photos = built_index
    return Collection(photos, db)


# ``index``: conftest's session-wide Index on the same folder.
def client_for(index: Index, **config) -> TestClient:
    return TestClient(create_app(index, ServerConfig(**config)))


@pytest.fixture(scope="module")
def client(index: Index) -> TestClient:
    return client_for(index)


def query_path(collection: Collection, name: str = "Leopards", number: int = 1) -> Path:
    return collection.photos / name / f"image_{number:04d}.jpg"


def upload(client: TestClient, path: Path, **params):
    files = {"file": (path.name, path.read_bytes(), "image/jpeg")}
    return client.post("/api/search", params=params, files=files)


def assert_error(response, status: int, fragment: str = "") -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert fragment.lower() in response.json()["error"].lower()


# --- searching ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CLASSES)
def test_upload_search_finds_the_image_then_its_class(client, collection, name):
    path = query_path(collection, name)
    response = upload(client, path, k=5)
    assert response.status_code == 200, response.text
    body = response.json()
    matches = body["matches"]
    assert len(matches) == 5 and set(matches[0]) == MATCH_FIELDS
    assert matches[0]["path"] == str(path) and matches[0]["score"] > 0.99
    assert [m["rank"] for m in matches] == [1, 2, 3, 4, 5]
    assert all(class_of(m["path"]) == name for m in matches[:4])
    assert body["query"] == path.name and body["query_labels"]
    assert matches[0]["thumbnail_url"] == f"/api/images/{matches[0]['id']}/thumbnail"


def test_search_by_id_is_more_like_this(client, collection):
    first = upload(client, query_path(collection, "Motorbikes"), k=1).json()["matches"][0]
    response = client.get(f"/api/images/{first['id']}/similar", params={"k": 4})
    assert response.status_code == 200, response.text
    matches = response.json()["matches"]
    assert matches[0]["id"] == first["id"] and matches[0]["score"] > 0.99
    assert all(class_of(m["path"]) == "Motorbikes" for m in matches)


def test_search_by_unknown_id_is_404(client):
    assert_error(client.get("/api/images/987654/similar"), 404, "no indexed image")
    assert_error(client.get("/api/images/0/similar"), 422, "image_id")


def test_label_filter_keeps_only_labelled_images(client, collection):
    response = upload(client, query_path(collection, "watch"), k=50, label="cheetah")
    matches = response.json()["matches"]
    assert matches and all("cheetah" in m["labels"] for m in matches)
    assert {class_of(m["path"]) for m in matches} == {"Leopards"}


def test_unknown_label_is_422(client):
    assert_error(client.get("/api/images/1/similar", params={"label": "no such"}), 422, "label")


def test_min_score_drops_weak_matches(client, collection):
    path = query_path(collection, "airplanes")
    everything = upload(client, path, k=50).json()["matches"]
    strong = upload(client, path, k=50, min_score=0.6).json()["matches"]
    assert 1 <= len(strong) < len(everything)
    assert all(m["score"] >= 0.6 for m in strong)
    assert strong == everything[: len(strong)]
    assert_error(upload(client, path, min_score=2), 422, "min_score")


def test_search_options_reach_the_ranking(client, collection):
    path = query_path(collection, "airplanes")
    index = client.app.state.lookalike.index
    for options in (
        {"rerank": "none", "verify": 0, "regions": 0},
        {"rerank": "qe", "verify": 5},
        {"rerank": "none", "verify": 1, "words": 5, "regions": 0},
    ):
        served = upload(client, path, k=10, **options).json()["matches"]
        direct = index.search(path, 10, **options).matches
        assert [m["id"] for m in served] == [m.image_id for m in direct]
    plain = [m["score"] for m in upload(client, path, k=10, rerank="none", verify=0).json()["matches"]]
    assert plain == sorted(plain, reverse=True)  # the plain cosine ranking
    assert_error(upload(client, path, rerank="magic"), 422, "rerank")
    assert_error(upload(client, path, verify=-1), 422, "verify")
    assert_error(upload(client, path, words=-1), 422, "words")


def test_pipeline_parameter_picks_the_ranking(client, collection, tmp_path):
    # An edited copy: its original is first when verified (the default), not by cosine alone.
    copy = tmp_path / "edited.jpg"
    edited("Motorbikes", 5).save(copy)
    original = str(query_path(collection, "Motorbikes", 5))
    assert upload(client, copy, k=3).json()["matches"][0]["path"] == original
    assert upload(client, copy, k=3, pipeline="cosine").json()["matches"][0]["path"] != original
    path = query_path(collection, "watch", 3)
    index = client.app.state.lookalike.index
    default = upload(client, path, k=5).json()
    for pipeline in ("cosine", "cosine,qe:2,verify:3", "cosine,auto,words:4"):
        response = upload(client, path, k=5, pipeline=pipeline)
        assert response.status_code == 200, response.text
        body = response.json()
        # The same shape as any search...
        assert set(body) == set(default) and len(body["matches"]) == 5
        assert all(set(m) == MATCH_FIELDS for m in body["matches"])
        # ...with the ranking that pipeline gives.
        direct = index.search(path, 5, pipeline=pipeline).matches
        assert [m["id"] for m in body["matches"]] == [m.image_id for m in direct]
    plain = upload(client, path, k=10, pipeline="cosine").json()["matches"]
    assert [m["id"] for m in plain] == [
        m["id"] for m in upload(client, path, k=10, rerank="none", verify=0).json()["matches"]]
    first = plain[0]["id"]
    similar = client.get(f"/api/images/{first}/similar", params={"k": 3, "pipeline": "cosine,qe"})
    assert similar.status_code == 200 and similar.json()["matches"][0]["id"] == first


@pytest.mark.parametrize(
    ("pipeline", "fragment"),
    [
        ("cosine,magic", "unknown stage 'magic'"),
        ("verify:5", "must start with 'cosine'"),
        ("cosine,verify", "needs a number"),
        ("cosine,verify:5,qe", "in order"),
        ("cosine," + "qe," * 70, "pipeline"),  # longer than the 200 characters allowed
    ],
)
def test_bad_pipeline_is_422(client, collection, pipeline, fragment):
    path = query_path(collection, "watch", 3)
    response = upload(client, path, pipeline=pipeline)
    assert_error(response, 422, fragment)
    assert set(response.json()) == {"error"}
    assert_error(client.get("/api/images/1/similar", params={"pipeline": pipeline}), 422, fragment)


def test_route_and_k_are_validated(client):
    assert_error(client.get("/api/images/1/similar", params={"k": 0}), 422, "k:")
    assert_error(client.get("/api/images/1/similar", params={"route": "x"}), 422, "route")


# --- images by id ---------------------------------------------------------------------------
def first_id(client, collection) -> tuple[int, Path]:
    path = query_path(collection, "Leopards", 2)
    return upload(client, path, k=1).json()["matches"][0]["id"], path


def test_thumbnail_is_a_small_cached_jpeg(client, collection):
    image_id, path = first_id(client, collection)
    response = client.get(f"/api/images/{image_id}/thumbnail")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(response.content)) as thumb:
        assert thumb.format == "JPEG" and max(thumb.size) <= ServerConfig().thumbnail_size
    cache = client.app.state.lookalike.thumbnails
    assert cache.get((image_id, str(path))) == response.content


def test_original_is_the_file_itself(client, collection):
    image_id, path = first_id(client, collection)
    response = client.get(f"/api/images/{image_id}/original")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content == path.read_bytes()


def test_image_details(client, collection):
    image_id, path = first_id(client, collection)
    body = client.get(f"/api/images/{image_id}").json()
    assert body["paths"] == [str(path)] and "cheetah" in body["labels"]


@pytest.mark.parametrize("kind", ["thumbnail", "original", ""])
def test_unknown_image_is_404(client, kind):
    assert_error(client.get(f"/api/images/424242/{kind}".rstrip("/")), 404, "424242")


def test_paths_are_never_taken_from_the_request(client):
    assert client.get("/api/images/..%2F..%2Fetc%2Fpasswd/original").status_code in (404, 422)
    assert_error(client.get("/static/../app.py"), 404)


# --- stats and page -------------------------------------------------------------------------
def test_info_has_counts_labels_and_limits(client):
    body = client.get("/api/info").json()
    assert body["images"] == body["files"] == len(CLASSES) * PER_CLASS
    assert "cheetah" in body["labels"] and body["top_labels"][0]["images"] >= 1
    assert body["read_only"] is True and body["allow_private_urls"] is False
    assert body["limits"]["max_upload_bytes"] == 20 * 1024 * 1024


def test_page_and_openapi(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for asset in ("app.js", "style.css"):
        assert client.get(f"/static/{asset}").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/search", "/api/search/url", "/api/images/{image_id}/similar"} <= set(paths)


def test_docs_page_works_offline(client):
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "/docs-assets/swagger-ui-bundle.js" in docs.text and "cdn" not in docs.text.lower()
    script = client.get("/docs-assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000


def test_unknown_route_is_json_404(client):
    assert_error(client.get("/api/nothing"), 404)


# --- bad input ------------------------------------------------------------------------------
def test_non_image_upload_is_400(client):
    response = client.post(
        "/api/search", files={"file": ("cat.jpg", b"not an image", "image/jpeg")}
    )
    assert_error(response, 400, "cat.jpg")


def test_missing_file_is_422(client):
    assert_error(client.post("/api/search"), 422, "file")


def test_oversize_upload_is_413(index, collection):
    limited = client_for(index, max_upload_bytes=2_000)
    path = query_path(collection)  # a few KB: over the limit, within the multipart allowance
    assert_error(upload(limited, path), 413, "limit is 2,000 bytes")
    huge = {"file": ("big.jpg", b"\xff" * 200_000, "image/jpeg")}  # refused by Content-Length
    assert_error(limited.post("/api/search", files=huge), 413, "limited to 2,000 bytes")


def test_oversize_body_without_length_is_413(index):
    limited = client_for(index, max_upload_bytes=2_000)

    def chunks() -> Iterator[bytes]:  # a generator: sent chunked, with no Content-Length
        yield b"--x\r\nContent-Disposition: form-data; name=file; filename=a.jpg\r\n\r\n"
        for _ in range(20):
            yield b"\0" * 10_000

    headers = {"content-type": "multipart/form-data; boundary=x"}
    assert_error(limited.post("/api/search", content=chunks(), headers=headers), 413, "limited to")


def test_too_many_pixels_is_400(index, collection):
    assert_error(upload(client_for(index, max_pixels=10_000), query_path(collection)), 400, "pixel")


# --- URL search -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("file:///etc/passwd", "only http"),
        ("ftp://example.com/a.jpg", "only http"),
        ("http://127.0.0.1:9/a.jpg", "--allow-private-urls"),
        ("http://localhost:9/a.jpg", "non-public"),
        ("http://[::1]:9/a.jpg", "non-public"),
        ("http://10.1.2.3/a.jpg", "non-public"),
    ],
)
def test_url_search_refuses_local_and_non_http(client, url, fragment):
    assert_error(client.post("/api/search/url", json={"url": url}), 400, fragment)


@pytest.fixture()
def local_http(collection: Collection) -> Iterator[str]:
    """A loopback HTTP server over the photos (for --allow-private-urls)."""
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(collection.photos)
    )
    handler.log_message = lambda *a: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_url_search_with_private_urls_allowed(index, collection, local_http):
    allowed = client_for(index, allow_private_urls=True)
    url = f"{local_http}/Motorbikes/image_0003.jpg"
    response = allowed.post("/api/search/url", params={"k": 3}, json={"url": url})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["query"] == url
    assert body["matches"][0]["path"] == str(query_path(collection, "Motorbikes", 3))
