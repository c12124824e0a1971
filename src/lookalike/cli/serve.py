"""``lookalike serve``: the web page and REST API for an index."""

from __future__ import annotations

import os
import sys

from ..server.config import ServerConfig
from .common import EXIT_ERROR, positive_int, with_db

SERVER = ServerConfig()


def register(sub) -> dict:
    p = sub.add_parser("serve", help="web page and REST API for an index (see docs/server.md)")
    with_db(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--token", default=os.environ.get("LOOKALIKE_TOKEN"), help="enable write endpoints for 'Authorization: Bearer TOKEN' (default: $LOOKALIKE_TOKEN; none: read-only)")
    p.add_argument("--allow-private-urls", action="store_true", help="let URL searches fetch from loopback and private networks")
    p.add_argument("--max-upload-mb", type=float, default=SERVER.max_upload_bytes / 2**20, help="largest accepted upload or download in MB (default %(default)g)")
    p.add_argument("--max-pixels", type=positive_int, default=SERVER.max_pixels, help="largest query image in pixels (default %(default)s)")
    p.add_argument("--watch", action="append", default=[], metavar="DIR", help="index DIR now and keep the index in sync with it while serving, as 'lookalike watch' (repeatable)")
    return {"serve": cmd_serve}


def cmd_serve(args) -> int:
    from ..server import missing_dependencies

    missing = missing_dependencies()
    if missing:
        print(f"error: the server needs {', '.join(missing)}: pip install 'lookalike[server]'", file=sys.stderr)
        return EXIT_ERROR
    from ..paths import check_paths
    from ..server import serve

    config = ServerConfig(
        watch=tuple(check_paths(args.watch)),
        token=args.token or None,
        allow_private_urls=args.allow_private_urls,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_pixels=args.max_pixels,
    )
    serve(args.db, host=args.host, port=args.port, config=config)
    return 0
