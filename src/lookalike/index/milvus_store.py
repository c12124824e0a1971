"""A vector store in Milvus, for collections larger than one machine holds.

The catalogue stays the source of truth (paths, hashes, local features, descriptors); Milvus
holds what search needs at scale: the image id (primary key), the descriptor in the store's
space and the image's top ImageNet labels (``label0`` ...). Candidate sets become filter
expressions evaluated by the server: a label filter (:class:`~lookalike.index.vectors.LabelIds`)
as ``label0 in [...] or label1 in [...] ...``, any other id set as ``id in [...]``. The index type (HNSW, DISKANN,
IVF_PQ, FLAT) and its build and search parameters come from
:class:`~lookalike.settings.MilvusParams`.

Like every store it is derived data, followed by the catalogue's generation: ``milvus.json``
in the index folder records the generation, address and transform the collection reflects.
A collection behind the catalogue (an interrupted run, a server that was down) is
synchronised by id (missing ids added from the catalogue, gone ones deleted); one in
another transform's space is reloaded. A run that changes nothing sends no write.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import StoreError
from ..settings import MilvusParams, Settings
from .catalogue import Catalogue
from .files import atomic_write, save_quietly
from .milvus_server import MilvusAddress, MilvusServer
from .rescore import VectorSource, rescore
from .vectors import LabelIds, in_order

REMOTE_STORE_KEY = "store"  # catalogue meta: the address of a remote store, if the index has one
STATE_FILE = "milvus.json"
MAX_TOP_K = 16_384  # the server's limit on results per query
LOSSY = frozenset({"IVF_PQ"})  # index types that score by compressed codes: re-scored exactly
ID_CHUNK = 1_000  # ids per filter expression


def id_filter(ids: np.ndarray) -> str:
    """A Milvus filter expression selecting ``ids``."""
    return f"id in [{','.join(str(int(i)) for i in ids)}]"


def label_filter(classes: Sequence[int], fields: int) -> str:
    """A Milvus filter expression selecting the images that hold any of ``classes`` among
    their ``fields`` top labels (``label0`` ...): the catalogue's label filter, on the server."""
    listed = ",".join(str(int(c)) for c in classes)
    return " or ".join(f"label{i} in [{listed}]" for i in range(fields))


