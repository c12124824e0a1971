"""What the verification gate (``Settings.gate``) could save, and what it would lose.

    python benchmarks/gate.py [--no-copy 100] [--out benchmarks/results/gate.json]

On the instance benchmark's index (benchmarks/instance.py, 8,910 images), every query runs
the default pipeline with the gate off, and records the two signals the gate reads before
any verification stage (the first cosine score in the store's space and the best
visual-word score, :func:`lookalike.query.verification.word_hits`) and the most inliers any
candidate reached. Queries: the 600 edited copies (each has its original in the index) and
``--no-copy`` unindexed ``BACKGROUND_Google`` photos (the paste backgrounds; some of them
are near-duplicates of indexed photos, which verification rightly finds). For each pair of
thresholds the result lists the copies whose verified match the gate would have skipped
(``lost``, by kind of edit) and the share of no-copy queries it would still let through
(``no_copy_open``): a gate earns its place only where the second falls while the first
stays at zero.

The regional stage (``regions:10``) runs for every query in which nothing verified surely,
so every query without a copy pays for it. A third signal asks whether a cheaper regional
search could tell when it may find something: the query's feature map at the model's own
input size (what embedding the query computes anyway) pooled over R-MAC windows of levels
2 and 3, each window searched, and the best window's *contrast* (its first score minus its
``RegionParams.contrast_rank``-th, as :func:`lookalike.query.regions.regional_candidates`
scores). ``regional`` lists, per threshold, the copies the regional stage found (nothing
verified before it) that such a gate would have lost, and the share of no-copy queries it
would still run the regional stage for.

``prefilter`` asks whether verifying on fewer keypoints first could skip most of the first
pass's checks (``verify:20``, ``words:10``): each checked candidate is matched against every
``stride``-th of the query's descriptors only, and ``min_matches`` ratio-test matches there
would let it on to the full check. A query descriptor's two nearest candidate descriptors are
the same as in the full match, so the subset's matches are a sample of the full ones. Listed:
the checked pairs that verified as copies which the prefilter would have rejected, the share
of the others it rejects, and the time per pair of the prefilter and of a full check.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import caltech  # noqa: E402
import instance  # noqa: E402

import lookalike  # noqa: E402
from lookalike import verify  # noqa: E402
from lookalike.images import load_image  # noqa: E402
from lookalike.query import cascade, verification  # noqa: E402

THRESHOLDS = [(c, w) for c in (0.45, 0.5, 0.6, 0.7) for w in (0.05, 0.06, 0.08, 0.1)]
REGION_THRESHOLDS = (0.04, 0.05, 0.06, 0.08, 0.1, 0.12)
STRIDES = (2, 3, 4)  # the prefilter matches every stride-th query descriptor
MIN_MATCHES = (2, 3, 4, 5)
TIMED_PAIRS = 2000
CHEAP_LEVELS = (2, 3)  # R-MAC windows a 7 x 7 feature map can hold


def regional_signal(index: lookalike.Index, query: str) -> float:
    """The best window contrast of the cheap regional search of ``query`` (see above)."""
    embedder, store = index.embedder, index.folder.store
    image = load_image(query, target_size=index.query_size)  # as a search decodes it
    vectors, _ = embedder.region_vectors(image, embedder.input_size, CHEAP_LEVELS)
    params = index.settings.regions
    scores, _ = store.inner.search(store.transform.apply(vectors), params.contrast_rank + 1)
    return float((scores[:, 0] - scores[:, -1]).max()) if scores.size else 0.0


def subset_matches(query, candidate, stride: int, ratio: float) -> int:
    """Ratio-test matches of every ``stride``-th query descriptor against all the candidate's."""
    import cv2

    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(query.descriptors[::stride], candidate.descriptors, k=2)
    return sum(1 for p in pairs if len(p) == 2 and p[0].distance < ratio * p[1].distance)


def first_pass_pairs(q, ranking, collection, pairs: list, timed: list) -> None:
    """Record, per candidate the first pass checked, its verdict and its subset matches."""
    features = q.features(collection)
    checked = list(ranking.inliers.items())
    if features is None or features.descriptors is None or not checked:
        return
    verifier, ratio = collection.verifier, collection.settings.verify.ratio
    load = collection.feature_loader([i for i, _ in checked])
    for image_id, counted in checked:
        candidate = verifier.features_of(image_id, load)
        if candidate is None:
            continue
        pairs.append({"copy": counted > 0, **{s: subset_matches(features, candidate, s, ratio) for s in STRIDES}})
        if len(timed) < TIMED_PAIRS:
            timed.append((features, candidate))


