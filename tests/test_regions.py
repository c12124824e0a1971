"""The regional search (lookalike.query.regions): candidates by contrast among the windows'
matches, each verified against its closest window. The ``regions`` stage end to end, on
pasted photos, is in test_verification.py."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.embed.pooling import region_grid
from lookalike.index.vectors import FlatStore
from lookalike.query.regions import closest_regions, regional_candidates, regional_checks
from lookalike.settings import RegionParams


def test_region_grid_covers_the_map():
    windows = region_grid(14, 14, (1, 2, 3))
    assert len(windows) == 1 + 4 + 9
    assert windows[0] == (0, 0, 14)
    assert {s for _, _, s in windows[1:5]} == {9} and {s for _, _, s in windows[5:]} == {7}
    assert all(t + s <= 14 and le + s <= 14 for t, le, s in windows)
    assert max(t for t, _, _ in windows[5:]) == 7  # the last row of windows reaches the edge


class FixedSearch:
    """A store's search that answers each window with fixed ``(scores, ids)`` rows and
    records how it was called."""

    def __init__(self, rows: list[list[tuple[int, float]]]):
        self.rows = rows
        self.calls: list[tuple] = []

    def __call__(self, vectors, k, candidates=None, *, rough=False):
        self.calls.append((len(vectors), k, candidates, rough))
        ids = np.array([[i for i, _ in row[:k]] for row in self.rows])
        scores = np.array([[s for _, s in row[:k]] for row in self.rows], dtype=np.float32)
        return scores, ids


def test_candidates_stand_out_by_contrast():
    params = RegionParams(per_region=2, contrast_rank=3)
    # Window 0 (background) resembles everything about equally; window 1 holds a photo
    # whose original (id 9) stands out although its raw score is lower.
    background = [(1, 0.80), (2, 0.79), (3, 0.79), (4, 0.78), (5, 0.5)]
    pasted = [(9, 0.60), (6, 0.30), (7, 0.28), (8, 0.27), (5, 0.1)]
    search = FixedSearch([background, pasted])
    allowed = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9])
    found = regional_candidates(np.zeros((2, 4)), search, 3, allowed=allowed, params=params)
    assert found[0] == 9  # contrast 0.33 beats the background's best, 0.02
    assert found == [9, 6, 1]  # each window's first per_region, best contrast first
    assert len(search.calls) == 1  # one rough search of every window, contrast_rank + 1 deep
    assert search.calls[0][:2] == (2, 4) and search.calls[0][2] is allowed and search.calls[0][3]
    assert regional_candidates(np.zeros((2, 4)), search, 3, exclude={9}, params=params)[0] == 6
    assert regional_candidates(np.zeros((2, 4)), search, 1, params=params) == [9]
    # An image found by two windows counts by its better contrast.
    twice = FixedSearch([[(1, 0.9), (2, 0.2), (3, 0.2), (4, 0.1)], [(2, 0.95), (1, 0.3), (3, 0.2), (4, 0.1)]])
    assert regional_candidates(np.zeros((2, 4)), twice, 2, params=params) == [2, 1]


def test_closest_regions():
    regions = np.eye(3, dtype=np.float32)
    candidates = np.array([[0.1, 0.9, 0.3], [0.8, 0.0, 0.5]], dtype=np.float32)
    assert closest_regions(candidates, regions, 1).tolist() == [[1], [0]]
    assert closest_regions(candidates, regions, 2).tolist() == [[1, 2], [0, 2]]
    assert closest_regions(candidates[0], regions, 1).tolist() == [[1]]  # one candidate


def test_checks_pair_each_candidate_with_its_closest_windows():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((6, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store = FlatStore(np.arange(10, 16), vectors)
    windows = vectors[[4, 1]] + 0.01  # window 0 shows image 14, window 1 image 11
    boxes = np.array([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])
    params = RegionParams(per_region=1, contrast_rank=2, verify_regions=1)
    checks = regional_checks(windows, boxes, store.search, store.vectors, 5, params=params)
    assert sorted(checks) == [(11, (0.5, 0.5, 1.0, 1.0)), (14, (0.0, 0.0, 0.5, 0.5))]
    both = regional_checks(windows, boxes, store.search, store.vectors, 5,
                           params=RegionParams(per_region=1, contrast_rank=2, verify_regions=2))
    assert len(both) == 4 and {box for _, box in both} == {tuple(b) for b in boxes}
    assert regional_checks(windows, boxes, store.search, store.vectors, 5, exclude={11, 14},
                           params=params) == []
    assert [i for i, _ in regional_checks(windows, boxes, store.search, store.vectors, 5,
                                          allowed=np.array([11]), params=params)] == [11]


@pytest.mark.parametrize("levels", [(1,), (1, 2, 3, 4)])
def test_region_vectors_of_a_real_picture(index, built_index, levels):
    _, photos = built_index
    from PIL import Image

    picture = Image.open(photos / "watch" / "image_0002.jpg").convert("RGB")
    vectors, boxes = index.embedder.region_vectors(picture, RegionParams().size, levels)
    assert len(vectors) == len(boxes) == sum(n * n for n in levels)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert boxes.min() >= 0 and boxes.max() <= 1 and tuple(boxes[0]) == (0.0, 0.0, 1.0, 1.0)
    # The whole picture's window resembles the indexed photo most.
    transformed = index.store.transform.apply(vectors[:1])
    checks = regional_checks(transformed, boxes[:1], index.store.inner.search, index.store.vectors, 1,
                             params=RegionParams(per_region=1))
    assert checks[0][0] == index.catalogue.image_for_location(str(photos / "watch" / "image_0002.jpg"))


def test_regional_gem_is_gem_over_each_window(index, built_index):
    """Pooling the windows of one real feature map at once gives exactly (bit for bit) what
    GeM gives over each window on its own, for the default and other exponents."""
    _, photos = built_index
    from PIL import Image

    from lookalike.embed.pooling import gem, regional_gem
    from lookalike.embed.preprocess import to_tensor

    picture = Image.open(photos / "watch" / "image_0002.jpg").convert("RGB")
    embedder = index.embedder
    tensor = to_tensor(picture, embedder.spec.preprocess, size=RegionParams().size)
    (feature_map,) = embedder.session.run(["feature_map"], {"image": tensor[None]})
    windows = region_grid(*feature_map.shape[2:], RegionParams().levels)
    for p in (3.0, 1.0, 2.0):
        each = np.concatenate([gem(feature_map[:, :, t : t + s, le : le + s], p) for t, le, s in windows])
        assert np.array_equal(regional_gem(feature_map[0], windows, p), each)
