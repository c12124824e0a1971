"""The gate in front of the verification stages (``Settings.gate``), on real photos."""

from __future__ import annotations

import lookalike
from conftest import caltech_image, edited
from lookalike.settings import GateParams


def _search(folder, gate: GateParams, query):
    with lookalike.Index.open(folder, settings=lookalike.Settings(gate=gate), create=False) as ix:
        return ix.search(query, 10).matches


def test_gate_skips_verification_only_without_evidence_of_a_copy(built_index):
    folder, photos = built_index
    original = str(photos / "Motorbikes" / "image_0005.jpg")
    copy = edited("Motorbikes", 5)
    # Off (the default): every query verifies its candidates.
    ungated = _search(folder, GateParams(), copy)
    assert ungated[0].path == original and ungated[0].inliers >= 15
    # Thresholds nothing reaches: no stage runs, no candidate carries an inlier count, and
    # the order is the one the stages leave alone (nothing verified).
    closed = _search(folder, GateParams(cosine=2.0, words=2.0), copy)
    assert all(m.inliers is None for m in closed)
    unverified = _search(folder, GateParams(cosine=2.0, words=2.0), caltech_image("sunflower", 20))
    assert [m.image_id for m in unverified] == [
        m.image_id for m in _search(folder, GateParams(), caltech_image("sunflower", 20))]
    # The copy's visual words alone open the gate (its first cosine score is not enough).
    by_words = _search(folder, GateParams(cosine=2.0, words=0.05), copy)
    assert by_words[0].path == original and by_words[0].inliers >= 15
