"""``lookalike watch``: keep an index in sync with folders while it runs."""

from __future__ import annotations

import os
import sys
import time

from ..errors import LookalikeError
from .common import DEFAULTS, open_index, with_db, with_exclude


def register(sub) -> dict:
    p = sub.add_parser("watch", help="keep an index in sync with folders while it runs (Ctrl-C stops)")
    p.add_argument("paths", nargs="+", metavar="DIR", help="folders to watch (indexed first)")
    with_db(p)
    with_exclude(p)
    p.add_argument("--no-prune", action="store_true", help="keep entries of files that were deleted or moved away")
    p.add_argument("--quiet", type=float, default=DEFAULTS.watch.quiet, metavar="SECONDS", help="seconds without a change before a burst of changes is indexed as one run (default %(default)g)")
    return {"watch": cmd_watch}


def cmd_watch(args) -> int:
    from dataclasses import replace

    from ..paths import check_paths
    from ..watching import FolderWatcher, apply_to
    from .index import print_report

    roots = check_paths(args.paths)
    for root in roots:
        if not os.path.isdir(root):
            raise LookalikeError(f"not a folder: {root} (watch folders; index single files with 'lookalike index')")
    prune = not args.no_prune
    with open_index(args, create=True, writes=True) as index:
        def apply(batch) -> None:
            started = time.strftime("%H:%M:%S")
            report = apply_to(index, batch, globs=args.exclude, prune=prune)
            if report is not None:
                print(f"{started} ", end="")
                print_report(report, index)
            else:
                print(f"{started} forgot {len(batch.gone)} moved or deleted paths; {len(index)} images")
            sys.stdout.flush()

        params = replace(index.settings.watch, quiet=args.quiet)
        watcher = FolderWatcher(roots, apply, params, globs=args.exclude, exclude=[index.path])
        watcher.start()  # first: what changes during the first run is not missed
        try:
            report = index.add(roots, exclude=args.exclude, prune=prune)
            print_report(report, index)
            print(f"watching {len(roots)} folder(s); Ctrl-C stops", file=sys.stderr, flush=True)
            watcher.run()
        except KeyboardInterrupt:
            print("stopped: every finished batch is saved", file=sys.stderr)
        finally:
            watcher.close()
    return 0
