"""``lookalike info``, ``eval`` and ``check``: what an index holds, how well it ranks, whether
it is sound."""

from __future__ import annotations

import json

from ..query.options import RERANK_METHODS, SearchOptions
from ..query.results import path_fields, shown_path
from .common import EXIT_ERROR, non_negative_int, open_index, positive_int, with_db, with_pipeline


def register(sub) -> dict:
    p = sub.add_parser("info", help="show what an index holds")
    with_db(p)
    p.add_argument("--json", action="store_true", help="print as JSON")

    p = sub.add_parser("eval", help="measure retrieval quality (mAP, P@1, P@10, recall@K) of an index")
    with_db(p)
    p.add_argument("--truth", metavar="CSV", help="ground truth CSV: query,relevant[;relevant...] (default: same folder = relevant)")
    p.add_argument("--json", action="store_true", help="print as JSON")
    with_pipeline(p)
    p.add_argument("--rerank", choices=RERANK_METHODS, help="shorthand for the pipeline's re-ranking (none with --verify 0: the plain cosine ranking)")
    p.add_argument("--verify", type=non_negative_int, metavar="N", help="shorthand: spatially verify the first N matches of every query (0: no verification)")
    p.add_argument("--queries", type=positive_int, metavar="N", help="evaluate a fixed-seed sample of N queries instead of every image")
    p.add_argument("--ann-recall", action="store_true", help="also report recall@10 of the index's vector store against exact search (1.0 for an exact store)")

    p = sub.add_parser("check", help="check an index for damage and inconsistencies (exit 1 if any)")
    with_db(p)
    p.add_argument("--repair", action="store_true", help="rebuild the derived files; recover what a damaged catalogue still holds (the old file is kept)")
    p.add_argument("--json", action="store_true", help="print as JSON")
    return {"info": cmd_info, "eval": cmd_eval, "check": cmd_check}


def cmd_info(args) -> int:
    with open_index(args) as index:
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
    from ..evaluate import ann_recall, evaluate_index
    from ..progress import Progress

    with open_index(args) as index:
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
    from ..index.check import check_index

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
