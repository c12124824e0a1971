"""The store factory: which vector store a collection gets, loaded if current, else rebuilt.

Stores are derived data (the catalogue holds every descriptor). Exact
:class:`~lookalike.index.vectors.FlatStore` below ``Settings.ann.threshold`` images, the
approximate :class:`~lookalike.index.ann.AnnStore` from there on; or, for an index that records
a Milvus address (catalogue meta ``store``), :class:`~lookalike.index.milvus_store.MilvusStore`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..settings import AnnParams, MilvusParams, Settings
from .catalogue import Catalogue
from .files import save_quietly, unlink_quietly
from .milvus_store import REMOTE_STORE_KEY
from .vectors import FlatStore, VectorStore


def attach_check(uri: str | None, settings: Settings) -> str | None:
    """Check a remote store address before an index records it (None: no remote store):
    a bad address, a server that is down, a collection of another vector size or an index
    type the server cannot build fail here, before anything is written."""
    if not uri:
        return None
    from ..embed.embedder import Embedder
    from .milvus_server import MilvusAddress
    from .milvus_store import check_store

    MilvusAddress.parse(uri)  # a typo fails before the model is loaded
    outputs = {o.name: o.shape for o in Embedder(settings).session.get_outputs()}
    dims = int(outputs["feature_map"][1])
    return check_store(uri, dims, settings.milvus, settings.top_labels)


def record_remote(catalogue: Catalogue, address: str | None) -> bool:
    """Record a checked remote store address in the catalogue; True when it changed (the
    caller then reopens its store, which brings the collection level with the catalogue)."""
    if not address or catalogue.get_meta(REMOTE_STORE_KEY) == address:
        return False
    catalogue.set_meta({REMOTE_STORE_KEY: address})
    return True


def approximate_for(folder: Path, count: int, params: AnnParams) -> bool:
    """Whether a collection of ``count`` images in ``folder`` uses the approximate store:
    from ``params.threshold`` images, and an index that has one keeps it down to half the
    threshold, so a collection hovering around the threshold does not switch back and forth."""
    has_ann = (Path(folder) / "ann.json").exists()
    return count >= params.threshold or (has_ann and count >= params.threshold // 2)


def open_store(
    folder: Path,
    catalogue: Catalogue,
    params: AnnParams,
    *,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    fingerprint: str = "",
    rebuild: bool = False,
    expected: int = 0,
    milvus: MilvusParams | None = None,
) -> VectorStore:
    """The store that suits the collection: loaded if current, else built from the catalogue.

    ``expected`` counts images about to be added, so a large first run never grows a float
    matrix. ``transform`` maps raw descriptors into the store's space; ``fingerprint`` names
    it, and ``rebuild`` forces a rebuild (a new transform). An index that records a remote
    store address (``milvus://...``) gets that store, with ``milvus`` as its parameters.
    """
    folder = Path(folder)
    remote = catalogue.get_meta(REMOTE_STORE_KEY)
    if remote:
        from .ann import AnnStore, CatalogueVectors
        from .milvus_store import MilvusStore

        unlink_quietly(folder, (*FlatStore.FILES, *AnnStore.FILES))
        return MilvusStore.open(folder, catalogue, remote, milvus or MilvusParams(),
                                transform=transform, fingerprint=fingerprint, rebuild=rebuild,
                                exact=CatalogueVectors(catalogue, transform))
    count = max(catalogue.count_images(), expected)
    if approximate_for(folder, count, params):
        from .ann import AnnStore, CatalogueVectors

        unlink_quietly(folder, FlatStore.FILES)
        source = CatalogueVectors(catalogue, transform)
        return AnnStore.open(folder, source, params=params, fingerprint=fingerprint, rebuild=rebuild)
    if (folder / "ann.json").exists():  # shrunk below the approximate store's range
        from .ann import AnnStore

        unlink_quietly(folder, AnnStore.FILES)
    store = None if rebuild else FlatStore.load(folder, catalogue.generation)
    if store is None:
        store = FlatStore(*streamed_matrix(catalogue, transform))
        built = store
        save_quietly(lambda: built.save(folder, catalogue.generation))
    return store


def streamed_matrix(
    catalogue: Catalogue, transform: Callable[[np.ndarray], np.ndarray] | None, chunk: int = 4096
) -> tuple[np.ndarray, np.ndarray | None]:
    """Every image id and its (transformed) descriptor, read and transformed ``chunk`` rows
    at a time into one preallocated matrix: a rebuild at the end of an indexing run then
    holds the matrix once, not the raw descriptors and each step of the transform as well."""
    expected = catalogue.count_images()
    ids_parts, matrix, filled = [], None, 0
    for ids, vectors in catalogue.vector_chunks(chunk):
        vectors = transform(vectors) if transform else vectors
        if matrix is None or filled + len(ids) > len(matrix):  # first chunk, or rows added since
            grown = np.empty((max(expected, filled + len(ids)), vectors.shape[1]), np.float32)
            if matrix is not None:
                grown[:filled] = matrix[:filled]
            matrix = grown
        matrix[filled : filled + len(ids)] = vectors
        ids_parts.append(ids)
        filled += len(ids)
    ids = np.concatenate(ids_parts) if ids_parts else np.zeros(0, np.int64)
    return ids, None if matrix is None else matrix[:filled]
