"""The web page in a real browser: Debian's headless Chromium driven by Playwright.

The server runs for real (uvicorn on a free loopback port in a background thread). Screenshots
go to ``test-artifacts/`` (git-ignored) so a person can check the page looks right.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from playwright import sync_api

from conftest import PER_CLASS, SUBSET_CLASSES
from lookalike import Index
from lookalike.server.app import create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
TIMEOUT_MS = 60_000

# `make test` installs Debian's Chromium; a missing browser is a failure, not a skip.
assert CHROMIUM.exists(), "needs /usr/bin/chromium: run `make system-deps`"


def class_of(path: str) -> str:
    return Path(path).parent.name


@pytest.fixture(scope="module")
def photos(built_index: tuple[Path, Path]) -> Path:
    return built_index[1]


@contextmanager
def serving(app) -> Iterator[str]:
    """``app`` served for real on 127.0.0.1; the socket is bound first, so the port cannot
    be taken. Yields the base URL; the server is stopped on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def base_url(built_index: tuple[Path, Path]) -> Iterator[str]:
    """The real server over conftest's index."""
    with Index.open(built_index[0], create=False) as index, serving(create_app(index)) as url:
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
        "() => document.querySelector('#stats').textContent.includes('images')",
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
    assert page.text_content("#stats").startswith(f"{len(SUBSET_CLASSES) * PER_CLASS} images")
    query = photos / "Leopards" / "image_0001.jpg"
    page.set_input_files("#file-input", str(query))
    found = wait_for_results(page)
    assert found[0]["path"] == str(query)
    assert all(class_of(c["path"]) == "Leopards" for c in found[:4])
    assert "cheetah" in found[1]["labels"]
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
    page.set_viewport_size({"width": 390, "height": 844})
    page.fill("#url-input", "http://127.0.0.1:9/a.jpg")
    page.click("#url-form button")
    page.wait_for_function(
        "() => document.querySelector('#status').textContent.includes('non-public')"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "server-mobile-error.png"))
    # The failed requests are logged by the browser as console errors; nothing else may be.
    assert all("status of 400" in e for e in page.errors), page.errors
