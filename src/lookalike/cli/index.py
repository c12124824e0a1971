"""``lookalike index``: add folders and files to an index (incremental), and ``remove``."""

from __future__ import annotations

import json
import sys

from ..errors import LookalikeError
from ..query.results import shown_path
from .common import (
    DEFAULTS,
    EXIT_INTERRUPTED,
    open_index,
    positive_int,
    waiting,
    with_db,
    with_exclude,
    with_no_wait,
)


def register(sub) -> dict:
    p = sub.add_parser("index", help="index image folders (incremental: only new or changed files)")
    p.add_argument("paths", nargs="*", metavar="DIR", help="folders or image files to index")
    with_db(p)
    p.add_argument("--urls", metavar="FILE", help="also index the images at these http(s) URLs, one a line ('-': standard input), by reference")
    p.add_argument("--allow-private-urls", action="store_true", help="let --urls fetch from loopback and private networks")
    with_exclude(p)
    p.add_argument("--model", help=f"model for a new index: {DEFAULTS.model} (default), lite0, lite1 or lite2 (float, larger and slower: docs/benchmarks.md)")
    p.add_argument("--batch-size", type=positive_int, help=f"images embedded and committed together (default {DEFAULTS.batch_size})")
    p.add_argument("--threads", type=int, help="inference threads (default: all cores)")
    p.add_argument("--no-prune", action="store_true", help="keep entries of files that were deleted")
    p.add_argument("--json", action="store_true", help="print the run report as JSON")
    p.add_argument("--store", metavar="milvus://HOST:PORT/COLLECTION", help="keep the vectors in this Milvus collection (recorded in the index; every later command uses it: docs/scale.md)")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS", help="decode and embed on a Ray cluster at ADDRESS, or on a local one without it (docs/scale.md)")
    with_no_wait(p)

    p = sub.add_parser("remove", help="forget files or folders from the index")
    p.add_argument("paths", nargs="+", metavar="PATH")
    with_db(p)
    with_no_wait(p)
    return {"index": cmd_index, "remove": cmd_remove}


def cmd_index(args) -> int:
    from ..paths import check_paths
    from ..progress import Progress

    if not args.paths and not args.urls:
        raise LookalikeError("nothing to index: give folders or files, or --urls FILE")
    check_paths(args.paths)  # before the index is created: a typo creates nothing
    urls = read_urls(args.urls) if args.urls else []
    with open_index(args, create=True, model=args.model, writes=True) as index:
        progress = Progress("indexing")
        try:
            report = index.add(args.paths, urls=urls, exclude=args.exclude,
                               prune=not args.no_prune, progress=progress, ray=args.ray,
                               **waiting(args, index.path))
        finally:
            progress.close()
        if args.json:
            print(json.dumps(report.as_dict(), indent=2))  # failed paths carry path_bytes
        else:
            print_report(report, index)
        if report.interrupted:
            print("interrupted: finished batches are saved; run the same command to resume", file=sys.stderr)
            return EXIT_INTERRUPTED
    return 0


def read_urls(name: str) -> list[str]:
    """The URLs of a list file, or of standard input for ``-``."""
    from ..sources import read_url_list

    if name == "-":
        return read_url_list(sys.stdin)
    try:
        with open(name, encoding="utf-8", errors="replace") as f:
            return read_url_list(f)
    except OSError as exc:
        raise LookalikeError(f"cannot read the URL list {name}: {exc.strerror or exc}") from None


def print_report(report, index) -> None:
    """The run report in a few lines; each failed file on stderr with its reason."""
    print(
        f"{report.embedded} embedded, {report.reused} reused (moved or duplicate), "
        f"{report.unchanged} unchanged, {report.removed} removed, "
        f"{len(report.failed)} failed in {report.seconds:.1f} s"
        + (f" ({report.images_per_second:.1f} images/s)" if report.embedded else "")
    )
    if report.urls:
        print("URLs: " + ", ".join(f"{n} {outcome}" for outcome, n in report.urls.items()))
    print(f"index: {shown_path(str(index.path))} ({len(index)} images)")
    for location, reason in report.failed:
        print(f"  skipped {shown_path(location)}: {reason}", file=sys.stderr)
    if report.skipped_known_bad:
        print(f"  {report.skipped_known_bad} unchanged files that failed before were skipped", file=sys.stderr)


def cmd_remove(args) -> int:
    with open_index(args, writes=True) as index:
        removed = index.remove(args.paths, **waiting(args, index.path))
        print(f"removed {removed} files; {len(index)} images left")
    return 0
