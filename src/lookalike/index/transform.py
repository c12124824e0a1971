"""The learned descriptor transform: centring, then whitening learned from the collection.

Two steps, both fitted on the collection itself and composed around any vector store (like
faiss' ``IndexPreTransform``, :class:`TransformedStore` wraps another store: vectors going in
and queries are transformed; everything else passes through):

* **Centring.** Subtracting the collection's mean descriptor before L2 normalisation removes
  the direction every CNN descriptor shares ("this is a photo"), so cosine similarity
  measures what differs between images (docs/descriptor.md). Learned from
  ``TransformParams.min_images`` images on.
* **Whitening learned from neighbour pairs** (:class:`Whitening`). Pairs of images that are
  each among the other's 5 nearest neighbours are mostly two views of the same thing; the
  covariance of their *differences* says which directions vary between such views (lighting,
  framing, clutter). Whitening by it (Radenović et al.'s learned whitening, with pairs mined
  from the collection instead of labelled 3D models) scales those nuisance directions down.
  Cosine mAP rises on every dev set (docs/descriptor.md, "Learned whitening"). It needs
  enough pairs:
  the covariance is shrunk towards its mean eigenvalue by ``shrink * dims / pairs``, so a
  small collection gets a transform close to the identity, and below ``min_images`` images
  (``TransformParams.whiten_min_images``) none is learned. :class:`lookalike.Index` does not whiten
  collections on the approximate store, which re-scores raw descriptors from the catalogue.

Both are re-learned when the collection has grown or shrunk by half since (the store is then
rebuilt), so the transform follows the collection without rebuilding on every change.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..embed.pooling import l2_normalise
from ..settings import TransformParams
from .vectors import VectorStore, in_order

DEFAULTS = TransformParams()
PAIR_CHUNK = 1024  # neighbour pairs whose differences are summed into the covariance at once
SAMPLE_CHUNK = 2048  # rows of the whitening's sample read from the catalogue at once


def _encode(array: np.ndarray, dtype) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode()


def _decode(text: str, dtype, shape: tuple[int, ...] | None = None) -> np.ndarray:
    array = np.frombuffer(base64.b64decode(text), dtype=dtype).astype(np.float32)
    return array.reshape(shape) if shape else array


def _centred_sample(rows: Callable[[np.ndarray], np.ndarray], positions: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """``l2_normalise(rows(positions) - mean)`` (what a centring transform does), read and
    centred ``SAMPLE_CHUNK`` rows at a time into one array: the whitening's sample is held
    once, not as stored blobs, raw rows and each step of the centring. The same operations
    in the same precision, so the same numbers."""
    out = np.empty((len(positions), len(mean)), dtype=np.float32)
    for start in range(0, len(positions), SAMPLE_CHUNK):
        part = out[start : start + SAMPLE_CHUNK]
        part[:] = rows(positions[start : start + SAMPLE_CHUNK])
        part -= mean
        part /= np.maximum(np.linalg.norm(part, axis=-1, keepdims=True), 1e-12)
    return out


def mutual_neighbour_pairs(vectors: np.ndarray, k: int = DEFAULTS.neighbours, chunk: int = 256) -> np.ndarray:
    """``(P, 2)`` index pairs ``i < j`` of unit vectors that are each among the other's ``k``
    nearest neighbours. Chunked, so memory stays a small multiple of the vectors'."""
    n = len(vectors)
    k = min(k, n - 1)
    if k < 1:
        return np.zeros((0, 2), dtype=np.int64)
    nearest = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, chunk):
        sims = vectors[start : start + chunk] @ vectors.T
        rows = np.arange(len(sims))
        sims[rows, start + rows] = -np.inf  # not its own neighbour
        nearest[start : start + chunk] = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    edges = {(i, int(j)) for i, row in enumerate(nearest) for j in row}
    pairs = [(i, j) for i, j in edges if i < j and (j, i) in edges]
    return np.asarray(sorted(pairs), dtype=np.int64).reshape(-1, 2)


class Whitening:
    """``x -> L2((x - offset) @ projection)`` for centred unit descriptors."""

    def __init__(self, offset: np.ndarray, projection: np.ndarray, pairs: int):
        self.offset = np.asarray(offset, dtype=np.float32)
        self.projection = np.asarray(projection, dtype=np.float32)
        self.pairs = pairs

    @classmethod
    def fit(cls, vectors: np.ndarray, neighbours: int = DEFAULTS.neighbours, shrink: float = DEFAULTS.shrink) -> Whitening | None:
        """Learned from ``vectors`` (centred, unit length); None without enough pairs."""
        vectors = np.asarray(vectors, dtype=np.float32)
        pairs = mutual_neighbour_pairs(vectors, neighbours)
        dims = vectors.shape[1]
        if len(pairs) < dims // 4:  # the shrinkage would leave ~the identity anyway
            return None
        covariance = np.zeros((dims, dims), dtype=np.float64)
        for start in range(0, len(pairs), PAIR_CHUNK):  # streamed: pairs x dims never in memory
            part = pairs[start : start + PAIR_CHUNK]
            differences = (vectors[part[:, 0]] - vectors[part[:, 1]]).astype(np.float64)
            covariance += differences.T @ differences
        covariance /= len(pairs)
        values, axes = np.linalg.eigh(covariance)
        values = np.maximum(values, 0.0)
        values += shrink * dims / len(pairs) * values.mean()
        projection = (axes * values**-0.5) @ axes.T
        # Rounded as it is saved, so the store and later queries use the very same matrix.
        projection = projection.astype(np.float16).astype(np.float32)
        return cls(vectors.mean(axis=0), projection, len(pairs))

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        return l2_normalise((vectors - self.offset) @ self.projection)


