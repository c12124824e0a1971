"""The web page in a real browser: Debian's headless Chromium driven by Playwright.

The server runs for real (uvicorn on a free loopback port in a background thread). Screenshots
go to ``test-artifacts/`` (git-ignored) so a person can check the page looks right.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright import sync_api

from conftest import PER_CLASS, SUBSET_CLASSES, copy_subset
from live_server import serve
from lookalike import Index
from lookalike.server.app import ServerConfig

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOTAL = len(SUBSET_CLASSES) * PER_CLASS
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
TIMEOUT_MS = 60_000

# `make test` installs Debian's Chromium; a missing browser is a failure, not a skip.
assert CHROMIUM.exists(), "needs /usr/bin/chromium: run `make system-deps`"


def class_of(path: str) -> str:
    return Path(path).parent.name


@pytest.fixture(scope="module")
def photos(built_index: tuple[Path, Path]) -> Path:
    return built_index[1]


@pytest.fixture(scope="module")
def base_url(built_index: tuple[Path, Path]) -> Iterator[str]:
    with serve(built_index[0]) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture()
def page(browser, base_url):
    """A fresh page that records console errors (a CSP violation shows up there).

    The page's CSP forbids eval, so every ``wait_for_function`` gets a function, not an
    expression (Playwright evaluates bare expressions with eval in the page)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(TIMEOUT_MS)
    opened.errors = []
    opened.on("console", lambda m: m.type == "error" and opened.errors.append(m.text))
    opened.on("pageerror", lambda e: opened.errors.append(str(e)))
    opened.goto(base_url)
    opened.wait_for_function(
        "() => document.querySelector('#stats').textContent.includes('photos')",
        timeout=TIMEOUT_MS,
    )
    yield opened
    context.close()


def cards(page) -> list[dict]:
    return page.eval_on_selector_all(
        "#results .card",
        "cards => cards.map(c => ({id: Number(c.dataset.id), path: c.dataset.path,"
        " labels: Array.from(c.querySelectorAll('.labels button')).map(b => b.textContent)}))",
    )


def wait_for_results(page) -> list[dict]:
    page.wait_for_function(
        "() => !document.querySelector('#status').classList.contains('busy')"
        " && document.querySelectorAll('#results .card').length > 0"
    )
    return cards(page)


def wait_for_thumbnails(page, count: int = 8) -> None:
    """Visible thumbnails decoded (lazy ones below the fold never load, so only the first)."""
    page.wait_for_function(
        f"() => Array.from(document.querySelectorAll('#results img')).slice(0, {count})"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )


def test_upload_search_then_click_a_result(page, photos):
    assert page.text_content("#stats").startswith(f"{TOTAL} photos")
    query = photos / "Leopards" / "image_0001.jpg"
    page.set_input_files("#file-input", str(query))
    found = wait_for_results(page)
    assert found[0]["path"] == str(query)
    assert all(class_of(c["path"]) == "Leopards" for c in found[:4])
    assert "cheetah" in found[1]["labels"]
    # The minimum-score slider spans the scores shown and hides the cards below it.
    scores = page.eval_on_selector_all("#results .card", "cs => cs.map(c => Number(c.dataset.score))")
    bounds = page.eval_on_selector("#min-score", "s => [Number(s.min), Number(s.max)]")
    assert bounds == pytest.approx([min(scores), max(scores)], abs=1e-3)
    middle = sorted(scores)[len(scores) // 2]
    page.eval_on_selector(
        "#min-score", f"s => {{ s.value = {middle}; s.dispatchEvent(new Event('input')); }}"
    )
    shown = page.eval_on_selector_all("#results .card:not([hidden])", "cs => cs.length")
    assert shown == sum(score >= middle - 1e-3 for score in scores) < len(scores)
    wait_for_thumbnails(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "server-upload.png"))

    clicked = found[2]
    page.click(f"#results .card[data-id='{clicked['id']}'] .thumb")
    page.wait_for_function(
        f"() => document.querySelector('#results .card')?.dataset.id === '{clicked['id']}'"
    )
    again = wait_for_results(page)
    assert page.url.endswith(f"#id={clicked['id']}")
    assert all(class_of(c["path"]) == "Leopards" for c in again[:4])
    assert page.get_attribute("#query-preview", "src") == f"/api/images/{clicked['id']}/thumbnail"
    wait_for_thumbnails(page)
    page.screenshot(path=str(ARTIFACTS / "server-more-like-this.png"), full_page=True)
    assert page.errors == []


