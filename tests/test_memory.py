"""Indexing's memory-bounded steps give the results of the unbounded ones (real photos)."""

from __future__ import annotations

import numpy as np

from conftest import SUBSET_CLASSES, caltech_image
from lookalike.embed.embedder import Embedder
from lookalike.images import load_image
from lookalike.index import transform
from lookalike.index.graph import KnnGraph
from lookalike.index.transform import Whitening
from lookalike.index.vectors import FlatStore
from lookalike.indexing import embed_pictures
from lookalike.settings import Settings


def test_small_model_calls_embed_as_one_batch():
    """Running a batch through the model a few images per call (peak memory) changes no
    descriptor and no label, whatever the split."""
    embedder = Embedder(Settings()).for_parallel_batches()
    pixels = [embedder.pixels(load_image(caltech_image(label, 1), target_size=embedder.input_size))
              for label in SUBSET_CLASSES] * 2
    whole = embedder.embed_tensors(embedder.tensors(np.stack(pixels)))
    for per_call in (1, 3, 4):
        split = embed_pictures(embedder, pixels, per_call)
        assert np.allclose(split.vectors, whole.vectors, atol=1e-5)
        assert np.array_equal(split.label_ids, whole.label_ids)
        assert np.allclose(split.label_probs, whole.label_probs, atol=1e-5)


def test_streamed_end_of_run_stages_match_whole(real_vectors, monkeypatch):
    """The neighbour graph built a few images at a time is the one built at once, and the
    whitening's covariance summed over chunks of pairs is the whole product's."""
    vectors = np.concatenate([real_vectors, real_vectors[::-1] * 0.9 + 0.01])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(1, len(vectors) + 1)
    store = FlatStore(ids, vectors)
    small = KnnGraph.build(ids, store.vectors, store.search, 10, chunk=7)
    whole = KnnGraph.build(ids, store.vectors, store.search, 10, chunk=len(ids))
    assert np.array_equal(small.neighbours, whole.neighbours)
    low = vectors[:, :48] / np.linalg.norm(vectors[:, :48], axis=1, keepdims=True)
    whole_fit = Whitening.fit(low)
    monkeypatch.setattr(transform, "PAIR_CHUNK", 5)
    chunked_fit = Whitening.fit(low)
    assert whole_fit is not None and whole_fit.pairs > 5
    assert np.allclose(chunked_fit.projection, whole_fit.projection, atol=1e-2)
