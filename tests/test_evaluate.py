"""Retrieval quality of an index (lookalike.evaluate): the metrics, the ground truth, and
evaluation through the index's own ranking, from Python and from ``lookalike eval``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import PER_CLASS, SUBSET_CLASSES
from lookalike import SearchOptions
from lookalike.errors import LookalikeError
from lookalike.evaluate import (
    ann_recall,
    average_precision,
    csv_ground_truth,
    evaluate_index,
    folder_ground_truth,
    score_hits,
)

TOTAL = len(SUBSET_CLASSES) * PER_CLASS


def test_average_precision_and_hits():
    assert average_precision(np.array([1, 0, 1, 0], bool), 2) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(np.array([0, 1], bool), 3) == pytest.approx(0.5 / 3)  # one never found
    assert average_precision(np.array([0, 0], bool), 0) == 0.0
    (ap, p1, p10, recall), = score_hits([np.array([0, 1, 1] + [0] * 20, bool)], np.array([4]), ks=(1, 2, 10))
    assert ap == pytest.approx((1 / 2 + 2 / 3) / 4) and p1 == 0.0 and p10 == pytest.approx(0.2)
    assert recall == {1: 0.0, 2: 0.25, 10: 0.5}


def test_ground_truth_from_folders_and_csv(tmp_path):
    locations = {1: ["/p/a/1.jpg"], 2: ["/p/a/2.jpg", "/q/2.jpg"], 3: ["/p/b/3.jpg"]}
    assert folder_ground_truth(locations) == {1: {2}, 2: {1}, 3: set()}
    ids = {str(tmp_path / "a.jpg"): 1, str(tmp_path / "b.jpg"): 2, str(tmp_path / "c.jpg"): 3}
    truth = tmp_path / "truth.csv"
    truth.write_text("query,relevant\na.jpg,b.jpg; c.jpg ;missing.jpg;a.jpg\nshort\n")
    assert csv_ground_truth(str(truth), ids) == {1: {2, 3}}
    truth.write_text("nowhere.jpg,a.jpg\n")
    with pytest.raises(LookalikeError, match="query 'nowhere.jpg' is not in the index"):
        csv_ground_truth(str(truth), ids)
    with pytest.raises(LookalikeError, match="cannot read ground truth"):
        csv_ground_truth(str(tmp_path / "none.csv"), ids)


def test_evaluate_through_the_index_ranking(index):
    plain = evaluate_index(index, pipeline="cosine")  # one batched search
    assert plain.queries == TOTAL and plain.p_at_1 >= 0.9
    # The same plain ranking through the cascade (a stage that verifies nothing).
    cascade = evaluate_index(index, options=SearchOptions(pipeline="cosine,verify:0"))
    assert cascade.as_dict() == plain.as_dict()
    assert evaluate_index(index, rerank="none", verify=0).as_dict() == plain.as_dict()
    expanded = evaluate_index(index, pipeline="cosine,qe")
    assert expanded.as_dict() == evaluate_index(index, rerank="qe", verify=0).as_dict()
    assert expanded.map >= plain.map - 0.01
    sample = evaluate_index(index, sample=7, pipeline="cosine")
    assert sample.queries == 7
    with pytest.raises(LookalikeError, match="unknown stage"):
        evaluate_index(index, pipeline="cosine,magic")
    assert ann_recall(index, k=5, queries=10) == {
        "k": 5, "queries": 10, "store": "flat", "images": TOTAL, "recall@5": 1.0}


def test_eval_ann_recall_and_rerank(built_index, index):
    db, _ = built_index

    def run(*args):
        proc = subprocess.run([sys.executable, "-m", "lookalike", *map(str, args)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    metrics = run("eval", "--db", db, "--json", "--ann-recall")  # the index's default search
    assert metrics["ann_recall@10"] == 1.0 and metrics["store"] == "flat"
    plain = run("eval", "--db", db, "--json", "--rerank", "none", "--verify", "0")
    qe = run("eval", "--db", db, "--json", "--pipeline", "cosine,qe")  # = --rerank qe --verify 0
    assert qe["queries"] == plain["queries"] == metrics["queries"] and qe["P@1"] >= 0.9
    assert metrics["mAP"] != plain["mAP"]  # the defaults re-rank: not the plain ranking
    # The same numbers through the Python API.
    assert evaluate_index(index).as_dict()["mAP"] == metrics["mAP"]
    api_qe = evaluate_index(index, pipeline="cosine,qe").as_dict()
    assert api_qe == {k: qe[k] for k in api_qe}
    api_plain = evaluate_index(index, pipeline="cosine").as_dict()
    assert api_plain == {k: plain[k] for k in api_plain} != api_qe  # --pipeline was not ignored
    sample = run("eval", "--db", db, "--json", "--queries", "7")
    assert sample["queries"] == 7
