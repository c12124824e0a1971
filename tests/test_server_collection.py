"""The server's collection endpoints (indexing with the write token and its job), its
hardening (trusted hosts) and the ``lookalike serve`` command."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import warnings

import pytest

with warnings.catch_warnings():  # Starlette >= 1.x nags about httpx on import
    warnings.filterwarnings("ignore", message="Using `httpx`")
    from fastapi.testclient import TestClient

from test_server import CLASSES, assert_error, client, client_for, collection, upload

from conftest import PER_CLASS, copy_subset
from lookalike import Index
from lookalike.server import trusted_hosts
from lookalike.server.routes_collection import indexed_folders


# --- write endpoints ------------------------------------------------------------------------
def test_write_endpoint_on_read_only_server_is_403(client):
    assert_error(client.post("/api/index", json={"reindex": True}), 403, "--token")


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic c2VjcmV0", "Bearer "])
def test_write_endpoint_with_wrong_token_is_401(index, header):
    guarded = client_for(index, token="secret")
    headers = {"Authorization": header} if header else {}
    response = guarded.post("/api/index", json={"reindex": True}, headers=headers)
    assert_error(response, 401, "token")
    assert response.headers["www-authenticate"] == "Bearer"


def wait_for_job(client: TestClient, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get("/api/index").json()
        if status["state"] != "running":
            return status
        time.sleep(0.1)
    raise AssertionError("indexing did not finish")


def test_add_and_reindex_with_the_token(collection, tmp_path):
    shutil.copytree(collection.db, tmp_path / "index")
    photos = shutil.copytree(collection.photos, tmp_path / "photos")
    extra = copy_subset(tmp_path / "extra", classes=("ant",), per_class=2)
    with Index.open(tmp_path / "index", create=False) as index:
        # The copied catalogue points at the session's photos; re-point it with a re-index
        # of the copies, which must leave the original collection alone.
        index.add([photos])  # known content: no embedding, and nothing orphaned below
        index.remove([collection.photos])
        guarded = client_for(index, token="secret")
        auth = {"Authorization": "Bearer secret"}
        assert guarded.get("/api/index").json() == {"state": "idle"}

        response = guarded.post("/api/index", json={"paths": [str(extra)]}, headers=auth)
        assert response.status_code == 202, response.text
        status = wait_for_job(guarded)
        assert status["state"] == "done", status
        assert status["report"]["embedded"] == 2
        assert guarded.get("/api/info").json()["images"] == len(CLASSES) * PER_CLASS + 2
        ant = extra / "ant" / "image_0001.jpg"
        assert upload(guarded, ant, k=1).json()["matches"][0]["path"] == str(ant)

        (photos / "watch" / "image_0001.jpg").unlink()
        response = guarded.post("/api/index", json={"reindex": True}, headers=auth)
        assert response.status_code == 202, response.text
        status = wait_for_job(guarded)
        unchanged = len(CLASSES) * PER_CLASS - 1 + 2  # the photos left, and the ants
        assert status["report"]["removed"] == 1 and status["report"]["unchanged"] == unchanged
        assert guarded.get("/api/info").json()["images"] == len(CLASSES) * PER_CLASS + 1
        guarded.app.state.lookalike.close()  # the index swapped in by the runs


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"paths": ["relative/folder"]}, 400, "absolute"),
        ({"paths": ["/no/such/folder"]}, 400, "no such"),
        ({}, 422, "nothing to index"),
        ({"paths": "not a list"}, 422, "paths"),
    ],
)
def test_bad_index_requests(index, body, status, fragment):
    guarded = client_for(index, token="secret")
    response = guarded.post("/api/index", json=body, headers={"Authorization": "Bearer secret"})
    assert_error(response, status, fragment)


# --- helpers and hardening ------------------------------------------------------------------
def test_indexed_folders_are_the_fewest_covering_folders():
    files = ["/a/b/1.jpg", "/a/b-x/2.jpg", "/a/b/c/3.jpg", "/a/b/c/d/4.jpg", "/z/5.jpg"]
    assert indexed_folders(files) == ["/a/b", "/a/b-x", "/z"]


def test_loopback_server_refuses_foreign_host_headers(index):
    assert trusted_hosts("0.0.0.0") is None
    assert trusted_hosts("::1") == ("127.0.0.1", "localhost", "[::1]")
    guarded = client_for(index, allowed_hosts=trusted_hosts("127.0.0.1"))
    assert_error(guarded.get("/api/info"), 400, "unexpected host header 'testserver'")
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", "LOCALHOST"):
        assert guarded.get("/api/info", headers={"host": host}).status_code == 200


def test_cli_explains_missing_server_dependencies(monkeypatch, capsys):
    from lookalike import cli, server

    monkeypatch.setattr(server, "missing_dependencies", lambda: ["fastapi"])
    assert cli.main(["serve", "--db", "nowhere"]) == 1
    assert "pip install 'lookalike[server]'" in capsys.readouterr().err


def test_cli_serve_needs_an_existing_index(tmp_path, capsys):
    from lookalike import cli

    assert cli.main(["serve", "--db", str(tmp_path / "missing")]) == 1
    assert "no index at" in capsys.readouterr().err


def test_cli_serve_runs_a_loopback_server(collection):
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "lookalike", "serve", "--db", str(collection.db)]
    process = subprocess.Popen(
        [*command, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    info = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                info = httpx.get(f"{base}/api/info", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert process.poll() is None, process.stderr.read().decode()
        assert info is not None and info.status_code == 200 and info.json()["read_only"] is True
        assert httpx.get(f"{base}/api/info", headers={"host": "evil.example"}).status_code == 400
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert "read-only" in err.decode()
