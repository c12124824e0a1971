"""The ``lookalike`` command line: a thin layer over :class:`lookalike.Index`, one module per
group of commands, each with a ``register(sub)`` that adds its parsers and returns its
``{name: run}``.

Every user mistake ends in a one-line ``error: ...`` message and a non-zero exit code, never
a traceback. Exit codes: 0 success, 1 error, 2 usage error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Callable

from ..errors import LookalikeError, storage_error
from ..query.results import shown_path
from ..version import __version__
from . import dupes, examine, index, search, serve, tags, watch
from .common import EXIT_ERROR, EXIT_INTERRUPTED
from .examples import add_examples
from .interrupts import interrupts_outside_finalizers

COMMAND_MODULES = (index, search, examine, dupes, serve, tags, watch)
# Commands whose matrix products are small (a few queries against the store): OpenBLAS runs
# them on one thread, which spares a fresh process its thread pool's start-up (NumPy starts
# it on import, one spinning thread per core). A user's own OPENBLAS_NUM_THREADS wins.
ONE_BLAS_THREAD = frozenset({"search"})
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lookalike",
        description="Reverse image search for your own image collections.",
    )
    parser.add_argument("--version", action="version", version=f"lookalike {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        for name, run in module.register(sub).items():
            COMMANDS.setdefault(name, run)  # a test may have put its own in
    add_examples(parser, sub.choices)
    return parser


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a name no escaping caught must not crash a run
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    if args.command in ONE_BLAS_THREAD and "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        with interrupts_outside_finalizers():
            return COMMANDS[args.command](args)
    except LookalikeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except (sqlite3.Error, OSError) as exc:  # storage: a full disk, read-only media, damage
        print(f"error: {_storage_message(exc, getattr(args, 'db', '.'))}", file=sys.stderr)
        return EXIT_ERROR
    except ImportError as exc:
        if isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
            # Ctrl-C while a native library (ONNX Runtime, OpenCV) was being loaded
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        raise


def _storage_message(exc: sqlite3.Error | OSError, db: str) -> str:
    """One line for a storage failure: named when known, else the system's own words."""
    known = storage_error(exc, os.path.expanduser(db))
    if known is not None:
        return str(known)
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {shown_path(os.fsdecode(exc.filename))}" if exc.filename else ""
        return f"{exc.strerror.lower()}{where}"
    return f"the index at {shown_path(os.path.abspath(os.path.expanduser(db)))}: {exc}"
