"""``GET /api/images`` (the page's browse grid) and an image's file details, on conftest's
real Caltech index (5 classes x 8 photos, one folder per class)."""

from __future__ import annotations

import os
import sqlite3
import warnings
from pathlib import Path

import pytest
from PIL import Image

with warnings.catch_warnings():  # Starlette >= 1.x nags about httpx on import
    warnings.filterwarnings("ignore", message="Using `httpx`")
    from fastapi.testclient import TestClient

from conftest import PER_CLASS, SUBSET_CLASSES, caltech_image
from lookalike import Index
from lookalike.server.app import create_app

TOTAL = len(SUBSET_CLASSES) * PER_CLASS


@pytest.fixture(scope="module")
def client(index: Index) -> TestClient:
    return TestClient(create_app(index))


def test_pages_cover_the_collection_once_in_folder_order(client, built_index) -> None:
    photos = built_index[1]
    seen = []
    for offset in range(0, TOTAL + 7, 7):
        page = client.get("/api/images", params={"order": "folder", "limit": 7, "offset": offset})
        assert page.status_code == 200
        body = page.json()
        assert body["total"] == TOTAL and body["offset"] == offset
        seen += body["images"]
    paths = [image["path"] for image in seen]
    assert paths == sorted(str(p) for p in photos.rglob("*.jpg"))
    assert len({image["id"] for image in seen}) == TOTAL
    first = seen[0]
    assert first["thumbnail_url"] == f"/api/images/{first['id']}/thumbnail"
    assert first["size"] == os.path.getsize(first["path"])
    assert first["width"] > 0 and first["height"] > 0


def test_newest_first_and_label_filter(client, index) -> None:
    newest = client.get("/api/images", params={"limit": TOTAL}).json()["images"]
    added = [image["added_at"] for image in newest]
    assert added == sorted(added, reverse=True)
    cheetahs = client.get("/api/images", params={"label": "cheetah", "limit": TOTAL}).json()
    folders = {Path(image["path"]).parent.name for image in cheetahs["images"]}
    assert folders == {"Leopards"} and cheetahs["total"] == len(cheetahs["images"]) >= 4
    unknown = client.get("/api/images", params={"label": "cheetahh"})
    assert unknown.status_code == 422 and "cheetahh" in unknown.json()["error"]


def test_image_details_name_the_file(client) -> None:
    image = client.get("/api/images", params={"limit": 1}).json()["images"][0]
    details = client.get(f"/api/images/{image['id']}").json()
    assert details["paths"] == [image["path"]]
    stat = os.stat(image["path"])
    assert details["size"] == stat.st_size
    assert abs(details["modified"] - stat.st_mtime) < 1e-3
    assert (details["width"], details["height"]) == (image["width"], image["height"])


def test_sizes_are_the_files_not_the_reduced_decode(tmp_path) -> None:
    """A big JPEG is decoded at a reduced scale while indexing; its stored size is the file's.
    An image indexed before catalogue format 7 (its size stored as 0 x 0: unknown) shows its
    file's header size instead, and null once no file can be read."""
    photo = tmp_path / "photos" / "big.jpg"
    photo.parent.mkdir()
    Image.open(caltech_image("watch", 1)).convert("RGB").resize((1800, 1200)).save(photo, quality=90)
    with Index.open(tmp_path / "index") as index:
        index.add([photo.parent])
        client = TestClient(create_app(index))
        image = client.get("/api/images").json()["images"][0]
        assert (image["width"], image["height"]) == (1800, 1200)
        db = sqlite3.connect(tmp_path / "index" / "catalogue.sqlite")
        with db:
            db.execute("UPDATE images SET width = 0, height = 0")  # what the format-7 step leaves
        db.close()
        details = client.get(f"/api/images/{image['id']}").json()
        assert (details["width"], details["height"]) == (1800, 1200)
        photo.unlink()
        details = client.get(f"/api/images/{image['id']}").json()
        assert details["width"] is None and details["height"] is None and details["size"] > 0