class Transform:
    """The collection's mean, its whitening and the collection size they were learned at.

    ``whitened`` says whether a whitening was *learned for*: ``whitening`` can still be None
    when the collection had too few neighbour pairs.
    """

    def __init__(
        self, mean: np.ndarray | None, count: int, whitening: Whitening | None = None,
        whitened: bool | None = None,
    ):
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self.count = count
        self.whitening = whitening
        self.whitened = whitening is not None if whitened is None else whitened
        self._json: str | None = None
        self._fingerprint: str | None = None

    @classmethod
    def fit(
        cls, vectors: np.ndarray, whiten_min_images: int | None = None, seed: int = 0,
        params: TransformParams = DEFAULTS,
    ) -> Transform:
        """Learned from raw descriptors (all of them in memory; :meth:`Index` streams)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(vectors) < params.min_images:
            return cls(None, len(vectors))
        mean = vectors.mean(axis=0)
        return cls.with_whitening(mean, len(vectors), lambda n: vectors[n], whiten_min_images, seed, params)

    @classmethod
    def with_whitening(
        cls, mean: np.ndarray, count: int, rows: Callable[[np.ndarray], np.ndarray],
        whiten_min_images: int | None, seed: int = 0, params: TransformParams = DEFAULTS,
    ) -> Transform:
        """``mean`` plus a whitening learned from a fixed-seed sample of the collection's
        raw descriptors (``rows(positions)``, positions sorted), when it is large enough."""
        centred = cls(mean, count)
        if whiten_min_images is None or count < max(whiten_min_images, params.min_images):
            return centred
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(count, min(count, params.sample), replace=False))
        return cls(mean, count, Whitening.fit(_centred_sample(rows, sample, mean), params.neighbours, params.shrink), whitened=True)

    def stale_for(
        self, count: int, whiten_min_images: int | None = None, params: TransformParams = DEFAULTS
    ) -> bool:
        """Whether a collection of ``count`` images should re-learn the transform."""
        if self.mean is None:
            return count >= params.min_images
        if not self.count / params.refit_ratio <= count <= self.count * params.refit_ratio:
            return True
        wanted = whiten_min_images is not None and count >= max(whiten_min_images, params.min_images)
        return wanted != self.whitened  # switched on or off, or its threshold crossed

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        if self.mean is None:
            return vectors
        centred = l2_normalise(vectors - self.mean)
        return centred if self.whitening is None else self.whitening.apply(centred)

    def describe(self) -> str:
        if self.mean is None:
            return "none (too few images to learn from)"
        if self.whitening is None:
            return "centred"
        return f"centred + whitened ({self.whitening.pairs:,} neighbour pairs)"

    def to_json(self) -> str:
        if self._json is None:
            data: dict = {"count": self.count, "mean": None, "whitened": self.whitened}
            if self.mean is not None:
                data["mean"] = _encode(self.mean, np.float32)
            if self.whitening is not None:
                w = self.whitening
                data["whitening"] = {
                    "pairs": w.pairs,
                    "offset": _encode(w.offset, np.float32),
                    "projection": _encode(w.projection, np.float16),  # 3.3 MB instead of 6.6
                }
            self._json = json.dumps(data)
        return self._json

    @property
    def fingerprint(self) -> str:
        """Names the space this transform maps into: derived files record it (hashed once:
        every diffusion query asks for it)."""
        if self._fingerprint is None:
            self._fingerprint = hashlib.sha256(self.to_json().encode()).hexdigest()[:16]
        return self._fingerprint

    @classmethod
    def from_json(cls, text: str | None) -> Transform:
        if not text:
            return cls(None, 0)
        data = json.loads(text)
        mean = data.get("mean")
        vector = None if mean is None else _decode(mean, np.float32)
        whitening = None
        if data.get("whitening") and vector is not None:
            w = data["whitening"]
            dims = len(vector)
            whitening = Whitening(
                _decode(w["offset"], np.float32), _decode(w["projection"], np.float16, (dims, dims)),
                int(w["pairs"]),
            )
        out = cls(vector, int(data.get("count", 0)), whitening, bool(data.get("whitened", False)))
        out._json = text
        return out


class TransformedStore:
    """A vector store whose inputs and queries go through a :class:`Transform` first.

    ``source`` gives exact vectors by id (the catalogue's, transformed) for ids the inner
    store does not hold yet: another process may have indexed them since it was loaded.
    """

    def __init__(
        self, inner: VectorStore, transform: Transform,
        source: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
    ):
        self.inner = inner
        self.transform = transform
        self.source = source

    def __len__(self) -> int:
        return len(self.inner)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.inner.add(ids, self.transform.apply(vectors))

    def remove(self, ids: np.ndarray) -> None:
        self.inner.remove(ids)

    def search(
        self, queries: np.ndarray, k: int, candidates: np.ndarray | None = None, *, rough: bool = False
    ):
        return self.inner.search(self.transform.apply(np.atleast_2d(queries)), k, candidates, rough=rough)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """Vectors of ``ids`` in the store's (transformed) space, in the order asked."""
        try:
            return self.inner.vectors(ids)
        except KeyError:
            if self.source is None:
                raise
        ids = np.asarray(ids, dtype=np.int64)
        return in_order(*self.source(ids), ids)

    def save(self, folder: Path, generation: int) -> None:
        self.inner.save(folder, generation)
