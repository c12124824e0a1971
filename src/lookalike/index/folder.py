"""The index folder: opens, creates and checks it, and keeps every derived file current.

An index is one folder: ``catalogue.sqlite`` (the source of truth) and files derived from
it: the vector store, the neighbour graph and the visual-word index. :class:`IndexFolder`
owns them. Each derived file follows the same path, :class:`DerivedFile`: used from memory
while it matches the catalogue's generation, else loaded, brought level (synchronised by id
or rebuilt) and saved; never saved where the folder is read-only.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
from PIL import Image

from ..errors import (
    DiskFullError,
    IndexFormatError,
    LookalikeError,
    ReadOnlyIndexError,
    storage_error,
)
from ..images import load_first_readable
from ..settings import Settings
from ..verify import Features, Loader, Verifier
from .ann import CatalogueVectors
from .catalogue import Catalogue
from .files import read_only_reason, save_quietly
from .graph import KnnGraph, LinkProgress
from .stores import approximate_for, open_store
from .transform import Transform, TransformedStore
from .words import InvertedFile, shipped_vocabulary

CATALOGUE_FILE = "catalogue.sqlite"
# Settings that change what a stored vector means; fixed when the index is created.
FIXED_SETTINGS = ("model", "gem_p")

T = TypeVar("T")


class DerivedFile(Generic[T]):
    """One derived file kept current with the catalogue: load -> sync or rebuild -> save.

    ``load()`` returns ``(value or None, generation it reflects)``; ``update(value, saved,
    generation)`` brings a value that reflects generation ``saved`` level with the catalogue
    and returns ``(value, save?)``, or ``(None, _)`` when it must be rebuilt; ``build()`` makes it from the catalogue; ``save(value,
    generation)`` writes it. The value is cached per catalogue generation.
    """

    def __init__(
        self,
        load: Callable[[], tuple[T | None, int]],
        update: Callable[[T, int, int], tuple[T | None, bool]],
        build: Callable[[], T],
        save: Callable[[T, int], None],
    ):
        self._load, self._update, self._build, self._save = load, update, build, save
        self._value: T | None = None
        self._generation = -1
        self._loaded: tuple[T | None, int] | None = None

    def current(self, generation: int) -> T:
        if self._value is not None and self._generation == generation:
            return self._value
        if self._loaded is None:
            self._loaded = self._load()
        value, saved = self._loaded
        changed = False
        if value is not None:
            value, changed = self._update(value, saved, generation)
        if value is None:
            value, changed = self._build(), True
        if changed:
            built = value
            save_quietly(lambda: self._save(built, generation))
            self._loaded = (value, generation)
        self._value, self._generation = value, generation
        return value

    def forget(self) -> None:
        """Drop what is in memory (its space changed): the next use loads again."""
        self._value, self._generation, self._loaded = None, -1, None


def open_catalogue(path: Path, settings: Settings, *, model: str | None, create: bool,
                   model_id: Callable[[Settings], str]) -> tuple[Catalogue, Settings]:
    """The folder's catalogue and the settings it fixes, creating a new index if allowed.

    ``model`` picks the model of a *new* index; an existing one must have been built with it
    (vectors of different models cannot be compared). ``model_id(settings)`` names the model
    and pooling, stored in a new index. An index that cannot be written (read-only media, an
    immutable folder) is opened read-only: it searches, and writes raise
    :class:`ReadOnlyIndexError`.
    """
    folder = Path(path).expanduser().absolute()
    catalogue_path = folder / CATALOGUE_FILE
    exists = catalogue_path.exists()
    if not exists:
        if not create:
            if folder.exists() and not folder.is_dir():
                raise IndexFormatError(f"{folder} is a file, not an index folder")
            raise IndexFormatError(
                f"no index at {folder}; create one with: lookalike index DIR --db {folder}"
            )
        if folder.exists() and not folder.is_dir():
            raise IndexFormatError(f"{folder} exists and is not an index folder")
        if folder.exists() and any(folder.iterdir()):
            raise IndexFormatError(
                f"{folder} is a non-empty folder without an index; choose a new --db path"
            )
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise storage_error(exc, folder) or LookalikeError(
                f"cannot create the index at {folder}: {(exc.strerror or str(exc)).lower()}"
            ) from exc
    reason = read_only_reason(folder, catalogue_path) if exists else None
    refusal = ReadOnlyIndexError(f"the index at {folder} is read-only: {reason}") if reason else False
    try:
        catalogue = Catalogue(catalogue_path, readonly=refusal)
    except (ReadOnlyIndexError, DiskFullError) as exc:  # SQLite cannot write: a share, a full disk
        if not exists or refusal:
            raise
        catalogue = Catalogue(catalogue_path, readonly=exc)
    try:
        stored = catalogue.settings_json()
        if exists and stored:  # (the catalogue has migrated an older format, or refused)
            if model and model != stored["model"]:
                raise IndexFormatError(
                    f"{folder} was built with model '{stored['model']}', not '{model}'; "
                    f"use a new --db for {model}"
                )
            return catalogue, settings.with_(**{k: stored[k] for k in FIXED_SETTINGS})
        if model:
            settings = settings.with_(model=model)
        if catalogue.readonly:  # a catalogue made without settings, left as it is
            return catalogue, settings
        from ..version import __version__

        catalogue.set_meta(
            {
                "settings": json.dumps({k: getattr(settings, k) for k in FIXED_SETTINGS}),
                "model_id": model_id(settings),
                "created_at": str(time.time()),
                "created_by": f"lookalike {__version__}",
            }
        )
        return catalogue, settings
    except BaseException:
        catalogue.close()
        raise


def ids_changed(before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(added, removed)`` ids between two sorted, unique id arrays."""
    return (np.setdiff1d(after, before, assume_unique=True),
            np.setdiff1d(before, after, assume_unique=True))