def prefilter_report(pairs: list[dict], timed: list, params) -> dict:
    """What each (stride, min_matches) prefilter keeps and costs (see the module's doc)."""
    copies = [p for p in pairs if p["copy"]]
    others = [p for p in pairs if not p["copy"]]
    rows = [{"stride": s, "min_matches": t, "copies_rejected": sum(p[s] < t for p in copies),
             "others_rejected": round(float(np.mean([p[s] < t for p in others])), 3)}
            for s in STRIDES for t in MIN_MATCHES]
    started = time.perf_counter()
    for query, candidate in timed:
        verify.fit(query, candidate, params)
    full = (time.perf_counter() - started) / max(len(timed), 1)
    cost = {}
    for s in STRIDES:
        started = time.perf_counter()
        for query, candidate in timed:
            subset_matches(query, candidate, s, params.ratio)
        cost[s] = round(1000 * (time.perf_counter() - started) / max(len(timed), 1), 3)
    return {"pairs": len(pairs), "copies": len(copies), "rows": rows,
            "ms_per_pair": {"full_check": round(1000 * full, 3), "prefilter_by_stride": cost}}


def signals(index: lookalike.Index, query: str, pairs: list, timed: list) -> dict:
    """The gate's two signals and the most inliers of one default search of ``query``."""
    seen: dict = {}
    first_stage = verification.Verify.apply

    def verify(stage, q, ranking, collection):
        seen["cosine"] = float(ranking.scores[0]) if len(ranking.scores) else 0.0
        hits = verification.word_hits(q, collection, verification.GATE_WORDS)
        seen["words"] = float(hits[1][0]) if hits is not None and len(hits[1]) else 0.0
        return first_stage(stage, q, ranking, collection)

    rank = cascade.Cascade.rank

    def ranked(self, q, collection):
        out = rank(self, q, collection)
        seen["inliers"] = max(out.inliers.values(), default=0)
        return out

    regions = verification.Regions.apply

    def regional(stage, q, ranking, collection):
        first_pass_pairs(q, ranking, collection, pairs, timed)
        threshold = collection.settings.verify.min_inliers
        before = {i for i, n in ranking.inliers.items() if n >= threshold}
        regions(stage, q, ranking, collection)
        seen["regions_found"] = any(n >= threshold and i not in before for i, n in ranking.inliers.items())

    verification.Verify.apply, cascade.Cascade.rank = verify, ranked
    verification.Regions.apply = regional
    try:
        index.search(query, 10)
    finally:
        verification.Verify.apply, cascade.Cascade.rank = first_stage, rank
        verification.Regions.apply = regions
    seen["regional"] = regional_signal(index, query)
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/lookalike-instance"))
    parser.add_argument("--no-copy", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "gate.json")
    args = parser.parse_args()
    info = caltech.run_info()  # the load at the start
    db, backgrounds = instance.database_files()
    queries = instance.make_queries(args.work, 600, 1234, db, backgrounds)
    pairs: list[dict] = []
    timed: list = []
    with lookalike.Index.open(args.work / "index", create=False) as index:
        copies = [{"kind": q["kind"], **signals(index, q["path"], pairs, timed)} for q in queries]
        others = [signals(index, str(p), pairs, timed) for p in backgrounds[: args.no_copy]]
        prefilter = prefilter_report(pairs, timed, index.settings.verify)
    min_inliers = lookalike.Settings().verify.min_inliers
    rows = []
    for cos, words in THRESHOLDS:
        def opens(r, cos=cos, words=words):
            return r["cosine"] >= cos or r["words"] >= words
        lost = [r["kind"] for r in copies if r["inliers"] >= min_inliers and not opens(r)]
        rows.append({"cosine": cos, "words": words, "lost": len(lost),
                     "lost_by_kind": {k: lost.count(k) for k in sorted(set(lost))},
                     "no_copy_open": round(float(np.mean([opens(r) for r in others])), 3)})
    found = [r["regional"] for r in copies if r.get("regions_found")]
    regional = [{"contrast": t, "lost": sum(v < t for v in found),
                 "no_copy_open": round(float(np.mean([r["regional"] >= t for r in others])), 3)}
                for t in REGION_THRESHOLDS]
    report = {
        **info, "copies": len(copies), "no_copy": len(others),
        "copies_verified": sum(r["inliers"] >= min_inliers for r in copies),
        "no_copy_verified": sum(r["inliers"] >= min_inliers for r in others),
        "signals": {name: {s: np.percentile([r[s] for r in group], [5, 50, 95]).round(4).tolist()
                           for s in ("cosine", "words", "regional")}
                    for name, group in (("copies", copies), ("no_copy", others))},
        "thresholds": rows,
        "copies_found_by_regions": len(found),
        "regional": regional,
        "prefilter": prefilter,
    }
    caltech.write_report(report, args.out)


if __name__ == "__main__":
    main()
