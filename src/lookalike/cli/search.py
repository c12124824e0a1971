"""``lookalike search``: the most similar indexed images for query images."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..query.options import RERANK_METHODS, ROUTES, SearchOptions
from ..query.results import COPY, SIMILAR, shown_path
from .common import (
    non_negative_int,
    open_index,
    positive_int,
    waiting,
    with_db,
    with_no_wait,
    with_pipeline,
)


def register(sub) -> dict:
    p = sub.add_parser("search", help="find the indexed images most similar to query images")
    p.add_argument("queries", nargs="*", metavar="QUERY", help="image files or folders of images")
    p.add_argument("--text", metavar="WORDS", help='tag search instead of query images: rank by the stored ImageNet labels the words name, e.g. "dog on a sofa" (not CLIP; docs/cli.md)')
    with_db(p)
    p.add_argument("--top", "-k", type=positive_int, default=SearchOptions.default("k"), help="matches per query (default %(default)s)")
    p.add_argument("--label", action="append", metavar="WORD", help="only images with a label this word names: an ImageNet label or a broader word such as dog (repeatable; `lookalike tags` lists words)")
    p.add_argument("--min-score", type=float, help="drop matches with cosine similarity below this")
    p.add_argument("--json", action="store_true", help="print one JSON document (see docs/cli.md)")
    p.add_argument("--plot", metavar="PNG", help="write a picture of the query and its matches")
    p.add_argument("--add", action="store_true", help="add the query images to the index after searching")
    with_no_wait(p)
    expert = p.add_argument_group(
        "tuning (experts: the defaults suit photo collections; see docs/descriptor.md)")
    expert.add_argument("--route", choices=ROUTES, default=SearchOptions.default("route"), help=(
        "global (default): rank every image. categories: rank only the images that share one "
        "of the query's predicted ImageNet categories (e.g. 'tabby cat'), as lookalike's first "
        "version did; a photo of the same thing whose categories were predicted differently "
        "is then missed, so global finds more. When too few images share a category, every "
        "image is ranked"))
    with_pipeline(expert)
    expert.add_argument("--rerank", choices=RERANK_METHODS, help="shorthand for the pipeline's re-ranking: auto (diffusion or query expansion by collection size), diffusion, qe or none")
    expert.add_argument("--verify", type=non_negative_int, metavar="N", help="shorthand: spatially verify the first N matches so copies of the query come first (0: no verification at all)")
    expert.add_argument("--words", type=non_negative_int, metavar="N", help="shorthand: also verify N candidates found by the query's visual words: finds thumbnails, small crops and blurred copies (0: off)")
    expert.add_argument("--regions", type=non_negative_int, metavar="N", help="shorthand: if no match is a sure copy, verify N candidates of a search by regions of the query: finds photos pasted into a larger picture (0: off)")
    p.set_defaults(usage_error=p.error)  # exit 2 with the usage, as argparse's own errors
    return {"search": cmd_search}


def cmd_search(args) -> int:
    from ..paths import expand_query_paths

    if bool(args.text) == bool(args.queries) or (args.text and (args.add or args.plot)):
        args.usage_error("give query images or --text WORDS (--add and --plot need images)")
    queries = expand_query_paths(args.queries) if args.queries else []
    options = SearchOptions(
        k=args.top, label=args.label, route=args.route, min_score=args.min_score,
        pipeline=args.pipeline, rerank=args.rerank, verify=args.verify, words=args.words,
        regions=args.regions,
    )
    with open_index(args, writes=args.add) as index:
        index.pipeline(options)  # a bad --pipeline fails before anything is embedded
        if args.text:
            results = [index.search_text(args.text, options=options)]
        else:
            results = index.search_many(queries, options=options)
        if args.json:
            print(json.dumps([r.as_dict() for r in results], indent=2))
        else:
            print_results(results)
        if args.plot:
            plot_results(results, Path(args.plot))
        if args.add:
            report = index.add(queries, **waiting(args, index.path))
            print(f"added {report.embedded + report.reused} query images to the index", file=sys.stderr)
    return 0


def print_results(results) -> None:
    for result in results:
        fallback = "  (too few category matches: searched everything)" if result.route == "categories+global" else ""
        print(f"query {shown_path(result.query)}  [{', '.join(result.query_labels[:3])}]{fallback}")
        if not result.matches:
            print("  no matches")
        copies = any(m.kind == COPY for m in result.matches)
        for m in result.matches:
            if copies and (m.rank == 1 or m.kind != result.matches[m.rank - 2].kind):
                print("  same picture (verified copies, most matching points first):" if m.kind == COPY
                      else "  similar:")
            why = f"  ({m.why})" if m.why != SIMILAR else ""
            print(f"  {m.rank:>3}  {m.score:.3f}  {shown_path(m.path)}  [{', '.join(m.shown_labels())}]{why}")


def plot_results(results, out: Path) -> None:
    """One picture per query: ``out`` itself for one query, ``out-1.png``... for several."""
    from ..plot import plot_result

    for i, result in enumerate(results):
        target = out
        if len(results) > 1:
            target = out.with_name(f"{out.stem}-{i + 1}{out.suffix or '.png'}")
        written = plot_result(result, target)
        print(f"plot: {written}", file=sys.stderr)