class MilvusStore:
    """A :class:`~lookalike.index.vectors.VectorStore` in a Milvus collection."""

    FILES = (STATE_FILE,)

    def __init__(self, server: MilvusServer, catalogue: Catalogue, exact: VectorSource | None = None):
        self.server = server
        self.catalogue = catalogue
        # Where a lossy index's candidates get exact scores (the catalogue's descriptors in
        # the store's space); without it the server's scores stand.
        self.exact = exact
        self.kind = f"milvus {server.params.index_type} {server.address}"
        self.labels = len(server.label_fields())
        self.fingerprint = ""
        # Whether every image's catalogue labels fit the label fields, so that a label
        # filter can be sent as labels (else as ids): checked by every synchronisation,
        # kept up by every add, recorded in milvus.json.
        self.labels_complete = False
        self._count: int | None = None

    # --- opening -------------------------------------------------------------------------
    @classmethod
    def connect(cls, uri: str, params: MilvusParams, catalogue: Catalogue) -> MilvusStore:
        """The store of ``uri`` as it is (no synchronisation: what ``lookalike check`` reads)."""
        return cls(MilvusServer(MilvusAddress.parse(uri), params), catalogue)

    @classmethod
    def open(cls, folder: Path, catalogue: Catalogue, uri: str, params: MilvusParams, *,
             transform: Callable[[np.ndarray], np.ndarray] | None = None,
             fingerprint: str = "", rebuild: bool = False,
             exact: VectorSource | None = None) -> MilvusStore:
        """The store of ``uri``, brought level with the catalogue (see the module's doc);
        ``exact`` re-scores a lossy index's candidates (:data:`LOSSY`)."""
        address = MilvusAddress.parse(uri)
        server = MilvusServer(address, params)
        state = _read_state(Path(folder))
        reload = rebuild or state.get("uri") != str(address) or state.get("fingerprint") != fingerprint
        found = server.dims()
        if reload and found is not None and server.count():
            server.drop()  # vectors in another space (or of unknown origin): reloaded
        dims = found or catalogue_dims(catalogue)
        if dims is None:
            raise StoreError(f"the Milvus collection {address.collection} is gone and the index "
                             f"is empty; run: lookalike index DIR --db {folder} --store {address}")
        server.ensure(dims, labels=Settings().top_labels)  # (when the collection was lost)
        store = cls(server, catalogue, exact)
        store.labels_complete = bool(state.get("labels_complete", False))
        if reload or state.get("generation") != catalogue.generation:
            store.sync(transform)
            save_quietly(lambda: store._save_state(Path(folder), catalogue.generation, fingerprint))
        store.fingerprint = fingerprint
        return store

    def sync(self, transform: Callable[[np.ndarray], np.ndarray] | None) -> None:
        """Add the catalogue's images the collection lacks; delete those it no longer has."""
        held = self.stored_ids()
        current = self.catalogue.image_ids()
        self.labels_complete = not self.catalogue.labels_beyond(self.labels)
        gone = np.setdiff1d(held, current, assume_unique=True)
        self.remove(gone)
        missing = np.setdiff1d(current, held, assume_unique=True)
        for start in range(0, len(missing), 20_000):
            ids, vectors = self.catalogue.vectors_by_id(missing[start : start + 20_000])
            if len(ids):
                self.add(ids, transform(vectors) if transform else vectors)

    def stored_ids(self) -> np.ndarray:
        """Every id in the collection, ascending (paged through the server)."""
        server = self.server
        found: list[int] = []
        iterator = server.call("read the ids", lambda: server.client.query_iterator(
            server.name, batch_size=10_000, filter="id >= 0", output_fields=["id"],
            timeout=server.params.timeout))
        while True:
            page = server.call("read the ids", iterator.next)
            if not page:
                break
            found.extend(int(row["id"]) for row in page)
        iterator.close()
        return np.unique(np.asarray(found, dtype=np.int64))

    # --- the VectorStore contract ----------------------------------------------------------
    def __len__(self) -> int:
        if self._count is None:
            self._count = self.server.count()
        return self._count

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return
        vectors = np.asarray(vectors, dtype=np.float32)
        labels = self.catalogue.labels_for([int(i) for i in ids])
        if any(len(held) > self.labels for held in labels.values()):
            self.labels_complete = False
        server, step = self.server, self.server.params.insert_batch
        for start in range(0, len(ids), step):
            rows = []
            for image_id, vector in zip(ids[start : start + step], vectors[start : start + step],
                                        strict=True):
                top = [c for c, _ in labels.get(int(image_id), [])][: self.labels]
                row = {"id": int(image_id), "vector": vector.tolist()}
                row.update({f"label{i}": int(top[i]) if i < len(top) else -1
                            for i in range(self.labels)})
                rows.append(row)
            server.call("write vectors", lambda rows=rows: server.client.upsert(
                server.name, rows, **server.kw()))
        self._count = None

    def remove(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        server = self.server
        for start in range(0, len(ids), ID_CHUNK):
            chunk = [int(i) for i in ids[start : start + ID_CHUNK]]
            server.call("delete vectors", lambda chunk=chunk: server.client.delete(
                server.name, ids=chunk, **server.kw()))
        if len(ids):
            self._count = None

    def search(self, queries: np.ndarray, k: int, candidates: np.ndarray | None = None, *,
               rough: bool = False) -> tuple[np.ndarray, np.ndarray]:
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        expression, kept = "", 1.0
        if candidates is not None:
            allowed = np.unique(np.asarray(candidates, dtype=np.int64))
            k = min(k, len(allowed))
            classes = candidates.classes if isinstance(candidates, LabelIds) else None
            by_labels = classes and self.labels and self.labels_complete
            expression = label_filter(classes, self.labels) if by_labels else id_filter(allowed)
            kept = len(allowed) / max(len(self), 1)
        k = min(k, MAX_TOP_K)
        if k <= 0 or not len(queries):
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        server = self.server
        exact = self.exact if server.params.index_type in LOSSY and server.params.pq_rescore else None
        limit = min(max(k, server.params.pq_rescore), MAX_TOP_K) if exact else k
        hits = server.call("search", lambda: server.client.search(
            server.name, data=queries.tolist(), limit=limit, filter=expression, output_fields=[],
            search_params=server.search_params(limit, kept), anns_field="vector",
            consistency_level=server.params.search_consistency, **server.kw()))
        if exact is not None:
            proposals = [np.array([int(h["id"]) for h in row], dtype=np.int64) for row in hits]
            return rescore(queries, proposals, k, exact)
        width = min((len(row) for row in hits), default=0)
        ids = np.array([[int(h["id"]) for h in row[:width]] for row in hits], dtype=np.int64)
        scores = np.array([[h["distance"] for h in row[:width]] for row in hits], dtype=np.float32)
        return scores.reshape(len(queries), width), ids.reshape(len(queries), width)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids``, read from the server in the order asked."""
        ids = np.asarray(ids, dtype=np.int64)
        unique = np.unique(ids)
        found: dict[int, list[float]] = {}
        server = self.server
        for start in range(0, len(unique), ID_CHUNK):
            chunk = unique[start : start + ID_CHUNK]
            rows = server.call("read vectors", lambda chunk=chunk: server.client.query(
                server.name, filter=id_filter(chunk), output_fields=["vector"],
                consistency_level=server.params.search_consistency, **server.kw()))
            found.update((int(r["id"]), r["vector"]) for r in rows)
        if len(found) != len(unique):
            raise KeyError("asked for vectors of ids the store does not hold")
        keys = np.fromiter(found, dtype=np.int64, count=len(found))
        return in_order(keys, np.asarray(list(found.values()), dtype=np.float32), ids)

    def save(self, folder: Path, generation: int) -> None:
        """Record the generation the collection reflects (the server persists the data)."""
        self._save_state(Path(folder), generation, self.fingerprint)

    def _save_state(self, folder: Path, generation: int, fingerprint: str) -> None:
        state = {"generation": generation, "uri": str(self.server.address),
                 "fingerprint": fingerprint, "labels_complete": self.labels_complete}
        atomic_write(folder / STATE_FILE, json.dumps(state).encode())


def catalogue_dims(catalogue: Catalogue) -> int | None:
    """The descriptor size of the catalogue's images, or None when it has none."""
    for _, vectors in catalogue.vector_chunks(1):
        return int(vectors.shape[1])
    return None


def _read_state(folder: Path) -> dict:
    try:
        return json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def check_store(uri: str, dims: int, params: MilvusParams, labels: int) -> str:
    """Connect to ``uri`` and make sure its collection exists and fits ``dims``-d vectors,
    before an index records it: a bad address, a server that is down or a collection of
    another size fails here, with nothing written. Returns the address, normalised."""
    address = MilvusAddress.parse(uri)
    server = MilvusServer(address, params)
    try:
        server.ensure(dims, labels)
    finally:
        server.close()
    return str(address)
