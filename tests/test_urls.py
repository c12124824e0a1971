"""Images indexed by URL, against a real HTTP server on 127.0.0.1 serving Caltech photos,
with the failures a list of web addresses meets: 404, 500, slow, huge, wrong type, HTML,
a redirect loop, a redirect off the web, and an image that changes under its URL."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import shutil
import threading
import time
from pathlib import Path

import pytest

import lookalike
from conftest import caltech_image
from lookalike import cli
from lookalike.settings import Settings, UrlParams

PHOTOS = [("airplanes", 1), ("Leopards", 1), ("Motorbikes", 1), ("watch", 1), ("sunflower", 1)]
SETTINGS = Settings(urls=UrlParams(workers=4, timeout=1.0, max_bytes=2_000_000,
                                   allow_private=True, chunk=3))


class Site:
    """What the test server answers, changed by the tests between runs."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[int, bytes, dict[str, str]]] = {}
        self.conditional: list[str] = []  # paths asked for with validators
        self.requests: list[str] = []

    def image(self, path: str, photo: Path, validators: bool = True) -> None:
        data = photo.read_bytes()
        headers = {"Content-Type": "image/jpeg"}
        if validators:
            headers["ETag"] = '"' + hashlib.sha1(data).hexdigest() + '"'
        self.pages[path] = (200, data, headers)


def _handler(site: Site):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            site.requests.append(self.path)
            if self.path == "/slow.jpg":
                time.sleep(2.5)
            status, body, headers = site.pages.get(self.path, (404, b"no", {}))
            if status == 200 and "If-None-Match" in self.headers:
                site.conditional.append(self.path)
                if self.headers["If-None-Match"] == headers.get("ETag"):
                    status, body = 304, b""
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            if "Content-Length" not in headers:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except OSError:
                pass

    return Handler


@pytest.fixture
def site():
    site = Site()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(site))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    site.base = f"http://127.0.0.1:{server.server_address[1]}"
    for i, (label, n) in enumerate(PHOTOS[:4]):
        site.image(f"/p{i}.jpg", caltech_image(label, n))
    site.image("/plain.jpg", caltech_image("sunflower", 1), validators=False)
    site.image("/changing.jpg", caltech_image("airplanes", 2))
    site.image("/error.jpg", caltech_image("Leopards", 2))
    site.pages["/error.jpg"] = (500, b"oops", {})
    site.pages["/huge.jpg"] = (200, b"", {"Content-Type": "image/jpeg", "Content-Length": "9000000"})
    site.pages["/type.jpg"] = (200, b"PK\x03\x04" + bytes(300), {"Content-Type": "image/jpeg"})
    site.pages["/page.jpg"] = (200, b"<html>hello</html>", {"Content-Type": "text/html"})
    site.pages["/loop.jpg"] = (302, b"", {"Location": "/loop.jpg"})
    site.pages["/off.jpg"] = (302, b"", {"Location": "file:///etc/passwd"})
    yield site
    server.shutdown()
    server.server_close()


def test_urls_are_indexed_skipped_when_unchanged_and_forgotten_when_gone(site, tmp_path):
    ok = ["/p0.jpg", "/p1.jpg", "/p2.jpg", "/p3.jpg", "/plain.jpg", "/changing.jpg"]
    bad = ["/missing.jpg", "/error.jpg", "/slow.jpg", "/huge.jpg", "/type.jpg", "/page.jpg",
           "/loop.jpg", "/off.jpg"]
    urls = [site.base + p for p in ok + bad]
    with lookalike.Index.open(tmp_path / "db", settings=SETTINGS) as index:
        report = index.add(urls=urls + ["", "# a comment", urls[0]], prune=True)
        assert report.urls == {"new": 6, "changed": 0, "unchanged": 0, "gone": 0, "failed": 8}
        assert len(index) == 6 and report.embedded == 6
        reasons = dict(report.failed)
        expected = {"/missing.jpg": "HTTP 404", "/error.jpg": "HTTP 500", "/slow.jpg": "longer than 1s",
                    "/huge.jpg": "over the 2,000,000-byte limit", "/type.jpg": "cannot read image",
                    "/page.jpg": "sent text/html, not an image", "/loop.jpg": "redirect loop",
                    "/off.jpg": "file:///etc/passwd' is not allowed"}
        for path, fragment in expected.items():
            assert fragment in reasons[site.base + path], reasons[site.base + path]
        assert set(index.catalogue.failures()) == {site.base + p for p in bad}
        # The URL is the location: a search for a photo finds its URL, and nothing is on disk.
        hit = index.search(str(caltech_image("Leopards", 1)), k=1).matches[0]
        assert hit.path == site.base + "/p1.jpg"
        assert sorted(p.name for p in (tmp_path / "db").iterdir() if p.suffix == ".jpg") == []

        # Second run: the changed image is re-embedded, the 500 now works, one is gone.
        site.image("/changing.jpg", caltech_image("Motorbikes", 2))
        site.image("/error.jpg", caltech_image("Leopards", 2))
        site.pages["/p3.jpg"] = (410, b"gone", {})
        site.conditional.clear()
        report = index.add(urls=urls, prune=True)
        assert report.urls == {"new": 1, "changed": 1, "unchanged": 4, "gone": 1, "failed": 7}
        assert report.embedded == 2 and report.removed == 1
        assert sorted(site.conditional) == ["/changing.jpg", "/p0.jpg", "/p1.jpg", "/p2.jpg"]
        locations = index.catalogue.files_by_location()
        assert site.base + "/p3.jpg" not in locations and len(index) == 6
        hit = index.search(str(caltech_image("Motorbikes", 2)), k=1).matches[0]
        assert hit.path == site.base + "/changing.jpg" and hit.score > 0.99
        assert site.base + "/error.jpg" not in index.catalogue.failures()

        # Without pruning a gone URL stays indexed; remove() forgets it by its URL.
        site.pages.pop("/p2.jpg")
        report = index.add(urls=urls[:3], prune=False)
        assert report.urls["gone"] == 1 and site.base + "/p2.jpg" in index.catalogue.files_by_location()
        assert index.remove([site.base + "/p2.jpg"]) == 1 and len(index) == 5


