"""A web server redirecting to a private address, with private addresses refused (the default).

The test servers live in the session's private network namespace (``private_network`` in
conftest: nothing outside this process can reach them). There the loopback interface also
carries a *global* address, so the first hop is a public server as far as the URL guard can tell, and
its redirect to 127.0.0.1 is what must be refused, before any request reaches that server."""

from __future__ import annotations

import http.server
import subprocess
import threading

import pytest

import lookalike
from conftest import caltech_image
from lookalike.errors import ImageError
from lookalike.fetch import fetch_url
from lookalike.settings import Settings, UrlParams

PUBLIC = "1.2.3.4"  # global unicast; exists only inside the namespace


def _serve(host: str, pages: dict[str, tuple[int, bytes, dict[str, str]]], seen: list[str]):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            seen.append(self.path)
            status, body, headers = pages.get(self.path, (404, b"no", {}))
            self.send_response(status)
            for key, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def web(private_network):
    """A 'public' server on 1.2.3.4 and a private one on 127.0.0.1, both in the namespace."""
    photo = caltech_image("Leopards", 3).read_bytes()
    jpeg = {"Content-Type": "image/jpeg"}
    with private_network.inside():
        subprocess.run(["ip", "addr", "add", f"{PUBLIC}/32", "dev", "lo"], check=True)
        try:
            inner_seen: list[str] = []
            inner = _serve("127.0.0.1", {"/secret.jpg": (200, photo, jpeg)}, inner_seen)
            inner_url = f"http://127.0.0.1:{inner.server_address[1]}/secret.jpg"
            outer_seen: list[str] = []
            pages: dict[str, tuple[int, bytes, dict[str, str]]] = {}
            outer = _serve(PUBLIC, pages, outer_seen)  # pages filled once the port is known
            base = f"http://{PUBLIC}:{outer.server_address[1]}"
            pages.update({"/photo.jpg": (200, photo, jpeg),
                          "/to-public.jpg": (302, b"", {"Location": f"{base}/photo.jpg"}),
                          "/to-private.jpg": (302, b"", {"Location": inner_url})})
            yield {"base": base, "photo": photo, "inner_seen": inner_seen, "outer_seen": outer_seen}
            for server in (outer, inner):
                server.shutdown()
                server.server_close()
        finally:
            subprocess.run(["ip", "addr", "del", f"{PUBLIC}/32", "dev", "lo"], check=True)


def test_a_redirect_to_a_private_address_is_refused_before_it_is_requested(web):
    base = web["base"]
    status, body, _ = fetch_url(f"{base}/photo.jpg")  # the public first hop is allowed
    assert status == 200 and body == web["photo"]
    status, body, _ = fetch_url(f"{base}/to-public.jpg")  # and so is a public redirect
    assert status == 200 and body == web["photo"]
    with pytest.raises(ImageError, match="private"):
        fetch_url(f"{base}/to-private.jpg")
    assert web["inner_seen"] == []  # the private server never saw a request
    assert "/to-private.jpg" in web["outer_seen"]
    # The refusal is the guard's: allowed, the same redirect is followed.
    status, body, _ = fetch_url(f"{base}/to-private.jpg", allow_private=True)
    assert status == 200 and body == web["photo"] and web["inner_seen"] == ["/secret.jpg"]


def test_indexing_by_url_reports_the_refused_redirect_and_keeps_the_rest(web, tmp_path):
    base = web["base"]
    settings = Settings(urls=UrlParams(workers=2, timeout=2.0))  # allow_private stays off
    with lookalike.Index.open(tmp_path / "db", settings=settings) as index:
        report = index.add(urls=[f"{base}/photo.jpg", f"{base}/to-private.jpg"])
        assert report.embedded == 1 and len(index) == 1
        reasons = dict(report.failed)
        assert "private" in reasons[f"{base}/to-private.jpg"]
    assert web["inner_seen"] == []
