"""``lookalike serve``: a web page and a REST API over one index (FastAPI + uvicorn).

The web dependencies are optional (``pip install 'lookalike[server]'``). This module imports
none of them, so the CLI can check :func:`missing_dependencies` and say what to install
instead of failing with a traceback; :mod:`lookalike.server.app` builds the app itself from
the other modules of this package.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import ServerConfig

# distribution name -> importable module names (python-multipart renamed its module)
_DEPENDENCIES = {
    "fastapi": ("fastapi",),
    "uvicorn": ("uvicorn",),
    "python-multipart": ("python_multipart", "multipart"),
}
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def missing_dependencies() -> list[str]:
    """Distributions the server needs that are not installed (without importing them)."""
    return [
        dist
        for dist, modules in _DEPENDENCIES.items()
        if not any(importlib.util.find_spec(m) for m in modules)
    ]


def trusted_hosts(host: str) -> tuple[str, ...] | None:
    """Host headers to accept: on loopback only loopback names, which defeats DNS rebinding
    (a web page in the user's browser reading their photos); bound wider, any name."""
    if host == "::1":
        host = "[::1]"  # as it appears in a Host header
    if host in _LOOPBACK_NAMES or host.startswith("127."):
        return tuple(dict.fromkeys((*_LOOPBACK_NAMES, host)))
    return None


def serve(
    db: str | os.PathLike,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    config: ServerConfig | None = None,
    log_level: str = "info",
) -> None:
    """Open the index at ``db`` (it must exist) and serve it until interrupted."""
    import uvicorn

    from ..api import Index
    from .app import ServerConfig, create_app

    config = config or ServerConfig()
    if config.allowed_hosts is None:
        config = replace(config, allowed_hosts=trusted_hosts(host))
    index = Index.open(db, create=False)
    app = create_app(index, config)
    try:
        if config.watch:
            app.state.lookalike.watch(list(config.watch))
        _ = index.store, index.embedder.session  # load now, not on the first query
        mode = "read-only" if config.token is None else "write endpoints need the token"
        print(f"lookalike: {index.path} ({len(index)} images), {mode}", file=sys.stderr)
        if config.allowed_hosts is None:
            print(
                f"warning: listening on {host}: anyone who can reach port {port} can search "
                "the collection and download its images",
                file=sys.stderr,
            )
        uvicorn.run(app, host=host, port=port, log_level=log_level, server_header=False)
    finally:
        app.state.lookalike.close()