def test_label_filter_and_open_original(page, photos):
    page.set_input_files("#file-input", str(photos / "Motorbikes" / "image_0002.jpg"))
    wait_for_results(page)
    page.fill("#label", "cheetah")
    page.press("#label", "Enter")
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('#results .card'))"
        ".every(c => c.dataset.path.includes('/Leopards/'))"
    )
    assert all("cheetah" in c["labels"] for c in wait_for_results(page))
    options = page.eval_on_selector_all("#label-list option", "os => os.map(o => o.value)")
    assert "cheetah" in options
    page.fill("#label", "")
    page.fill("#tag-input", "cheetah")  # word search: shown because the server has it
    page.click("#tag-form button")
    page.wait_for_function("() => document.querySelector('#query-url').textContent.includes('cheetah')")
    worded = wait_for_results(page)
    assert all(class_of(c["path"]) == "Leopards" for c in worded[:4])
    href = page.eval_on_selector("#results .card .open", "a => a.href")  # absolute
    response = page.request.get(href)
    assert response.status == 200 and response.headers["content-type"] == "image/jpeg"
    assert page.errors == []


def test_errors_are_shown_and_layout_is_responsive(page, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    page.set_input_files("#file-input", str(bad))
    page.wait_for_selector("#status.error")
    assert "notes.jpg" in page.text_content("#status")
    assert page.is_hidden("#query-preview")  # no broken-image icon
    text = tmp_path / "list.txt"
    text.write_text("not a photo")
    page.set_input_files("#file-input", str(text))
    page.wait_for_function("() => document.querySelector('#status').textContent.includes('list.txt')")
    assert "is not a photo" in page.text_content("#status")
    page.set_viewport_size({"width": 390, "height": 844})
    page.fill("#url-input", "http://127.0.0.1:9/a.jpg")
    page.click("#url-form button")
    page.wait_for_function(
        "() => document.querySelector('#status').textContent.includes('non-public')"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "server-mobile-error.png"))
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390  # nothing cut off
    for word in ("Pillow", "in-memory", "lookalike info", "JSON decode"):
        assert word not in page.text_content("body")
    # The failed requests are logged by the browser as console errors; nothing else may be.
    assert all("status of 400" in e for e in page.errors), page.errors


def test_browse_grid_keyboard_viewer_and_find_similar(page, photos):
    page.set_viewport_size({"width": 390, "height": 500})
    page.goto(page.url.split("#")[0] + "#browse")
    page.wait_for_selector("#browse-grid .tile img")
    tiles = page.eval_on_selector_all("#browse-grid .tile", "ts => ts.length")
    assert 0 < tiles < TOTAL  # virtualised: only the rows on screen exist
    page.select_option("#order", "folder")
    first = sorted(str(p) for p in photos.rglob("*.jpg"))[0]
    page.wait_for_function(
        f"() => document.querySelector('#browse-grid .tile[data-index=\"0\"]')?.title === {first!r}"
    )
    page.focus("#browse-grid .tile[data-index='0']")
    page.keyboard.press("ArrowRight")
    focused = page.evaluate("() => document.activeElement.dataset.index")
    assert focused == "1"
    image_id = int(page.evaluate("() => document.activeElement.dataset.id"))
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#viewer-details').textContent.includes('px')")
    second = sorted(str(p) for p in photos.rglob("*.jpg"))[1]
    assert page.text_content("#viewer-name") == Path(second).name
    page.click("#viewer-similar")
    found = wait_for_results(page)
    assert found[0]["id"] == image_id and found[0]["path"] == second
    assert page.errors == []


def test_docs_render_an_operation_and_try_it_out(page, base_url):
    page.goto(f"{base_url}/docs")
    operation = page.locator("#operations-collection-info_api_info_get")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    status = operation.locator(".live-responses-table .response .response-col_status").first
    status.wait_for()
    assert status.text_content().strip() == "200"
    assert "images" in operation.locator(".live-responses-table .microlight").first.text_content()
    assert page.locator(".opblock").count() >= 10
    assert page.errors == []


def test_empty_collection_then_add_photos_from_the_page(browser, tmp_path):
    Index.open(tmp_path / "index").close()
    folder = copy_subset(tmp_path / "photos", classes=("watch",), per_class=3)
    (folder / "watch" / "broken.jpg").write_bytes(b"not a photo")
    with serve(tmp_path / "index", ServerConfig(token="s3cret")) as url:
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.wait_for_selector("#empty:not([hidden])")
        assert "No photos here yet" in page.text_content("#empty")
        page.click("#add-photos")
        page.fill("#index-folder", str(folder))
        page.fill("#index-token", "wrong")
        page.click("#index-form button[type=submit]")
        page.wait_for_function("() => document.querySelector('#index-status').textContent.includes('token')")
        page.fill("#index-token", "s3cret")
        page.click("#index-form button[type=submit]")
        page.wait_for_function("() => document.querySelector('#index-status').textContent.startsWith('Done')")
        assert "3 new" in page.text_content("#index-status")
        assert "1 could not be read" in page.text_content("#index-status")
        assert "broken.jpg" in page.text_content("#index-failures")
        page.wait_for_function("() => document.querySelectorAll('#browse-grid .tile').length === 3")
        assert page.text_content("#stats").startswith("3 photos")
        context.close()
