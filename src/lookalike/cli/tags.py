"""``lookalike tags``: the words that tag search (``search --text``) and ``--label`` know,
with how many images of this index each one names."""

from __future__ import annotations

import json

from ..query.options import SUGGESTIONS
from .common import open_index, positive_int, with_db


def register(sub) -> dict:
    p = sub.add_parser("tags", help="list the words that --text and --label accept, with their images here")
    p.add_argument("prefix", nargs="?", default="", help="only words starting with this")
    with_db(p)
    p.add_argument("--limit", type=positive_int, default=SUGGESTIONS, help="how many words (default %(default)s)")
    p.add_argument("--json", action="store_true", help='print {"tags": [{"word", "classes", "images"}]}')
    return {"tags": cmd_tags}


def cmd_tags(args) -> int:
    with open_index(args) as index:
        tags = index.tags(args.prefix, args.limit)
    if args.json:
        print(json.dumps({"tags": tags}, indent=2))
        return 0
    if not tags:
        print(f"no known word starts with '{args.prefix}'")
    for tag in tags:
        print(f"{tag['images']:>7} images  {tag['word']}  ({tag['classes']} ImageNet {'class' if tag['classes'] == 1 else 'classes'})")
    return 0
