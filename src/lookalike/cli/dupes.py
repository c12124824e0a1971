"""``lookalike dupes``: groups of duplicate files (exact, edited copies, similar shots), each
with a suggested file to keep; and ``--not-duplicate`` to keep a group apart for good.
lookalike never deletes anything."""

from __future__ import annotations

import csv
import json
import sys

from ..query.results import shown_path
from ..settings import DEFAULT_DUPE_LEVEL, DUPE_LEVELS
from .common import DEFAULTS, open_index, positive_int, with_db

CSV_FIELDS = ("group", "level", "image_id", "path", "size", "width", "height", "modified",
              "format", "keep", "reason")


def register(sub) -> dict:
    p = sub.add_parser("dupes", help="find duplicate files: exact, edited copies, similar shots (never deletes)")
    with_db(p)
    p.add_argument("--level", choices=DUPE_LEVELS, default=DEFAULT_DUPE_LEVEL, help="exact: identical files; copies: the same picture, edited (spatially verified); similar: near-identical shots of one moment (default: %(default)s)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON document (schema: docs/cli.md)")
    out.add_argument("--csv", action="store_true", help="print one CSV row per file")
    p.add_argument("--min-group", type=positive_int, default=DEFAULTS.dupes.min_group, metavar="N", help="only groups of at least N files (default %(default)s)")
    p.add_argument("--not-duplicate", type=positive_int, nargs="+", metavar="ID", help="mark the images with these ids (a group's image_ids) as not duplicates of each other, so they are never grouped again; survives re-indexing")
    return {"dupes": cmd_dupes}


def cmd_dupes(args) -> int:
    from ..progress import Progress

    with open_index(args, writes=bool(args.not_duplicate)) as index:
        if args.not_duplicate:
            marked = index.not_duplicate(args.not_duplicate)
            print(f"marked {marked} pair{'s' * (marked != 1)} as not duplicates")
            return 0
        progress = Progress("checking for duplicates", unit="images")
        try:
            groups = index.duplicates(args.level, min_group=args.min_group, progress=progress)
        finally:
            progress.close()
    if args.json:
        doc = {"level": args.level, "groups": [g.as_dict() for g in groups],
               "total_groups": len(groups), "total_files": sum(len(g.files) for g in groups)}
        print(json.dumps(doc, indent=2))
    elif args.csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(CSV_FIELDS)
        for number, group in enumerate(groups, 1):
            for f in group.as_dict()["files"]:
                writer.writerow([number, group.level, *(f[k] for k in CSV_FIELDS[2:-1]),
                                 group.reason if f["keep"] else ""])
    else:
        print_groups(args.level, groups)
    return 0


def print_groups(level: str, groups: list) -> None:
    files = sum(len(g.files) for g in groups)
    print(f"{level}: {len(groups)} group{'s' * (len(groups) != 1)}, {files} files")
    for number, group in enumerate(groups, 1):
        ids = " ".join(map(str, group.image_ids))
        print(f"\ngroup {number} ({len(group.files)} files; image ids {ids})")
        print(f"  keep: {shown_path(group.keep.path)} ({group.reason})")
        for f in group.files:
            row = f.as_dict()
            mark = "keep" if f.keep else "    "
            print(f"  {mark} {f.width:>5}x{f.height:<5} {f.size:>10} B  {row['modified']}  "
                  f"{row['format'] or '?':<5} {row['path']}")
