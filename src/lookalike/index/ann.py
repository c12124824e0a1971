"""Approximate search for large collections: an HNSW graph (usearch) over int8 codes.

Why this shape (measured in docs/benchmarks.md):

* **Memory.** A float32 descriptor is 5 KB, so an exact matrix of a million images needs 5 GB.
  The graph keeps a 256-byte int8 code per image plus its links (about 400 bytes in all), in
  one file that is memory-mapped when searching (``restore(view=True)``): opening is instant
  and only the pages a query visits are read.
* **Codes.** usearch maps floats in [-1, 1] to int8 by multiplying by 127; components of a unit
  1,280-d vector are tiny, which leaves a handful of levels and caps recall.
  :class:`~lookalike.index.codec.Int8Codec` centres the descriptors, keeps their principal
  axes and scales them to the int8 range: short codes, and a graph much cheaper to build and
  search.
* **Exact scores.** The graph only proposes candidates; the best few are re-scored with their
  exact descriptors from the catalogue (the source of truth), so scores equal FlatStore's and
  recall depends on the graph alone, not on the codes.
* **Filters.** Label filters and category routing pass candidate ids: a few hundred are scored
  exactly; up to ``scan_max`` are ranked by their codes (read from the graph), then the best
  re-scored; larger sets search the graph with oversampling and keep the allowed ids.
* **Derived data.** The file records the catalogue generation. A stale file is *repaired* by
  comparing its ids with the catalogue's (add the missing, drop the gone), so an interrupted
  indexing run never costs a full rebuild; only a missing or damaged file is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ..settings import AnnParams
from .catalogue import Catalogue
from .codec import Int8Codec
from .files import atomic_write, save_quietly
from .rescore import VectorSource, rescore
from .vectors import in_order

CODEC_VERSION = 1


class CatalogueVectors:
    """Exact descriptors read by id from the catalogue; also streams them for (re)builds.

    ``transform`` maps raw descriptors into the store's space (e.g. centring), so re-scored
    candidates are compared exactly as the store compares them.
    """

    def __init__(
        self, catalogue: Catalogue, transform: Callable[[np.ndarray], np.ndarray] | None = None
    ):
        self.catalogue = catalogue
        self.transform = transform

    def __call__(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ids still in the catalogue among ``ids``, and their (transformed) descriptors."""
        return self._transformed(*self.catalogue.vectors_by_id(np.asarray(ids).ravel()))

    def ids(self) -> np.ndarray:
        """Every image id, ascending."""
        return self.catalogue.image_ids()

    def chunks(self, size: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All ``(ids, vectors)`` in id order, ``size`` at a time (bounded memory: a chunk
        and its decoded copy stay a few tens of MiB whatever the collection's size)."""
        for ids, vectors in self.catalogue.vector_chunks(size):
            yield self._transformed(ids, vectors)

    def _transformed(self, ids: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return ids, (self.transform(vectors) if self.transform and len(ids) else vectors)


def usearch_index() -> type:
    """usearch's ``Index`` class, imported with ONNX Runtime loaded first: loading ONNX
    Runtime after usearch's compiled module crashes the process (a segmentation fault
    inside ONNX Runtime's start-up), and a process that opens a large index before it
    embeds (``lookalike index`` adding to one) would do exactly that."""
    import onnxruntime  # noqa: F401 - (the order is the point)
    from usearch.index import Index

    return Index


class AnnStore:
    """A :class:`~lookalike.index.vectors.VectorStore` backed by a usearch HNSW graph.

    Until ``params.calibrate_at`` vectors have been added (the codec needs a sample), they
    are kept in a small exact buffer; then the codec is fitted and the graph built.
    """

    kind = "ann"
    FILES = ("ann.usearch", "ann-codec.npy", "ann.json")

    def __init__(self, exact: VectorSource, params: AnnParams | None = None, fingerprint: str = ""):
        self.exact = exact
        self.params = params or AnnParams()
        # Names ``exact``'s transform (e.g. the centre); a graph made for another is rebuilt.
        self.fingerprint = hashlib.sha256(fingerprint.encode()).hexdigest()[:16]
        self.codec: Int8Codec | None = None
        self._index = None
        self._viewed: Path | None = None  # the file a read-only memory map points at
        self._buffer_ids = np.zeros(0, dtype=np.int64)
        self._buffer = np.zeros((0, 0), dtype=np.float32)
        self.removed = 0  # deletions since the graph was built (tombstones)
        self._same_as: Path | None = None  # the saved file equal to this graph, if any

    # --- the protocol ----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._buffer_ids) + (len(self._index) if self._index is not None else 0)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return
        vectors = np.asarray(vectors, dtype=np.float32)
        self.remove(ids)
        if self._index is None:
            self._buffer_ids = np.concatenate([self._buffer_ids, ids])
            self._buffer = (
                vectors if not self._buffer.size else np.concatenate([self._buffer, vectors])
            )
            if len(self._buffer_ids) >= self.params.calibrate_at:
                self._start_graph()
            return
        self._writable().add(ids.astype(np.uint64), self.codec.encode(vectors))

    def remove(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return
        if len(self._buffer_ids):
            keep = ~np.isin(self._buffer_ids, ids)
            self._buffer_ids, self._buffer = self._buffer_ids[keep], self._buffer[keep]
        if self._index is not None:
            present = ids[self._index.contains(ids.astype(np.uint64))]
            if len(present):
                self._writable().remove(present.astype(np.uint64))
                self.removed += len(present)

    def search(
        self,
        queries: np.ndarray,
        k: int,
        candidates: np.ndarray | None = None,
        *,
        rough: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """See :class:`~lookalike.index.vectors.VectorStore`. ``rough`` re-scores
        ``params.rough_rescore`` graph candidates instead of ``params.rescore``: each is a
        descriptor read from the catalogue, the main cost of a regional query."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        rescore = self.params.rough_rescore if rough else self.params.rescore
        if candidates is not None:
            candidates = np.unique(np.asarray(candidates, dtype=np.int64))
        if self._index is None or (candidates is not None and len(candidates) <= max(k, rescore)):
            ids = self.ids() if candidates is None else candidates
            return self._rescore(queries, [ids] * len(queries), k)
        if candidates is not None and len(candidates) <= self.params.scan_max:
            return self._rescore(queries, self._scan(queries, k, candidates, rescore), k)
        return self._rescore(queries, self._propose(queries, k, candidates, rescore), k)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """Exact vectors of ``ids`` from the source (the catalogue), in the order asked."""
        ids = np.asarray(ids, dtype=np.int64)
        return in_order(*self.exact(ids), ids)

    def save(self, folder: Path, generation: int) -> None:
        folder = Path(folder)
        if self._index is None:  # too few vectors for a graph yet: the catalogue has them all
            for name in self.FILES:
                (folder / name).unlink(missing_ok=True)
            return
        path = folder / "ann.usearch"
        if self._same_as != path:  # else only the generation moved: no gigabyte rewrite
            tmp = folder / f"ann.usearch.{os.getpid()}.tmp"  # renamed: readers' maps stay valid
            self._index.save(str(tmp))
            os.replace(tmp, path)
            self.codec.save(folder / "ann-codec.npy")
            self._same_as = path
        meta = {
            "generation": generation,
            "count": len(self._index),
            "ndim": int(len(self.codec.mean)),
            "codec_version": CODEC_VERSION,
            "removed": self.removed,
            "fingerprint": self.fingerprint,
            "connectivity": self.params.connectivity,
        }
        atomic_write(folder / "ann.json", json.dumps(meta).encode())

    # --- opening and building --------------------------------------------------------
    @classmethod
    def open(
        cls,
        folder: Path,
        source: CatalogueVectors,
        *,
        params: AnnParams | None = None,
        fingerprint: str = "",
        rebuild: bool = False,
    ) -> AnnStore:
        """The saved graph, memory-mapped if current, repaired if stale, rebuilt if unusable.

        A graph with many deletions (tombstones: over half its size) or made for another
        ``fingerprint`` is rebuilt, as is every graph when ``rebuild`` is set.
        """
        folder = Path(folder)
        generation = source.catalogue.generation
        store = cls(source, params, fingerprint)
        meta = None if rebuild else store.load_saved(folder)
        if meta is not None and meta.get("fingerprint") != store.fingerprint:
            meta = None
        if meta is not None and meta["generation"] == generation:
            return store
        if meta is not None and store.removed <= len(store._index) // 2:
            store._repair(source)
        else:
            store = cls.build(source, params, fingerprint)
        save_quietly(lambda: store.save(folder, generation))
        return store

    @classmethod
    def build(
        cls, source: CatalogueVectors, params: AnnParams | None = None, fingerprint: str = ""
    ) -> AnnStore:
        """A fresh graph over every vector in the catalogue, read in bounded chunks."""
        store = cls(source, params, fingerprint)
        for ids, vectors in source.chunks():
            store.add(ids, vectors)
        return store

    def ids(self) -> np.ndarray:
        """Every stored id (buffered and in the graph)."""
        graph = (
            np.asarray(self._index.keys, dtype=np.int64)
            if self._index is not None
            else np.zeros(0, dtype=np.int64)
        )
        return np.concatenate([self._buffer_ids, graph])

    # --- internals -------------------------------------------------------------------
    def _new_index(self, ndim: int):
        return usearch_index()(
            ndim=ndim,
            metric="l2sq",
            dtype="i8",
            connectivity=self.params.connectivity,
            expansion_add=self.params.expansion_add,
            expansion_search=self.params.expansion_search,
        )

    def _start_graph(self) -> None:
        self.codec = Int8Codec.fit(self._buffer, self.params.dims)
        self._index = self._new_index(self.codec.dims)
        ids, vectors = self._buffer_ids, self._buffer
        self._buffer_ids = np.zeros(0, dtype=np.int64)
        self._buffer = np.zeros((0, 0), dtype=np.float32)
        self._index.add(ids.astype(np.uint64), self.codec.encode(vectors))

    def _writable(self):
        """The graph in memory, about to change; a read-only map is loaded on first write."""
        self._same_as = None
        if self._viewed is not None:
            self._index = usearch_index().restore(str(self._viewed), view=False)
            self._index.expansion_search = self.params.expansion_search
            self._viewed = None
        return self._index

    def load_saved(self, folder: Path) -> dict | None:
        """Map the saved graph read-only; None when missing, damaged or of another shape."""
        try:
            meta = json.loads((folder / "ann.json").read_text())
            if meta.get("codec_version") != CODEC_VERSION:
                return None
            codec = Int8Codec.load(folder / "ann-codec.npy")
            index = usearch_index().restore(str(folder / "ann.usearch"), view=True)
        except (OSError, ValueError, RuntimeError, KeyError):
            return None
        if index is None or len(index) != meta.get("count") or index.ndim != codec.dims:
            return None
        index.expansion_search = self.params.expansion_search
        self.codec, self._index, self._viewed = codec, index, folder / "ann.usearch"
        self.removed = int(meta.get("removed", 0))
        self._same_as = self._viewed
        return meta

    def _repair(self, source: CatalogueVectors) -> None:
        """Bring a stale graph level with the catalogue: ids are content, so a diff suffices."""
        truth = source.ids()
        stored = self.ids()
        gone = np.setdiff1d(stored, truth, assume_unique=True)
        missing = np.setdiff1d(truth, stored, assume_unique=True)
        self.remove(gone)
        for start in range(0, len(missing), 20_000):
            self.add(*source(missing[start : start + 20_000]))


    def _propose(
        self, queries: np.ndarray, k: int, candidates: np.ndarray | None, rescore: int
    ) -> list[np.ndarray]:
        """Graph candidates per query (allowed ids only), at least ``rescore`` when possible;
        a filter keeps ``1/fraction`` times more, as the graph cannot skip disallowed ids."""
        want = max(k, rescore)
        total = len(self)
        if candidates is not None:  # oversample by how rare the allowed ids are
            want = min(total, math.ceil(want * total / max(len(candidates), 1)))
        out = []
        for found in self._graph_search(self.codec.encode(queries), want):
            if candidates is not None:
                found = found[np.isin(found, candidates)]
                if len(found) < min(k, len(candidates)):  # too rare after all: be exact
                    found = candidates
            out.append(np.concatenate([found, self._buffer_ids]))
        return out

    def _scan(
        self, queries: np.ndarray, k: int, candidates: np.ndarray, rescore: int
    ) -> list[np.ndarray]:
        """The allowed ids whose codes are closest to each query (a filter of up to
        ``scan_max`` ids: reading codes from the graph costs microseconds per id, reading
        descriptors from the catalogue tens)."""
        keys = candidates.astype(np.uint64)
        in_graph = candidates[self._index.contains(keys)]
        codes = np.stack(self._index.get(in_graph.astype(np.uint64))).astype(np.int32)
        buffered = self._buffer_ids[np.isin(self._buffer_ids, candidates)]
        want = min(max(k, rescore), len(in_graph))
        out = []
        for code in self.codec.encode(queries).astype(np.int32):
            distances = ((codes - code) ** 2).sum(axis=1)
            nearest = np.argpartition(distances, want - 1)[:want] if want else []
            out.append(np.concatenate([in_graph[nearest], buffered]))
        return out

    def _graph_search(self, codes: np.ndarray, count: int) -> list[np.ndarray]:
        """The ``count`` nearest ids by code of each row of ``codes``: one call for the
        batch, spread over the cores (the same answers as one query at a time).
        usearch widens the beam to ``count`` by itself when count > expansion_search."""
        found = self._index.search(codes, count)  # threads: all cores
        if len(codes) == 1:
            return [np.asarray(found.keys, dtype=np.int64)]
        return [np.asarray(found.keys[r, : found.counts[r]], dtype=np.int64) for r in range(len(codes))]

    def _rescore(
        self, queries: np.ndarray, proposals: list[np.ndarray], k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores for each query's proposed ids (:func:`~lookalike.index.rescore.rescore`),
        the buffered vectors' from the buffer."""
        buffered = self._buffered if len(self._buffer_ids) else None
        return rescore(queries, proposals, k, self.exact, held=self._buffer_ids, extra=buffered)

    def _buffered(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Those of ``ids`` in the buffer, and their vectors."""
        in_buffer = np.isin(self._buffer_ids, ids)
        return self._buffer_ids[in_buffer], self._buffer[in_buffer]
