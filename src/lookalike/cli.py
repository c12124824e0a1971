"""The ``lookalike`` command line: a thin layer over :class:`lookalike.Index`.

Every user mistake ends in a one-line ``error: ...`` message and a non-zero exit code, never
a traceback. Exit codes: 0 success, 1 error, 2 usage error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from pathlib import Path

from .errors import LookalikeError, storage_error
from .query.options import RERANK_METHODS, ROUTES, SearchOptions
from .query.results import path_fields, shown_path
from .server.config import ServerConfig
from .settings import DEFAULT_PIPELINE, Settings
from .version import __version__

DEFAULT_DB = "lookalike-index"
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


DEFAULTS = Settings()
SERVER = ServerConfig()


def _default_db() -> str:
    return os.environ.get("LOOKALIKE_DB", DEFAULT_DB)


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lookalike",
        description="Reverse image search for your own image collections.",
    )
    parser.add_argument("--version", action="version", version=f"lookalike {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_pipeline(p: argparse.ArgumentParser) -> None:
        p.add_argument("--pipeline", metavar="SPEC", help=f"the ranking stages (default: {DEFAULT_PIPELINE}; see docs/descriptor.md)")

    def with_db(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--db",
            default=_default_db(),
            help=f"index folder (default: $LOOKALIKE_DB or ./{DEFAULT_DB})",
        )

    def with_no_wait(p: argparse.ArgumentParser) -> None:
        p.add_argument("--no-wait", action="store_true", help="fail at once when another lookalike run is writing to the index, instead of waiting for it")

    p = sub.add_parser("index", help="index image folders (incremental: only new or changed files)")
    p.add_argument("paths", nargs="+", metavar="DIR", help="folders or image files to index")
    with_db(p)
    p.add_argument("--model", help=f"model for a new index: {DEFAULTS.model} (default), lite0, lite1 or lite2 (float, larger and slower: docs/benchmarks.md)")
    p.add_argument("--batch-size", type=_positive_int, help=f"images per inference batch (default {DEFAULTS.batch_size})")
    p.add_argument("--threads", type=int, help="inference threads (default: all cores)")
    p.add_argument("--no-prune", action="store_true", help="keep entries of files that were deleted")
    p.add_argument("--json", action="store_true", help="print the run report as JSON")
    with_no_wait(p)

    p = sub.add_parser("search", help="find the indexed images most similar to query images")
    p.add_argument("queries", nargs="+", metavar="QUERY", help="image files or folders of images")
    with_db(p)
    p.add_argument("--top", "-k", type=_positive_int, default=SearchOptions.default("k"), help="matches per query (default %(default)s)")
    p.add_argument("--label", action="append", metavar="NAME", help="only images with this ImageNet label (repeatable)")
    p.add_argument("--route", choices=ROUTES, default=SearchOptions.default("route"), help="global (default): every image; categories: only images sharing a predicted category with the query, as the 2019 script searched")
    p.add_argument("--min-score", type=float, help="drop matches with cosine similarity below this")
    p.add_argument("--json", action="store_true", help="print one JSON document (see docs/cli.md)")
    p.add_argument("--plot", metavar="PNG", help="write a picture of the query and its matches")
    p.add_argument("--add", action="store_true", help="add the query images to the index after searching")
    with_no_wait(p)
    with_pipeline(p)
    p.add_argument("--rerank", choices=RERANK_METHODS, help="shorthand for the pipeline's re-ranking: auto (diffusion or query expansion by collection size), diffusion, qe or none")
    p.add_argument("--verify", type=_non_negative_int, metavar="N", help="shorthand: spatially verify the first N matches so copies of the query come first (0: no verification at all)")
    p.add_argument("--words", type=_non_negative_int, metavar="N", help="shorthand: also verify N candidates found by the query's visual words: finds thumbnails, small crops and blurred copies (0: off)")
    p.add_argument("--regions", type=_non_negative_int, metavar="N", help="shorthand: if no match is a sure copy, verify N candidates of a search by regions of the query: finds photos pasted into a larger picture (0: off)")

    p = sub.add_parser("remove", help="forget files or folders from the index")
    p.add_argument("paths", nargs="+", metavar="PATH")
    with_db(p)
    with_no_wait(p)

    p = sub.add_parser("info", help="show what an index holds")
    with_db(p)
    p.add_argument("--json", action="store_true", help="print as JSON")

    p = sub.add_parser("eval", help="measure retrieval quality (mAP, P@1, P@10, recall@K) of an index")
    with_db(p)
    p.add_argument("--truth", metavar="CSV", help="ground truth CSV: query,relevant[;relevant...] (default: same folder = relevant)")
    p.add_argument("--json", action="store_true", help="print as JSON")
    with_pipeline(p)
    p.add_argument("--rerank", choices=RERANK_METHODS, help="shorthand for the pipeline's re-ranking (none with --verify 0: the plain cosine ranking)")
    p.add_argument("--verify", type=_non_negative_int, metavar="N", help="shorthand: spatially verify the first N matches of every query (0: no verification)")
    p.add_argument("--queries", type=_positive_int, metavar="N", help="evaluate a fixed-seed sample of N queries instead of every image")
    p.add_argument("--ann-recall", action="store_true", help="also report recall@10 of the index's vector store against exact search (1.0 for an exact store)")

    p = sub.add_parser("check", help="check an index for damage and inconsistencies (exit 1 if any)")
    with_db(p)
    p.add_argument("--repair", action="store_true", help="rebuild the derived files; recover what a damaged catalogue still holds (the old file is kept)")
    p.add_argument("--json", action="store_true", help="print as JSON")

    p = sub.add_parser("serve", help="web page and REST API for an index (see docs/server.md)")
    with_db(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--token", default=os.environ.get("LOOKALIKE_TOKEN"), help="enable write endpoints for 'Authorization: Bearer TOKEN' (default: $LOOKALIKE_TOKEN; none: read-only)")
    p.add_argument("--allow-private-urls", action="store_true", help="let URL searches fetch from loopback and private networks")
    p.add_argument("--max-upload-mb", type=float, default=SERVER.max_upload_bytes / 2**20, help="largest accepted upload or download in MB (default %(default)g)")
    p.add_argument("--max-pixels", type=_positive_int, default=SERVER.max_pixels, help="largest query image in pixels (default %(default)s)")
    return parser


def _open(args, *, create: bool = False, model: str | None = None, writes: bool = False):
    from .api import Index
    from .settings import Settings

    changes = {}
    if getattr(args, "batch_size", None):
        changes["batch_size"] = args.batch_size
    if getattr(args, "threads", None) is not None:
        changes["threads"] = args.threads
    index = Index.open(args.db, model=model, settings=Settings(**changes), create=create)
    if writes:  # fail before any work, not at the first commit
        try:
            index.catalogue.require_writable()
        except BaseException:
            index.close()
            raise
    return index


def _waiting(args, folder: Path) -> dict:
    """The ``wait``/``on_wait`` of Index.add and remove: wait for another writer, saying so
    once on stderr, or with --no-wait fail at once."""
    def say() -> None:
        print(f"another lookalike run is writing to {folder}; waiting (Ctrl-C to stop)",
              file=sys.stderr, flush=True)

    return {"wait": not args.no_wait, "on_wait": say}


def cmd_index(args) -> int:
    from .paths import check_paths
    from .progress import Progress

    check_paths(args.paths)  # before the index is created: a typo creates nothing
    with _open(args, create=True, model=args.model, writes=True) as index:
        progress = Progress("indexing")
        try:
            report = index.add(args.paths, prune=not args.no_prune, progress=progress,
                               **_waiting(args, index.path))
        finally:
            progress.close()
        if args.json:
            print(json.dumps(report.as_dict(), indent=2))  # failed paths carry path_bytes
        else:
            print(
                f"{report.embedded} embedded, {report.reused} reused (moved or duplicate), "
                f"{report.unchanged} unchanged, {report.removed} removed, "
                f"{len(report.failed)} failed in {report.seconds:.1f} s"
                + (f" ({report.images_per_second:.1f} images/s)" if report.embedded else "")
            )
            print(f"index: {shown_path(str(index.path))} ({len(index)} images)")
            for location, reason in report.failed:
                print(f"  skipped {shown_path(location)}: {reason}", file=sys.stderr)
            if report.skipped_known_bad:
                print(f"  {report.skipped_known_bad} unchanged files that failed before were skipped", file=sys.stderr)
        if report.interrupted:
            print("interrupted: finished batches are saved; run the same command to resume", file=sys.stderr)
            return EXIT_INTERRUPTED
    return 0


def cmd_search(args) -> int:
    from .paths import expand_query_paths

    queries = expand_query_paths(args.queries)
    options = SearchOptions(
        k=args.top, label=args.label, route=args.route, min_score=args.min_score,
        pipeline=args.pipeline, rerank=args.rerank, verify=args.verify, words=args.words,
        regions=args.regions,
    )
    with _open(args, writes=args.add) as index:
        index.pipeline(options)  # a bad --pipeline fails before anything is embedded
        results = index.search_many(queries, options=options)
        if args.json:
            print(json.dumps([r.as_dict() for r in results], indent=2))
        else:
            for result in results:
                fallback = "  (too few category matches: searched everything)" if result.route == "categories+global" else ""
                print(f"query {shown_path(result.query)}  [{', '.join(result.query_labels[:3])}]{fallback}")
                if not result.matches:
                    print("  no matches")
                for m in result.matches:
                    print(f"  {m.rank:>3}  {m.score:.3f}  {shown_path(m.path)}  [{', '.join(m.labels[:3])}]")
        if args.plot:
            from .plot import plot_result

            for i, result in enumerate(results):
                out = Path(args.plot)
                if len(results) > 1:
                    out = out.with_name(f"{out.stem}-{i + 1}{out.suffix or '.png'}")
                written = plot_result(result, out)
                print(f"plot: {written}", file=sys.stderr)
        if args.add:
            report = index.add(queries, **_waiting(args, index.path))
            print(f"added {report.embedded + report.reused} query images to the index", file=sys.stderr)
    return 0


def cmd_remove(args) -> int:
    with _open(args, writes=True) as index:
        removed = index.remove(args.paths, **_waiting(args, index.path))
        print(f"removed {removed} files; {len(index)} images left")
    return 0


def cmd_info(args) -> int:
    with _open(args) as index:
        info = index.info()
    info.update(path_fields(info["path"]))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"index        {info['path']}")
    print(f"images       {info['images']} ({info['files']} files, {info['failed_files']} unreadable)")
    print(f"model        {info['model']} ({info['model_id']})")
    print(f"verifiable   {info['images_with_local_features']} images with stored local features")
    print(f"search       {info['store']} store, {info['rerank']} re-ranking by default")
    print(f"descriptors  {info['transform']}")
    print(f"format       {info['format_version']}")
    print(f"size         {info['bytes_on_disk'] / 1e6:.1f} MB on disk")
    if info["top_labels"]:
        print("top labels")
        for row in info["top_labels"]:
            print(f"  {row['images']:>6}  {row['label']}")
    return 0


def cmd_eval(args) -> int:
    from .evaluate import ann_recall, evaluate_index
    from .progress import Progress

    with _open(args) as index:
        progress = Progress("evaluating", unit="queries")
        try:
            options = SearchOptions(pipeline=args.pipeline, rerank=args.rerank, verify=args.verify)
            report = evaluate_index(
                index, args.truth, options=options, sample=args.queries, progress=progress
            )
        finally:
            progress.close()
        metrics = report.as_dict()
        if args.ann_recall:
            recall = ann_recall(index)
            metrics["ann_recall@10"] = recall["recall@10"]
            metrics["store"] = recall["store"]
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        for name, value in metrics.items():
            print(f"{name:<12} {value}")
    return 0


def cmd_check(args) -> int:
    from .index.check import check_index

    report = check_index(args.db, repair=args.repair)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0 if report.healthy else EXIT_ERROR
    where = shown_path(report.path)
    for kind, lines in (("problem", report.problems), ("note", report.notes),
                        ("lost", report.lost), ("repaired", report.repaired),
                        ("remaining", report.remaining or [])):
        for line in lines:
            print(f"{kind}: {line}")
    if report.healthy:
        print(f"ok: the index at {where} is " + ("repaired" if report.repaired else "healthy"))
        return 0
    left = len(report.problems if report.remaining is None else report.remaining)
    hint = "" if report.remaining is not None else f"; run: lookalike check --db {where} --repair"
    print(f"{left} problem{'s' * (left != 1)} in the index at {where}{hint}")
    return EXIT_ERROR


def cmd_serve(args) -> int:
    from .server import missing_dependencies

    missing = missing_dependencies()
    if missing:
        print(f"error: the server needs {', '.join(missing)}: pip install 'lookalike[server]'", file=sys.stderr)
        return EXIT_ERROR
    from .server import serve

    config = ServerConfig(
        token=args.token or None,
        allow_private_urls=args.allow_private_urls,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_pixels=args.max_pixels,
    )
    serve(args.db, host=args.host, port=args.port, config=config)
    return 0


COMMANDS = {
    "index": cmd_index,
    "search": cmd_search,
    "remove": cmd_remove,
    "info": cmd_info,
    "eval": cmd_eval,
    "check": cmd_check,
    "serve": cmd_serve,
}


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a name no escaping caught must not crash a run
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    try:
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


if __name__ == "__main__":
    sys.exit(main())
