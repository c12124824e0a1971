"""The learned transform: centring and whitening, learned from real embeddings, re-learned as
the collection grows."""

from __future__ import annotations

import numpy as np
import pytest

import lookalike
from conftest import copy_subset
from lookalike.index.transform import Transform, TransformedStore, mutual_neighbour_pairs
from lookalike.index.vectors import FlatStore
from lookalike.settings import AnnParams, Settings, TransformParams

MIN_IMAGES = TransformParams().min_images

CLASSES = ("airplanes", "Leopards", "Motorbikes", "watch", "sunflower", "chair", "pizza",
           "dolphin", "butterfly", "grand_piano", "ketch", "laptop", "revolver")


def test_transform_policy():
    assert not Transform.fit(np.ones((MIN_IMAGES - 1, 4), np.float32)).stale_for(MIN_IMAGES - 1)
    assert Transform(None, 10).stale_for(MIN_IMAGES)
    fitted = Transform(np.zeros(4, np.float32), 200)
    assert not fitted.stale_for(250) and fitted.stale_for(301) and fitted.stale_for(133)
    assert Transform.from_json(fitted.to_json()).count == 200
    # Whitening switched on, or its threshold crossed, re-learns; switched off likewise.
    assert not fitted.stale_for(250, whiten_min_images=1000)
    assert fitted.stale_for(250, whiten_min_images=220)
    unwhitened = Transform(np.zeros(4, np.float32), 1200)
    assert unwhitened.stale_for(1200, whiten_min_images=1000)
    assert not unwhitened.stale_for(1200, whiten_min_images=None)
    # Learned for, even if too few pairs gave no whitening: not learned again and again.
    tried = Transform.from_json(Transform(np.zeros(4, np.float32), 1200, None, whitened=True).to_json())
    assert not tried.stale_for(1200, whiten_min_images=1000) and tried.stale_for(1200, None)


