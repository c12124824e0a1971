"""The store factory: which vector store a collection gets, loaded if current, else rebuilt.

Stores are derived data (the catalogue holds every descriptor). Exact
:class:`~lookalike.index.vectors.FlatStore` below ``Settings.ann.threshold`` images, the
approximate :class:`~lookalike.index.ann.AnnStore` from there on. A remote store joins here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..settings import AnnParams
from .catalogue import Catalogue
from .files import save_quietly, unlink_quietly
from .vectors import FlatStore, VectorStore


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
) -> VectorStore:
    """The store that suits the collection: loaded if current, else built from the catalogue.

    ``expected`` counts images about to be added, so a large first run never grows a float
    matrix. ``transform`` maps raw descriptors into the store's space; ``fingerprint`` names
    it, and ``rebuild`` forces a rebuild (a new transform).
    """
    folder = Path(folder)
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
        ids, vectors = catalogue.all_vectors()
        store = FlatStore(ids, transform(vectors) if transform and len(ids) else vectors)
        built = store
        save_quietly(lambda: built.save(folder, catalogue.generation))
    return store
