"""The real server for tests that need a socket (a browser, a schema-driven client):
uvicorn on a free 127.0.0.1 port in a background thread, stopped on exit."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from lookalike import Index
from lookalike.server.app import ServerConfig, create_app


@contextmanager
def serve(index_path: Path, config: ServerConfig | None = None) -> Iterator[str]:
    """The base URL of a server over the index at ``index_path``; the socket is bound first,
    so the port cannot be taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    with Index.open(index_path, create=False) as index:
        server = uvicorn.Server(uvicorn.Config(create_app(index, config), log_level="warning"))
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
