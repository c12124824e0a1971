"""Centring on the collection mean: learned from real embeddings, re-learned as it grows."""

from __future__ import annotations

import numpy as np
import pytest

import lookalike
from conftest import copy_subset
from lookalike.index.transform import MIN_IMAGES, Centre

CLASSES = ("airplanes", "Leopards", "Motorbikes", "watch", "sunflower", "chair", "pizza",
           "dolphin", "butterfly", "grand_piano", "ketch", "laptop", "revolver")


def test_centre_policy():
    assert not Centre.fit(np.ones((MIN_IMAGES - 1, 4), np.float32)).stale_for(MIN_IMAGES - 1)
    assert Centre(None, 10).stale_for(MIN_IMAGES)
    fitted = Centre(np.zeros(4, np.float32), 200)
    assert not fitted.stale_for(250) and fitted.stale_for(301) and fitted.stale_for(133)
    assert Centre.from_json(fitted.to_json()).count == 200


def test_collection_mean_is_learned_and_applied(tmp_path):
    photos = copy_subset(tmp_path / "photos", classes=CLASSES, per_class=8)
    with lookalike.Index.open(tmp_path / "index") as index:
        index.add([photos])
        ids, raw = index.catalogue.all_vectors()
        assert len(ids) == len(CLASSES) * 8 >= MIN_IMAGES
        centre = Centre.from_json(index.catalogue.get_meta("centre"))
        np.testing.assert_allclose(centre.mean, raw.mean(axis=0), atol=1e-6)
        # The store holds centred, unit-length vectors...
        stored = index.store.inner.vectors
        centred = raw - raw.mean(axis=0)
        np.testing.assert_allclose(stored, centred / np.linalg.norm(centred, axis=1, keepdims=True), atol=1e-5)
        # ...and queries are centred the same way: an indexed image still finds itself.
        result = index.search(photos / "ketch" / "image_0003.jpg", k=3)
        assert result.matches[0].path.endswith("ketch/image_0003.jpg")
        assert result.matches[0].score == pytest.approx(1.0, abs=2e-3)
    # A reopened index uses the saved store and centre without re-learning.
    with lookalike.Index.open(tmp_path / "index") as index:
        assert index.store.centre.count == len(CLASSES) * 8
