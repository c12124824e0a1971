"""Centring: a learned descriptor transform, composed around any vector store.

Subtracting the collection's mean descriptor before L2 normalisation removes the direction
every CNN descriptor shares ("this is a photo"), so cosine similarity measures what differs
between images. On Caltech-101 it lifts mAP from 0.739 to 0.755 and instance-level recall@1
from 0.670 to 0.700 (docs/descriptor.md), for one vector subtraction per query.

Like faiss' ``IndexPreTransform``, :class:`CentredStore` wraps another store: vectors going
in and queries are centred and re-normalised; everything else passes through. The mean is
learned from the collection itself once it has ``MIN_IMAGES`` images and re-learned when the
collection has grown or shrunk by half since (the store is then rebuilt), so it follows the
collection without rebuilding on every change.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np

from ..embed.pooling import l2_normalise
from .vectors import VectorStore

MIN_IMAGES = 100
REFIT_RATIO = 1.5


class Centre:
    """A mean descriptor and the collection size it was learned at."""

    def __init__(self, mean: np.ndarray | None, count: int):
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self.count = count

    @classmethod
    def fit(cls, vectors: np.ndarray) -> Centre:
        if len(vectors) < MIN_IMAGES:
            return cls(None, len(vectors))
        return cls(vectors.mean(axis=0), len(vectors))

    def stale_for(self, count: int) -> bool:
        """Whether a collection of ``count`` images should re-learn the mean."""
        if self.mean is None:
            return count >= MIN_IMAGES
        return not (self.count / REFIT_RATIO <= count <= self.count * REFIT_RATIO)

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        if self.mean is None:
            return vectors
        return l2_normalise(vectors - self.mean)

    def to_json(self) -> str:
        mean = None if self.mean is None else base64.b64encode(self.mean.tobytes()).decode()
        return json.dumps({"count": self.count, "mean": mean})

    @classmethod
    def from_json(cls, text: str | None) -> Centre:
        if not text:
            return cls(None, 0)
        data = json.loads(text)
        mean = data.get("mean")
        vector = None if mean is None else np.frombuffer(base64.b64decode(mean), dtype=np.float32)
        return cls(vector, int(data.get("count", 0)))


class CentredStore:
    """A vector store whose inputs and queries are centred first."""

    def __init__(self, inner: VectorStore, centre: Centre):
        self.inner = inner
        self.centre = centre

    def __len__(self) -> int:
        return len(self.inner)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.inner.add(ids, self.centre.apply(vectors))

    def remove(self, ids: np.ndarray) -> None:
        self.inner.remove(ids)

    def search(
        self, queries: np.ndarray, k: int, candidates: np.ndarray | None = None, *, rough: bool = False
    ):
        return self.inner.search(self.centre.apply(np.atleast_2d(queries)), k, candidates, rough=rough)

    def save(self, folder: Path, generation: int) -> None:
        self.inner.save(folder, generation)