class IndexFolder:
    """An open index folder: its catalogue, settings, model and current derived files.

    It is what the query stages read (:class:`lookalike.query.stages.Collection`) and what
    indexing writes through; :class:`lookalike.Index` is the public face over it.
    """

    def __init__(self, path: Path, catalogue: Catalogue, settings: Settings):
        from ..embed.embedder import Embedder

        self.path = path
        self.catalogue = catalogue
        self.settings = settings
        self.embedder = Embedder(settings)
        self._store: TransformedStore | None = None
        self._graph: DerivedFile[KnnGraph] | None = None
        self._graph_fingerprint = ""
        self._progress: LinkProgress | None = None
        self._words = DerivedFile(self._load_words, self._update_words, self._build_words,
                                  self._save_words)
        self._verifier: Verifier | None = None

    @classmethod
    def open(cls, path: str | Path, settings: Settings, *, model: str | None = None,
             create: bool = True) -> IndexFolder:
        from ..embed.embedder import Embedder

        folder = Path(path).expanduser().absolute()
        catalogue, settings = open_catalogue(
            folder, settings, model=model, create=create,
            model_id=lambda s: Embedder(s).model_id,
        )
        return cls(folder, catalogue, settings)

    def close(self) -> None:
        self.catalogue.close()

    # --- the vector store (centred and whitened descriptors) ---------------------------
    @property
    def store(self) -> TransformedStore:
        """The vector store, loaded from disk or rebuilt from the catalogue when stale; the
        transform is re-learned, and the store rebuilt, when the collection has moved by
        ``TransformParams.refit_ratio`` since it was learned."""
        if self._store is None:
            self._store = self.open_store()
        return self._store

    def reserve(self, expected: int) -> None:
        """Open the store sized for ``expected`` images (unless open): a large first indexing
        run then builds the approximate store and never grows a float matrix."""
        if self._store is None:
            self.open_store(expected)

    def whiten_min_images(self, count: int) -> int | None:
        """``TransformParams.whiten_min_images``, or None (no whitening) when whitening is off
        or the collection uses the approximate store: that store re-scores its candidates
        from the catalogue's raw descriptors, and whitening each is a D x D product."""
        params = self.settings.transform
        if not params.whiten or approximate_for(self.path, count, self.settings.ann):
            return None
        return params.whiten_min_images

    def open_store(self, expected: int = 0) -> TransformedStore:
        """Exact or approximate by collection size (``expected``: images about to be added)."""
        params = self.settings.transform
        transform = Transform.from_json(self.catalogue.get_meta("transform"))
        count = self.catalogue.count_images()
        whiten_min = self.whiten_min_images(max(count, expected))
        refit = transform.stale_for(count, whiten_min, params)
        if refit:
            transform = self._refit_transform(whiten_min)
        inner = open_store(
            self.path, self.catalogue, self.settings.ann, milvus=self.settings.milvus,
            transform=transform.apply, fingerprint=transform.fingerprint, rebuild=refit,
            expected=expected,
        )
        self._store = TransformedStore(
            inner, transform, CatalogueVectors(self.catalogue, transform.apply)
        )
        return self._store

    def _refit_transform(self, whiten_min_images: int | None) -> Transform:
        # The mean is streamed in chunks (a million descriptors would not fit at once); the
        # whitening reads a sample of at most TransformParams.sample of them.
        params = self.settings.transform
        source = CatalogueVectors(self.catalogue)
        total, count = None, 0
        for _, chunk in source.chunks():
            part = chunk.sum(axis=0, dtype=np.float64)
            total, count = (part if total is None else total + part), count + len(chunk)
        if count < params.min_images:
            transform = Transform(None, count)
        else:
            ids = source.ids()
            transform = Transform.with_whitening(
                (total / count).astype(np.float32), count,
                lambda positions: source(ids[positions])[1], whiten_min_images, params=params,
            )
        self._remember({"transform": transform.to_json()})
        return transform

    def _remember(self, meta: dict[str, str]) -> None:
        """Store derived metadata in the catalogue if it can be written now; else it is kept
        in memory (a read-only index, a full disk) and worked out again next time."""
        if self.catalogue.readonly:
            return
        try:
            self.catalogue.set_meta(meta)
        except sqlite3.OperationalError as exc:
            if not isinstance(storage_error(exc, self.path), (ReadOnlyIndexError, DiskFullError)):
                raise

    def after_writes(self) -> None:
        """Save the store; rebuild it now if the transform must be re-learned, so the next
        search starts fast."""
        save_quietly(lambda: self.store.save(self.path, self.catalogue.generation))
        count = self.catalogue.count_images()
        if self.store.transform.stale_for(count, self.whiten_min_images(count), self.settings.transform):
            self._store = None  # the old matrix is freed before the new one is built
            self.open_store()

    # --- the neighbour graph -------------------------------------------------------------
    def graph(self, progress: LinkProgress | None = None) -> KnnGraph:
        """The neighbour graph for diffusion, current with the catalogue (built lazily)."""
        fingerprint = self.store.transform.fingerprint
        if self._graph is None or self._graph_fingerprint != fingerprint:
            self._graph, self._graph_fingerprint = DerivedFile(
                lambda: KnnGraph.load(self.path, fingerprint), self._update_graph,
                self._build_graph, lambda graph, generation: graph.save(
                    self.path, generation, self.settings.rerank),
            ), fingerprint
        self._progress = progress
        try:
            return self._graph.current(self.catalogue.generation)
        finally:
            self._progress = None

    def _build_graph(self) -> KnnGraph:
        store = self.store
        return KnnGraph.build(
            CatalogueVectors(self.catalogue).ids(), store.vectors, store.inner.search,
            self.settings.rerank.graph_pool, store.transform.fingerprint, progress=self._progress,
        )

    def _update_graph(
        self, graph: KnnGraph, saved: int, generation: int
    ) -> tuple[KnnGraph | None, bool]:
        if graph.k != self.settings.rerank.graph_pool:
            return None, True  # a pool of another size: rebuilt
        if saved == generation and graph.links_saved:
            return graph, False  # (it reflects the catalogue as it is)
        current = CatalogueVectors(self.catalogue).ids()
        if np.setxor1d(graph.ids, current).size > len(current) // 2:
            return None, True  # mostly new: rebuilt
        store = self.store
        graph.sync(current, store.vectors, store.inner.search, self._progress)
        return graph, True

    # --- the visual-word index -----------------------------------------------------------
    def word_index(self) -> InvertedFile:
        """The visual-word index of the stored local features, current with the catalogue.

        The last built file is loaded and followed by id: images added or removed since are
        merged in at query time until they exceed ``WordParams.rebuild_fraction`` of it;
        then it is rebuilt from the catalogue and saved."""
        return self._words.current(self.catalogue.generation)

    def _load_words(self) -> tuple[InvertedFile | None, int]:
        return InvertedFile.load(self.path, shipped_vocabulary().fingerprint)

    def _update_words(
        self, built: InvertedFile, saved: int, generation: int
    ) -> tuple[InvertedFile | None, bool]:
        if saved == generation:
            return built, False
        added, removed = ids_changed(built.image_ids, self.catalogue.local_feature_ids())
        if len(added) + len(removed) > self.settings.words.rebuild_fraction * len(built.image_ids):
            return None, True
        return built.with_changes(*self.stored_words(added), removed), False

    def _build_words(self) -> InvertedFile:
        return InvertedFile.build(*self.stored_words(), shipped_vocabulary().size)

    def _save_words(self, words: InvertedFile, generation: int) -> None:
        words.save(self.path, generation, shipped_vocabulary().fingerprint)

    def stored_words(self, image_ids: np.ndarray | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
        """``(ids, words)`` of the images with local features (all, or of ``image_ids``);
        images indexed before words were stored are quantised from their descriptors."""
        vocabulary = shipped_vocabulary()
        ids, words = [], []
        for image_id, stored, descriptors in self.catalogue.visual_words(image_ids):
            if stored is None:
                stored = vocabulary.quantise(np.frombuffer(descriptors, dtype=np.uint8))
            ids.append(image_id)
            words.append(stored)
        return np.asarray(ids, dtype=np.int64), words

    # --- spatial verification --------------------------------------------------------------
    @property
    def verifier(self) -> Verifier:
        """The verifier and its feature cache (valid across changes: ids are never reused)."""
        if self._verifier is None:
            self._verifier = Verifier(self.settings.verify)
        return self._verifier

    def feature_loader(self, ids: list[int]) -> Loader:
        """A loader of the stored local features of ``ids``, else of their pictures.

        The catalogue is read here, not in the verifying threads, which must not share
        its connection."""
        stored = {
            image_id: Features(points, descriptors)
            for image_id, (points, descriptors) in self.catalogue.local_features_for(ids).items()
        }
        pictures = self.picture_loader([i for i in ids if i not in stored], self.settings.verify.size)

        def load(image_id: int) -> Features | Image.Image | None:
            return stored[image_id] if image_id in stored else pictures(image_id)

        return load

    def picture_loader(self, ids: list[int], size: int) -> Callable[[int], Image.Image | None]:
        """A loader of the pictures of ``ids`` (each from the first of its files that
        decodes), whose files are looked up here, at once: the loader may run on threads
        that must not share the catalogue's connection."""
        where, settings = self.catalogue.locations_for(list(ids)), self.settings

        def load(image_id: int) -> Image.Image | None:
            return load_first_readable(where.get(image_id, []), max_pixels=settings.max_pixels,
                                       max_bytes=settings.max_file_bytes, target_size=size)

        return load
