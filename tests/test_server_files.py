"""The server serves a file only while it is the image that was indexed.

``/api/images/{id}/thumbnail`` and ``/original`` answer 404 (JSON, no server path in the
message) when the file vanished, no longer decodes, or now holds other content: a file
rewritten since it was indexed, or a symlink in the collection that now points elsewhere.
"""

from __future__ import annotations

import io
import os
import shutil
import warnings
from pathlib import Path

import pytest
from PIL import Image

with warnings.catch_warnings():  # Starlette >= 1.x nags about httpx on import
    warnings.filterwarnings("ignore", message="Using `httpx`")
    from fastapi.testclient import TestClient

from conftest import caltech_image
from lookalike import Index
from lookalike.server.app import create_app

FILES = {  # name in the collection -> the Caltech photo it is a copy of
    "intact.jpg": ("watch", 1),
    "vanishing.jpg": ("watch", 2),
    "garbled.jpg": ("watch", 3),
    "rewritten.jpg": ("watch", 4),
    "copy-a.jpg": ("Leopards", 2),
    "copy-b.jpg": ("Leopards", 2),
    "other.jpg": ("airplanes", 1),
}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A client over a small index; each test changes its own files only."""
    root = tmp_path_factory.mktemp("served")
    photos = root / "photos"
    photos.mkdir()
    for name, (label, number) in FILES.items():
        shutil.copy2(caltech_image(label, number), photos / name)
    outside = root / "outside"
    outside.mkdir()
    shutil.copy2(caltech_image("Leopards", 1), outside / "target.jpg")
    (photos / "link.jpg").symlink_to(outside / "target.jpg")
    index = Index.open(root / "db")
    report = index.add([photos])
    assert report.embedded == len(FILES) and report.failed == []
    client = TestClient(create_app(index))
    yield client, index, photos
    client.app.state.lookalike.close()


def image_id(index: Index, path: Path) -> int:
    return index.catalogue.image_for_location(str(path))


def assert_404(response, fragment: str, path: Path) -> None:
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/json"
    message = response.json()["error"]
    assert fragment in message and str(path.parent) not in message, message


def test_an_intact_file_is_served(served):
    client, index, photos = served
    path = photos / "intact.jpg"
    original = client.get(f"/api/images/{image_id(index, path)}/original")
    assert original.status_code == 200 and original.content == path.read_bytes()
    assert original.headers["content-type"] == "image/jpeg"
    assert original.headers["content-length"] == str(path.stat().st_size)
    assert original.headers["content-disposition"] == 'inline; filename="intact.jpg"'
    thumbnail = client.get(f"/api/images/{image_id(index, path)}/thumbnail")
    assert thumbnail.status_code == 200
    with Image.open(io.BytesIO(thumbnail.content)) as picture:
        assert picture.format == "JPEG"


def test_a_vanished_file_is_404(served):
    client, index, photos = served
    path = photos / "vanishing.jpg"
    number = image_id(index, path)
    assert client.get(f"/api/images/{number}/thumbnail").status_code == 200
    path.unlink()
    for kind in ("thumbnail", "original"):
        assert_404(client.get(f"/api/images/{number}/{kind}"), "no longer on disk", path)


def test_a_file_that_no_longer_decodes_is_404_not_400(served):
    client, index, photos = served
    path = photos / "garbled.jpg"
    path.write_bytes(path.read_bytes()[:1500])  # truncated: other content, and unreadable
    for kind in ("thumbnail", "original"):
        assert_404(client.get(f"/api/images/{image_id(index, path)}/{kind}"),
                   "the file changed since it was indexed; re-index", path)


def test_a_file_rewritten_since_indexing_is_404(served):
    client, index, photos = served
    path = photos / "rewritten.jpg"
    number = image_id(index, path)
    assert client.get(f"/api/images/{number}/original").status_code == 200  # now remembered
    shutil.copy(photos / "other.jpg", path)  # another picture under the indexed name
    for kind in ("original", "thumbnail"):
        assert_404(client.get(f"/api/images/{number}/{kind}"),
                   "the file changed since it was indexed; re-index", path)


def test_a_symlink_that_now_points_elsewhere_is_not_followed(served):
    client, index, photos = served
    link = photos / "link.jpg"
    number = image_id(index, link)
    first = client.get(f"/api/images/{number}/original")
    assert first.status_code == 200 and first.content == link.read_bytes()
    secret = photos.parent / "secret.txt"
    secret.write_text("not for the web")
    pipe = photos.parent / "pipe"
    os.mkfifo(pipe)  # opening it for reading would wait for a writer: the server must not
    for target in (secret, photos / "other.jpg", pipe):  # any file, another image, a pipe
        link.unlink()
        link.symlink_to(target)
        for kind in ("original", "thumbnail"):
            response = client.get(f"/api/images/{number}/{kind}")
            assert_404(response, "the file changed since it was indexed; re-index", link)
            assert b"not for the web" not in response.content


def test_a_changed_copy_is_passed_over_for_an_intact_one(served):
    client, index, photos = served
    a, b = photos / "copy-a.jpg", photos / "copy-b.jpg"
    number = image_id(index, a)
    assert image_id(index, b) == number  # one image, two files
    a.write_bytes(b"no longer a photo")
    response = client.get(f"/api/images/{number}/original")
    assert response.status_code == 200 and response.content == b.read_bytes()
    assert response.headers["content-disposition"] == 'inline; filename="copy-b.jpg"'


def test_unicode_file_names_are_quoted(served, tmp_path):
    client, index, photos = served
    path = photos / "café ☕.jpg"
    shutil.copy2(caltech_image("sunflower", 1), path)
    index.add([path])
    response = client.get(f"/api/images/{image_id(index, path)}/original")
    assert response.status_code == 200
    assert response.headers["content-disposition"] == (
        "inline; filename*=utf-8''caf%C3%A9%20%E2%98%95.jpg"
    )
    os.unlink(path)


def test_a_file_name_that_is_not_utf8_is_served_and_shown(tmp_path):
    """The page and the API carry such a name escaped, with its raw bytes, and never fail."""
    photos = tmp_path / "photos"
    photos.mkdir()
    odd = photos / os.fsdecode(b"caf\xe9 \xff.jpg")
    shutil.copy2(caltech_image("watch", 5), odd)
    (photos / "broken.jpg").write_bytes(b"not a picture")
    os.rename(photos / "broken.jpg", photos / os.fsdecode(b"bad \xfe.jpg"))
    with Index.open(tmp_path / "db") as index:
        report = index.add([photos])
        assert report.embedded == 1 and len(report.failed) == 1
        failed = report.as_dict()["failed"][0]
        assert failed["path"].endswith("bad \\xfe.jpg") and "path_bytes" in failed
        client = TestClient(create_app(index))
        number = image_id(index, odd)
        details = client.get(f"/api/images/{number}")
        assert details.status_code == 200
        assert details.json()["paths"] == [str(photos) + "/caf\\xe9 \\xff.jpg"]
        original = client.get(f"/api/images/{number}/original")
        assert original.status_code == 200 and original.content == odd.read_bytes()
        assert "filename*=utf-8''" in original.headers["content-disposition"]
        assert client.get(f"/api/images/{number}/thumbnail").status_code == 200