def test_policy_follows_its_params_and_describes_itself():
    params = TransformParams(min_images=10, refit_ratio=2.0)
    vectors = np.random.default_rng(0).standard_normal((12, 4)).astype(np.float32)
    assert Transform.fit(vectors[:9], params=params).mean is None
    fitted = Transform.fit(vectors, params=params)
    np.testing.assert_allclose(fitted.mean, vectors.mean(axis=0), atol=1e-6)
    assert not fitted.stale_for(24, params=params) and fitted.stale_for(25, params=params)
    assert fitted.stale_for(5, params=params) and not fitted.stale_for(6, params=params)
    assert Transform(None, 0).stale_for(10, params=params) and not Transform(None, 0).stale_for(9, params=params)
    assert Transform(None, 3).describe() == "none (too few images to learn from)"
    assert fitted.describe() == "centred"
    # Unit vectors centred on the mean; a transform without a mean changes nothing.
    np.testing.assert_allclose(np.linalg.norm(fitted.apply(vectors), axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(Transform(None, 3).apply(vectors), vectors)
    # Each transform names its space; a saved one keeps its name.
    assert fitted.fingerprint != Transform(None, 12).fingerprint
    assert Transform.from_json(fitted.to_json()).fingerprint == fitted.fingerprint


def test_transformed_store_transforms_what_goes_in_and_reads_missing_vectors():
    rng = np.random.default_rng(1)
    raw = rng.standard_normal((20, 8)).astype(np.float32)
    transform = Transform.fit(raw, params=TransformParams(min_images=5))
    ids = np.arange(1, 21, dtype=np.int64)

    def catalogue(wanted):  # the catalogue's exact vectors, transformed, by id
        wanted = np.asarray(wanted)
        return wanted, transform.apply(raw[wanted - 1])

    store = TransformedStore(FlatStore(), transform, catalogue)
    store.add(ids[:15], raw[:15])
    assert len(store) == 15
    np.testing.assert_allclose(store.inner.matrix, transform.apply(raw[:15]), atol=1e-6)
    scores, found = store.search(raw[3], 2)  # queries are transformed the same way
    assert found[0, 0] == 4 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    # Ids the store does not hold yet (indexed by another process) come from the source.
    np.testing.assert_allclose(store.vectors(np.array([18, 2])), transform.apply(raw[[17, 1]]), atol=1e-6)
    store.remove(ids[:5])
    assert len(store) == 10
    with pytest.raises(KeyError):
        TransformedStore(FlatStore(ids[:2], raw[:2]), transform).vectors(np.array([7]))


def test_collection_mean_is_learned_and_applied(tmp_path):
    photos = copy_subset(tmp_path / "photos", classes=CLASSES, per_class=8)
    with lookalike.Index.open(tmp_path / "index") as index:
        index.add([photos])
        ids, raw = index.catalogue.all_vectors()
        assert len(ids) == len(CLASSES) * 8 >= MIN_IMAGES
        centre = Transform.from_json(index.catalogue.get_meta("transform"))
        np.testing.assert_allclose(centre.mean, raw.mean(axis=0), atol=1e-6)
        # The store holds centred, unit-length vectors...
        stored = index.store.inner.matrix
        centred = raw - raw.mean(axis=0)
        np.testing.assert_allclose(stored, centred / np.linalg.norm(centred, axis=1, keepdims=True), atol=1e-5)
        # ...and queries are centred the same way: an indexed image still finds itself.
        result = index.search(photos / "ketch" / "image_0003.jpg", k=3)
        assert result.matches[0].path.endswith("ketch/image_0003.jpg")
        assert result.matches[0].score == pytest.approx(1.0, abs=2e-3)
    # A reopened index uses the saved store and transform without re-learning.
    with lookalike.Index.open(tmp_path / "index") as index:
        assert index.store.transform.count == len(CLASSES) * 8
        assert index.store.transform.whitening is None  # fewer than whiten_min_images
        # A process killed after a new transform was saved but before the store was rebuilt
        # in it: the saved store is in the old space and must not be loaded (saving the
        # transform moved the catalogue generation past the store's).
        other = Transform(raw[: len(raw) // 2].mean(axis=0), len(raw))
        index.catalogue.set_meta({"transform": other.to_json()})
    with lookalike.Index.open(tmp_path / "index") as index:
        np.testing.assert_allclose(index.store.inner.matrix, other.apply(raw), atol=1e-5)


WHITEN_CLASSES = ("airplanes", "Leopards", "Motorbikes", "watch", "sunflower", "chair", "pizza",
                  "dolphin", "butterfly", "grand_piano", "ketch", "laptop", "revolver", "bonsai",
                  "brain", "buddha", "car_side", "chandelier", "ewer", "hawksbill", "helicopter",
                  "ibis", "kangaroo", "lotus", "menorah", "starfish", "stop_sign", "trilobite")


def test_whitening_is_learned_from_neighbour_pairs(tmp_path):
    photos = copy_subset(tmp_path / "photos", classes=WHITEN_CLASSES, per_class=20)
    settings = Settings(transform=TransformParams(whiten_min_images=500), local_features=False)
    with lookalike.Index.open(tmp_path / "index", settings=settings) as index:
        index.add([photos])
        ids, raw = index.catalogue.all_vectors()
        assert len(ids) == len(WHITEN_CLASSES) * 20 >= 500
        transform = index.store.transform
        assert transform.whitening is not None, "560 photos give enough mutual-neighbour pairs"
        # The pairs it learns from are mostly two photos of one kind of thing.
        centred = Transform(raw.mean(axis=0), len(raw)).apply(raw)
        pairs = mutual_neighbour_pairs(centred)
        labels = np.array([index.catalogue.locations_for([int(i)])[int(i)][0].split("/")[-2] for i in ids])
        assert len(pairs) == transform.whitening.pairs >= centred.shape[1] // 4
        assert (labels[pairs[:, 0]] == labels[pairs[:, 1]]).mean() > 0.8
        # The store holds whitened unit vectors, and queries are whitened the same way.
        np.testing.assert_allclose(index.store.inner.matrix, transform.apply(raw), atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(index.store.inner.matrix, axis=1), 1.0, atol=1e-5)
        result = index.search(photos / "ketch" / "image_0003.jpg", k=3, verify=0)
        assert result.matches[0].path.endswith("ketch/image_0003.jpg")
        assert result.matches[0].score == pytest.approx(1.0, abs=2e-3)
        fingerprint = transform.fingerprint
    # Saved in the catalogue: a reopened index has the same transform, learned once.
    with lookalike.Index.open(tmp_path / "index", settings=settings) as index:
        assert index.store.transform.fingerprint == fingerprint
    # Learning is deterministic (a fixed-seed sample; in memory the mean is summed in float32,
    # the index streams it in float64), and turning it off re-learns without.
    again = Transform.fit(raw, whiten_min_images=500)
    np.testing.assert_allclose(again.whitening.projection, transform.whitening.projection, atol=1e-3)
    unwhitened = settings.with_(transform=TransformParams(whiten=False, whiten_min_images=500))
    with lookalike.Index.open(tmp_path / "index", settings=unwhitened) as index:
        assert index.store.transform.whitening is None
        np.testing.assert_allclose(index.store.inner.matrix, centred, atol=1e-5)
    # The approximate store re-scores raw catalogue descriptors: it is not whitened.
    approximate = settings.with_(ann=AnnParams(threshold=500))
    with lookalike.Index.open(tmp_path / "index", settings=approximate) as index:
        assert index.store.inner.kind == "ann" and index.store.transform.whitening is None
        assert index.search(photos / "ketch" / "image_0003.jpg", k=1, verify=0).matches[0].path.endswith(
            "ketch/image_0003.jpg")
