"""Vector stores: small, composable objects that answer "which ids are nearest to this vector".

Every store keeps the same contract (:class:`VectorStore`), so the catalogue can feed an exact
in-memory matrix today and an ANN index or a remote database (Milvus) tomorrow. Stores are
*derived* data: the catalogue holds every descriptor, and a store that is missing, stale
(its generation differs from the catalogue's) or damaged is rebuilt from it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from ..settings import Settings
    from .catalogue import Catalogue


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

        ``candidates`` restricts the search to those ids (label filters, category routing).
        ``k'`` is ``min(k, number searched)``. ``rough`` allows an approximate store to
        spend less on exactness (candidate generation for a later check, e.g. the regional
        search); exact stores ignore it.
        """

    def save(self, folder: Path, generation: int) -> None:
        """Persist to ``folder``, recording the catalogue generation it reflects."""


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
        self.vectors = (
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
            self.vectors = self.vectors[order]

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return
        self.remove(ids)
        vectors = np.asarray(vectors, dtype=np.float32)
        if self.vectors.size == 0:
            self.vectors = np.ascontiguousarray(vectors)
            self.ids = ids.copy()
        else:
            self.vectors = np.concatenate([self.vectors, vectors])
            self.ids = np.concatenate([self.ids, ids])
        self._sort()

    def remove(self, ids: np.ndarray) -> None:
        if not len(self.ids):
            return
        keep = ~np.isin(self.ids, np.asarray(ids, dtype=np.int64))
        if not keep.all():
            self.ids = self.ids[keep]
            self.vectors = self.vectors[keep]

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Matrix rows of the given ids (ids missing from the store are dropped)."""
        ids = np.asarray(ids, dtype=np.int64)
        rows = np.searchsorted(self.ids, ids)
        rows = np.clip(rows, 0, max(len(self.ids) - 1, 0))
        return rows[self.ids[rows] == ids] if len(self.ids) else rows[:0]

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
            matrix, ids = self.vectors, self.ids
        else:
            rows = self.rows_of(np.unique(candidates))
            matrix, ids = self.vectors[rows], self.ids[rows]
        if len(ids) == 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        scores = queries @ matrix.T
        best = top_k(scores, k)
        return np.take_along_axis(scores, best, axis=1), ids[best]

    def save(self, folder: Path, generation: int) -> None:
        folder = Path(folder)
        _atomic_save(folder / "flat-ids.npy", self.ids)
        _atomic_save(folder / "flat-vectors.npy", self.vectors.astype(np.float16))
        meta = {"generation": generation, "count": len(self.ids)}
        _atomic_write(folder / "flat.json", json.dumps(meta).encode())

    @classmethod
    def load(cls, folder: Path, generation: int) -> FlatStore | None:
        """The saved store if it reflects ``generation``, else None (caller rebuilds)."""
        folder = Path(folder)
        try:
            meta = json.loads((folder / "flat.json").read_text())
            if meta.get("generation") != generation:
                return None
            ids = np.load(folder / "flat-ids.npy")
            vectors = np.load(folder / "flat-vectors.npy").astype(np.float32)
        except (OSError, ValueError):
            return None
        if len(ids) != meta.get("count") or len(vectors) != len(ids):
            return None
        return cls(ids, vectors)


def approximate_for(folder: Path, count: int, settings: Settings) -> bool:
    """Whether a collection of ``count`` images in ``folder`` uses the approximate store:
    from ``settings.ann_threshold`` images, and an index that has one keeps it down to half
    the threshold, so a collection hovering around the threshold does not switch back and
    forth."""
    has_ann = (Path(folder) / "ann.json").exists()
    return count >= settings.ann_threshold or (has_ann and count >= settings.ann_threshold // 2)


def open_store(
    folder: Path,
    catalogue: Catalogue,
    settings: Settings,
    *,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    fingerprint: str = "",
    rebuild: bool = False,
    expected: int = 0,
) -> VectorStore:
    """The store that suits the collection: loaded if current, else built from the catalogue.

    Exact :class:`FlatStore` below ``settings.ann_threshold`` images (counting ``expected``
    images about to be added, so a large first run never grows a float matrix), the
    approximate :class:`~lookalike.index.ann.AnnStore` from there on (:func:`approximate_for`).
    ``transform`` maps raw descriptors into the
    store's space; ``fingerprint`` names it, and ``rebuild`` forces a rebuild (new transform).
    """
    folder = Path(folder)
    count = max(catalogue.count_images(), expected)
    if approximate_for(folder, count, settings):
        from .ann import AnnParams, AnnStore, CatalogueVectors

        _unlink(folder, FlatStore.FILES)
        params = AnnParams(
            dims=settings.ann_dims,
            expansion_search=settings.ann_expansion_search,
            rerank=settings.ann_rerank,
        )
        source = CatalogueVectors(catalogue, transform)
        return AnnStore.open(
            folder, source, params=params, fingerprint=fingerprint, rebuild=rebuild
        )
    if (folder / "ann.json").exists():  # shrunk below the approximate store's range
        from .ann import AnnStore

        _unlink(folder, AnnStore.FILES)
    store = None if rebuild else FlatStore.load(folder, catalogue.generation)
    if store is None:
        ids, vectors = catalogue.all_vectors()
        store = FlatStore(ids, transform(vectors) if transform and len(ids) else vectors)
        try:
            store.save(folder, catalogue.generation)
        except OSError:
            pass  # a read-only index folder still searches; the store is rebuilt next time
    return store


def _unlink(folder: Path, names: tuple[str, ...]) -> None:
    for name in names:
        try:
            (folder / name).unlink(missing_ok=True)
        except OSError:
            pass


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def save_with_meta(path: Path, meta: dict, **arrays: np.ndarray) -> None:
    """Arrays and a JSON ``meta`` dict in one ``.npz``, replaced atomically (derived data
    such as the diffusion graph or the visual-word index, stamped with what it reflects)."""
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
    os.replace(tmp, path)


def load_with_meta(
    path: Path, names: tuple[str, ...], optional: tuple[str, ...] = (), **expected
) -> tuple[dict[str, np.ndarray], int] | None:
    """``(arrays, generation)`` written by :func:`save_with_meta`, or None when the file is
    missing, unreadable, lacks one of ``names`` or its meta differs from ``expected``.
    Arrays named in ``optional`` are included when the file has them."""
    try:
        with np.load(path) as z:
            meta = json.loads(str(z["meta"]))
            if any(meta.get(key) != value for key, value in expected.items()):
                return None
            arrays = {name: z[name] for name in names}
            arrays.update({name: z[name] for name in optional if name in z.files})
            return arrays, int(meta.get("generation", -1))
    except (OSError, ValueError, KeyError):
        return None
