"""What every command shares: the options spelled once (``--db``, ``--no-wait``,
``--pipeline``), opening the index, waiting for another writer, and the exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from ..settings import DEFAULT_PIPELINE, Settings

DEFAULT_DB = "lookalike-index"
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130

DEFAULTS = Settings()


def default_db() -> str:
    return os.environ.get("LOOKALIKE_DB", DEFAULT_DB)


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def with_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=default_db(),
                   help=f"index folder (default: $LOOKALIKE_DB or ./{DEFAULT_DB})")


def with_no_wait(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-wait", action="store_true", help="fail at once when another lookalike run is writing to the index, instead of waiting for it")


def with_exclude(p: argparse.ArgumentParser) -> None:
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="skip files and folders matching GLOB (repeatable; a .lookalikeignore file in a folder does the same; hidden files and OS litter are always skipped)")


def with_pipeline(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pipeline", metavar="SPEC", help=f"the ranking stages (default: {DEFAULT_PIPELINE}; see docs/descriptor.md)")


def open_index(args, *, create: bool = False, model: str | None = None, writes: bool = False):
    """The index of ``--db``, with the run's ``--batch-size``/``--threads``; with ``writes``
    it fails before any work (not at the first commit) when the index cannot be written."""
    from ..api import Index

    changes = {}
    if getattr(args, "batch_size", None):
        changes["batch_size"] = args.batch_size
    if getattr(args, "threads", None) is not None:
        changes["threads"] = args.threads
    if getattr(args, "allow_private_urls", False):
        changes["urls"] = replace(DEFAULTS.urls, allow_private=True)
    index = Index.open(args.db, model=model, settings=Settings(**changes), create=create,
                       store=getattr(args, "store", None))
    if writes:
        try:
            index.catalogue.require_writable()
        except BaseException:
            index.close()
            raise
    return index


def waiting(args, folder: Path) -> dict:
    """The ``wait``/``on_wait`` of Index.add and remove: wait for another writer, saying so
    once on stderr, or with --no-wait fail at once."""
    def say() -> None:
        print(f"another lookalike run is writing to {folder}; waiting (Ctrl-C to stop)",
              file=sys.stderr, flush=True)

    return {"wait": not args.no_wait, "on_wait": say}
