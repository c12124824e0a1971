"""Vector stores: small, composable objects that answer "which ids are nearest to this vector".

Every store keeps the same contract (:class:`VectorStore`), so the catalogue can feed an exact
in-memory matrix today and an ANN index or a remote database (Milvus) tomorrow. Stores are
*derived* data: the catalogue holds every descriptor, and a store that is missing, stale
(its generation differs from the catalogue's) or damaged is rebuilt from it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from .files import atomic_save, atomic_write


@runtime_checkable
class VectorStore(Protocol):
    """What search needs from a vector index. Ids are catalogue image ids (int64)."""

    def __len__(self) -> int: ...

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace vectors (``(N, D)`` float32, L2-normalised)."""

    def remove(self, ids: np.ndarray) -> None:
        """Forget ids; unknown ids are ignored."""

    def search(
        self,
        queries: np.ndarray,
        k: int,
        candidates: np.ndarray | None = None,
        *,
        rough: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` by inner product: ``(scores, ids)`` each ``(Q, k')``, best first.

        ``candidates`` restricts the search to those ids (label filters, category routing);
        a :class:`LabelIds` is also the label classes that select it.
        ``k'`` is ``min(k, number searched)``. ``rough`` allows an approximate store to
        spend less on exactness (candidate generation for a later check, e.g. the regional
        search); exact stores ignore it.
        """

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids`` (in the store's space), rows in the order asked.

        What re-ranking, the neighbour graph and the regional search read, so that none of
        them depends on how a store keeps its vectors (in memory, in the catalogue, remote).
        """

    def save(self, folder: Path, generation: int) -> None:
        """Persist to ``folder``, recording the catalogue generation it reflects."""


class LabelIds(np.ndarray):
    """Ids (int64, ascending) that are exactly the images holding any of ``classes``: what a
    label filter selects. A store that keeps each image's labels with its vector (Milvus)
    filters by the classes instead of sending every id. Anything derived from it (a slice,
    an intersection) is a plain id set (``classes`` None)."""

    classes: tuple[int, ...] | None

    def __new__(cls, ids: np.ndarray, classes: Sequence[int]) -> LabelIds:
        out = np.asarray(ids, dtype=np.int64).view(cls)
        out.classes = tuple(sorted({int(c) for c in classes}))
        return out

    def __array_finalize__(self, obj: object) -> None:
        self.classes = None


def in_order(found: np.ndarray, vectors: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Rows of ``vectors`` (which belong to ``found``, in any order) in the order of ``ids``:
    what a source that answers by id in its own order returns to ``VectorStore.vectors``."""
    position = {int(i): r for r, i in enumerate(found)}
    return vectors[[position[int(i)] for i in ids]]


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` largest scores per row, best first (ties by index)."""
    n = scores.shape[1]
    k = min(k, n)
    if k == 0:
        return np.zeros((scores.shape[0], 0), dtype=np.int64)
    if k < n:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(n), scores.shape).copy()
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


class FlatStore:
    """Exact search: one float32 matrix, scored with a BLAS matrix product.

    Exact is the right default for personal collections: 10,000 images x 1,280 dims is one
    13 M-multiply-add product per query (about a millisecond), with perfect recall and
    instant adds and deletes.
    """

    kind = "flat"
    FILES = ("flat-ids.npy", "flat-vectors.npy", "flat.json")

    def __init__(self, ids: np.ndarray | None = None, vectors: np.ndarray | None = None):
        self.ids = np.zeros(0, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
        self.matrix = (
            np.zeros((0, 0), dtype=np.float32)
            if vectors is None
            else np.ascontiguousarray(vectors, dtype=np.float32)
        )
        self._sort()

    def __len__(self) -> int:
        return len(self.ids)

    def _sort(self) -> None:
        if len(self.ids) and np.any(np.diff(self.ids) <= 0):
            order = np.argsort(self.ids, kind="stable")
            self.ids = self.ids[order]
            self.matrix = self.matrix[order]

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return
        self.remove(ids)
        vectors = np.asarray(vectors, dtype=np.float32)
        if self.matrix.size == 0:
            self.matrix = np.ascontiguousarray(vectors)
            self.ids = ids.copy()
        else:
            self.matrix = np.concatenate([self.matrix, vectors])
            self.ids = np.concatenate([self.ids, ids])
        self._sort()

    def remove(self, ids: np.ndarray) -> None:
        if not len(self.ids):
            return
        keep = ~np.isin(self.ids, np.asarray(ids, dtype=np.int64))
        if not keep.all():
            self.ids = self.ids[keep]
            self.matrix = self.matrix[keep]

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Matrix rows of the given ids (ids missing from the store are dropped)."""
        ids = np.asarray(ids, dtype=np.int64)
        rows = np.searchsorted(self.ids, ids)
        rows = np.clip(rows, 0, max(len(self.ids) - 1, 0))
        return rows[self.ids[rows] == ids] if len(self.ids) else rows[:0]

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """Rows of ``ids`` (every id must be stored)."""
        ids = np.asarray(ids, dtype=np.int64)
        rows = np.clip(np.searchsorted(self.ids, ids), 0, max(len(self.ids) - 1, 0))
        if not len(self.ids) or not np.array_equal(self.ids[rows], ids):
            raise KeyError("asked for vectors of ids the store does not hold")
        return self.matrix[rows]

    def search(
        self,
        queries: np.ndarray,
        k: int,
        candidates: np.ndarray | None = None,
        *,
        rough: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if candidates is None:
            matrix, ids = self.matrix, self.ids
        else:
            rows = self.rows_of(np.unique(candidates))
            matrix, ids = self.matrix[rows], self.ids[rows]
        if len(ids) == 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        scores = queries @ matrix.T
        best = top_k(scores, k)
        return np.take_along_axis(scores, best, axis=1), ids[best]

    def save(self, folder: Path, generation: int) -> None:
        folder = Path(folder)
        atomic_save(folder / "flat-ids.npy", self.ids)
        # Float16 precision (what the store has always kept), written as float32 so that
        # a fresh process maps the file instead of converting every row before a search.
        atomic_save(folder / "flat-vectors.npy", self.matrix.astype(np.float16).astype(np.float32))
        meta = {"generation": generation, "count": len(self.ids)}
        atomic_write(folder / "flat.json", json.dumps(meta).encode())

    @classmethod
    def load(cls, folder: Path, generation: int) -> FlatStore | None:
        """The saved store if it reflects ``generation``, else None (caller rebuilds)."""
        folder = Path(folder)
        try:
            meta = json.loads((folder / "flat.json").read_text())
            if meta.get("generation") != generation:
                return None
            ids = np.load(folder / "flat-ids.npy")
            vectors = np.load(folder / "flat-vectors.npy", mmap_mode="c")
            if vectors.dtype != np.float32:  # (an older float16 file)
                vectors = vectors.astype(np.float32)
        except (OSError, ValueError):
            return None
        if len(ids) != meta.get("count") or len(vectors) != len(ids):
            return None
        return cls(ids, vectors)
