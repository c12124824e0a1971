"""``/api/dupes`` and the ``/dupes`` view: pages of groups, "not a duplicate" behind the
token, and the view in a real browser (Debian's Chromium, as in test_browser.py)."""

from __future__ import annotations

import shutil
import warnings
from dataclasses import replace
from pathlib import Path

import pytest

with warnings.catch_warnings():  # Starlette >= 1.x nags about httpx on import
    warnings.filterwarnings("ignore", message="Using `httpx`")
    from fastapi.testclient import TestClient

from test_browser import ARTIFACTS, TIMEOUT_MS, browser  # noqa: F401
from test_dupes import edits

import lookalike
from conftest import caltech_image
from live_server import serve
from lookalike.server.app import ServerConfig, create_app
from lookalike.settings import Settings

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """6 photos, 3 edited copies of 2 of them, and one file twice: 3 copy groups at most."""
    root = tmp_path_factory.mktemp("dupes-server")
    photos = root / "photos"
    photos.mkdir()
    for label, n in (("watch", 1), ("watch", 2), ("sunflower", 2), ("pizza", 1), ("chair", 1), ("ibis", 1)):
        shutil.copy2(caltech_image(label, n), photos / f"{label}_{n}.jpg")
    made = edits("watch", 1)
    made["bigger"].save(photos / "watch_1_big.jpg")
    made["mirror"].save(photos / "watch_1_mirror.jpg")
    edits("sunflower", 2)["crop_rot90"].save(photos / "sunflower_2_crop.jpg")
    shutil.copy2(photos / "pizza_1.jpg", photos / "pizza_1_again.jpg")
    with lookalike.Index.open(root / "index") as index:
        index.add([photos])
    return root / "index"


def client(folder: Path, tmp_path: Path, settings: Settings | None = None, **config) -> TestClient:
    copy = tmp_path / "index"
    shutil.copytree(folder, copy)
    index = lookalike.Index.open(copy, settings=settings, create=False)
    return TestClient(create_app(index, ServerConfig(**config)))


def test_groups_come_a_page_at_a_time(folder, tmp_path):
    api = client(folder, tmp_path)
    whole = api.get("/api/dupes").json()
    assert whole["level"] == "copies" and whole["total_groups"] == 2 and whole["offset"] == 0
    assert whole["pending"] == 9 and whole["pending_included"]  # checked, not stored: a GET writes nothing
    sizes = [len(g["files"]) for g in whole["groups"]]
    assert sizes == [3, 2]
    first = whole["groups"][0]["files"][0]
    assert first["keep"] and first["thumbnail_url"] == f"/api/images/{first['image_id']}/thumbnail"
    assert api.get(first["thumbnail_url"]).headers["content-type"] == "image/jpeg"
    second = api.get("/api/dupes", params={"offset": 1, "limit": 1}).json()
    assert second["total_groups"] == 2 and second["groups"] == whole["groups"][1:]
    assert second["pending"] == 9 and api.app.state.lookalike.index.catalogue.dupe_pairs() == []
    exact = api.get("/api/dupes", params={"level": "exact"}).json()
    assert [len(g["files"]) for g in exact["groups"]] == [2]
    assert api.get("/api/dupes", params={"min_group": 3}).json()["total_groups"] == 1
    bad = api.get("/api/dupes", params={"level": "twins"})
    assert bad.status_code == 422 and "error" in bad.json()
    page = api.get("/dupes")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    assert "/api/dupes" in api.get("/openapi.json").json()["paths"]
    api.app.state.lookalike.close()


def test_not_a_duplicate_needs_the_token(folder, tmp_path):
    api = client(folder, tmp_path, token=TOKEN)
    group = api.get("/api/dupes").json()["groups"][1]
    body = {"image_ids": group["image_ids"]}
    assert api.post("/api/dupes/not-duplicate", json=body).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert api.post("/api/dupes/not-duplicate", json=body, headers=wrong).status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert api.post("/api/dupes/check").status_code == 401
    assert api.post("/api/dupes/check", headers=auth).json() == {"checked": 9, "pending": 0}
    stored = api.get("/api/dupes").json()
    assert stored["pending"] == 0 and stored["groups"][1]["image_ids"] == group["image_ids"]
    unknown = api.post("/api/dupes/not-duplicate", json={"image_ids": [1, 99999]}, headers=auth)
    assert unknown.status_code == 400 and "99999" in unknown.json()["error"]
    done = api.post("/api/dupes/not-duplicate", json=body, headers=auth)
    assert done.status_code == 200 and done.json() == {"marked_pairs": 1}
    assert api.get("/api/dupes").json()["total_groups"] == 1
    api.app.state.lookalike.close()
    read_only = client(folder, tmp_path / "again")
    assert read_only.post("/api/dupes/not-duplicate", json=body, headers=auth).status_code == 403
    assert read_only.post("/api/dupes/check", headers=auth).status_code == 403
    read_only.app.state.lookalike.close()


def test_dupes_view_in_a_browser(folder, tmp_path, browser):  # noqa: F811
    copy = tmp_path / "index"
    shutil.copytree(folder, copy)
    with serve(copy, ServerConfig(token=TOKEN)) as url:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{url}/dupes")
        page.wait_for_function("() => document.querySelectorAll('.dupe-group').length === 2")
        assert page.eval_on_selector_all(".dupe-group", "gs => gs.map(g => g.querySelectorAll('.card').length)") == [3, 2]
        assert page.eval_on_selector_all(".dupe-group", "gs => gs.map(g => g.querySelectorAll('.card.keep .keep-badge').length)") == [1, 1]
        page.wait_for_function("() => Array.from(document.querySelectorAll('.dupe-group img')).every(i => i.complete && i.naturalWidth > 0)")
        page.hover(".dupe-group .card:nth-child(2)")
        page.wait_for_selector("#details:not([hidden])")
        assert "pixels" in page.text_content("#details")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "server-dupes.png"), full_page=True)
        page.fill("#token", TOKEN)
        page.click(".dupe-group:nth-child(2) .not-duplicate")
        page.wait_for_function("() => document.querySelectorAll('.dupe-group').length === 1")
        assert page.text_content("#status").startswith("1 copies group")
        page.select_option("#level", "exact")
        page.wait_for_function("() => document.querySelector('#status').textContent.startsWith('1 exact group')")
        assert errors == []
        context.close()


def test_many_new_images_wait_for_a_stored_check(folder, tmp_path):
    """Above ``read_check_max`` new images a GET answers from the stored pairs alone (it
    does not check a whole collection on every page); the stored check brings them in."""
    settings = Settings().with_(dupes=replace(Settings().dupes, read_check_max=5))
    api = client(folder, tmp_path, settings, token=TOKEN)
    waiting = api.get("/api/dupes").json()
    assert (waiting["total_groups"], waiting["pending"], waiting["pending_included"]) == (0, 9, False)
    api.post("/api/dupes/check", headers={"Authorization": f"Bearer {TOKEN}"})
    assert api.get("/api/dupes").json()["total_groups"] == 2
    api.app.state.lookalike.close()