def test_private_addresses_are_refused_unless_allowed(site, tmp_path):
    settings = SETTINGS.with_(urls=UrlParams(timeout=1.0))
    with lookalike.Index.open(tmp_path / "db", settings=settings) as index:
        report = index.add(urls=[site.base + "/p0.jpg"])
    assert report.urls["failed"] == 1 and "non-public address 127.0.0.1" in report.failed[0][1]
    assert site.requests == []


def test_cli_index_urls_from_stdin_and_json(site, tmp_path, monkeypatch, capsys):
    db = str(tmp_path / "db")
    listing = "\n".join(site.base + p for p in ("/p0.jpg", "/p1.jpg", "/page.jpg"))
    monkeypatch.setattr("sys.stdin", io.StringIO(listing))
    code = cli.main(["index", "--urls", "-", "--db", db, "--allow-private-urls", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["urls"] == {"new": 2, "changed": 0, "unchanged": 0, "gone": 0, "failed": 1}
    assert out["failed"] == [{"path": site.base + "/page.jpg",
                              "reason": "the server sent text/html, not an image"}]
    query = str(caltech_image("airplanes", 1))
    assert cli.main(["search", query, "--db", db, "--json", "--top", "1",
                     "--plot", str(tmp_path / "plot.png")]) == 0
    result = json.loads(capsys.readouterr().out)[0]
    assert result["matches"][0]["path"] == site.base + "/p0.jpg"
    assert (tmp_path / "plot.png").stat().st_size > 0
    assert sorted(site.requests) == ["/p0.jpg", "/p1.jpg", "/page.jpg"]  # the plot fetched nothing
    # Without the flag the list is refused address by address; a bad line in one line.
    (tmp_path / "list.txt").write_text("ftp://example.org/a.jpg\n")
    assert cli.main(["index", "--urls", str(tmp_path / "list.txt"), "--db", db]) == 1
    assert "line 1 of the URL list is not an http(s) URL" in capsys.readouterr().err


def test_rest_indexes_urls_and_serves_them_through_the_server(site, tmp_path):
    from test_server import client_for
    from test_server_collection import wait_for_job

    with lookalike.Index.open(tmp_path / "db") as index:
        client = client_for(index, token="secret", allow_private_urls=True)
        auth = {"Authorization": "Bearer secret"}
        bad = client.post("/api/index", json={"urls": ["file:///etc/passwd"]}, headers=auth)
        assert bad.status_code == 400 and "not an http(s) URL" in bad.json()["error"]
        folder = tmp_path / "photos"
        for name in ("keep.jpg", "skip/x.jpg"):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(caltech_image("watch", 2), folder / name)
        body = {"urls": [site.base + "/p0.jpg", site.base + "/page.jpg"], "paths": [str(folder)],
                "exclude": ["skip"]}
        assert client.post("/api/index", json=body, headers=auth).status_code == 202
        status = wait_for_job(client)
        assert status["report"]["urls"]["new"] == 1 and status["report"]["urls"]["failed"] == 1
        assert str(folder / "skip/x.jpg") not in client.app.state.lookalike.index.catalogue.files_by_location()
        assert status["report"]["discovered"] == 3  # keep.jpg and the two URLs
        with open(caltech_image("airplanes", 1), "rb") as f:
            found = client.post("/api/search", files={"file": ("q.jpg", f, "image/jpeg")}).json()
        match = found["matches"][0]
        assert match["path"] == site.base + "/p0.jpg"
        # The page's images come from this server (its CSP allows no other origin).
        original = client.get(match["original_url"])
        assert original.status_code == 200 and original.content == caltech_image("airplanes", 1).read_bytes()
        thumb = client.get(match["thumbnail_url"])
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        site.image("/p0.jpg", caltech_image("watch", 3))  # changed since it was indexed
        changed = client.get(match["original_url"])
        assert changed.status_code == 404 and "changed since it was indexed" in changed.json()["error"]
        # A re-index asks the indexed URLs again: the changed one is re-embedded.
        assert client.post("/api/index", json={"reindex": True}, headers=auth).status_code == 202
        assert wait_for_job(client)["report"]["urls"]["changed"] == 1
        client.app.state.lookalike.close()  # the index the runs swapped in
