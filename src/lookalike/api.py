"""The public Python API: :class:`Index`.

>>> import lookalike
>>> with lookalike.Index.open("photos.lookalike") as index:
...     index.add(["~/Pictures"])
...     result = index.search("query.jpg", k=10)
...     for match in result.matches:
...         print(match.rank, match.score, match.path)

The CLI, the web server and the benchmarks are thin layers over this class.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from . import __version__
from .embed.embedder import Embedder, Embeddings
from .embed.labels import imagenet_labels
from .errors import ImageError, IndexFormatError, LookalikeError
from .images import is_supported, load_image
from .index.catalogue import FORMAT_VERSION, Catalogue
from .index.transform import Centre, CentredStore
from .index.vectors import FlatStore, VectorStore
from .pipeline import Indexer, IndexReport, ProgressCallback, discover, is_under
from .search import SearchResult, expand_matches, search_vectors
from .settings import Settings

ImageLike = str | os.PathLike | bytes | Image.Image
CATALOGUE_FILE = "catalogue.sqlite"
# Settings that change what a stored vector means; fixed when the index is created.
_FIXED_SETTINGS = ("model", "gem_p")


class Index:
    """A folder holding a catalogue (SQLite) and a vector store for one image collection."""

    def __init__(self, path: Path, catalogue: Catalogue, settings: Settings):
        self.path = path
        self.catalogue = catalogue
        self.settings = settings
        self.embedder = Embedder(settings)
        self._store: CentredStore | None = None

    # --- opening ---------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        model: str | None = None,
        settings: Settings | None = None,
        create: bool = True,
    ) -> Index:
        """Open the index folder at ``path``, creating it if needed (``create=True``).

        ``model`` picks the model for a *new* index; for an existing one it must match the
        model it was built with (vectors of different models cannot be compared).
        """
        folder = Path(path).expanduser().absolute()
        settings = settings or Settings()
        catalogue_path = folder / CATALOGUE_FILE
        exists = catalogue_path.exists()
        if not exists:
            if not create:
                raise IndexFormatError(
                    f"no index at {folder}; create one with: lookalike index DIR --db {folder}"
                )
            if folder.exists() and not folder.is_dir():
                raise IndexFormatError(f"{folder} exists and is not an index folder")
            if folder.exists() and any(folder.iterdir()):
                raise IndexFormatError(
                    f"{folder} is a non-empty folder without an index; choose a new --db path"
                )
            folder.mkdir(parents=True, exist_ok=True)
        catalogue = Catalogue(catalogue_path)
        try:
            stored = catalogue.settings_json()
            if exists and stored:
                version = int(catalogue.get_meta("format_version", "0"))
                if version != FORMAT_VERSION:
                    raise IndexFormatError(
                        f"{folder} uses index format {version}; this lookalike reads format "
                        f"{FORMAT_VERSION}: re-index into a new --db"
                    )
                if model and model != stored["model"]:
                    raise IndexFormatError(
                        f"{folder} was built with model '{stored['model']}', not '{model}'; "
                        f"use a new --db for {model}"
                    )
                settings = settings.with_(**{k: stored[k] for k in _FIXED_SETTINGS})
            else:
                if model:
                    settings = settings.with_(model=model)
                index = cls(folder, catalogue, settings)
                catalogue.set_meta(
                    {
                        "format_version": str(FORMAT_VERSION),
                        "settings": json.dumps({k: getattr(settings, k) for k in _FIXED_SETTINGS}),
                        "model_id": index.embedder.model_id,
                        "created_at": str(time.time()),
                        "created_by": f"lookalike {__version__}",
                    }
                )
                return index
        except BaseException:
            catalogue.close()
            raise
        return cls(folder, catalogue, settings)

    def close(self) -> None:
        self.catalogue.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        """Number of distinct images (identical files count once)."""
        return self.catalogue.count_images()

    # --- the vector store ------------------------------------------------------------
    @property
    def store(self) -> VectorStore:
        """The vector store, loaded from disk or rebuilt from the catalogue when stale.

        Stored descriptors are centred on the collection mean (:mod:`lookalike.index.transform`);
        the mean is re-learned, and the store rebuilt, when the collection size has moved by
        half since it was learned.
        """
        if self._store is None:
            centre = Centre.from_json(self.catalogue.get_meta("centre"))
            count = self.catalogue.count_images()
            inner = None
            if centre.stale_for(count):
                centre = self._refit_centre()
            else:
                inner = FlatStore.load(self.path, self.catalogue.generation)
            if inner is None:
                ids, vectors = self.catalogue.all_vectors()
                inner = FlatStore(ids, centre.apply(vectors))
                self._save_store(inner, self.catalogue.generation)
            self._store = CentredStore(inner, centre)
        return self._store

    def _refit_centre(self) -> Centre:
        _, vectors = self.catalogue.all_vectors()
        centre = Centre.fit(vectors)
        self.catalogue.set_meta({"centre": centre.to_json()})
        return centre

    def _refresh_store_if_drifted(self) -> None:
        """After writes: drop the store if the centre must be re-learned (rebuilt lazily)."""
        if self._store is not None and self._store.centre.stale_for(self.catalogue.count_images()):
            self._store = None
            self.store  # noqa: B018 - rebuild now, so the next search starts fast

    def _save_store(self, store: VectorStore, generation: int) -> None:
        try:
            store.save(self.path, generation)
        except OSError:
            pass  # a read-only index folder still searches; the store is rebuilt next time

    # --- writing ---------------------------------------------------------------------
    def add(
        self,
        paths: Iterable[str | os.PathLike],
        *,
        prune: bool = False,
        progress: ProgressCallback | None = None,
    ) -> IndexReport:
        """Index image files and folders (recursively); only new or changed files are embedded.

        With ``prune=True`` catalogued files under the given folders that no longer exist are
        forgotten, which makes a re-run mirror the folders. Interrupting (Ctrl-C) keeps every
        finished batch; ``report.interrupted`` is then True and a re-run resumes.
        """
        roots = [os.path.abspath(os.path.expanduser(p)) for p in paths]
        for root in roots:
            if not os.path.exists(root):
                raise LookalikeError(f"no such file or folder: {root}")
            if os.path.isfile(root) and not is_supported(root):
                raise LookalikeError(f"not a supported image type: {root}")
        stats = list(discover(roots, exclude=[self.path]))
        folders = [r for r in roots if os.path.isdir(r)] if prune else []
        indexer = Indexer(self.catalogue, self.embedder, self.store, self.settings, progress)
        try:
            report = indexer.run(stats, prune_under=folders)
        finally:
            self._save_store(self.store, self.catalogue.generation)
        self._refresh_store_if_drifted()
        return report

    def remove(self, paths: Iterable[str | os.PathLike]) -> int:
        """Forget files (or everything under folders); returns how many files were removed."""
        roots = [os.path.abspath(os.path.expanduser(p)) for p in paths]
        gone = [loc for loc in self.catalogue.files_by_location() if is_under(loc, roots)]
        if gone:
            with self.catalogue.transaction() as db:
                orphans = Catalogue.delete_locations(db, gone)
            self.store.remove(np.asarray(orphans, dtype=np.int64))
            self._save_store(self.store, self.catalogue.generation)
            self._refresh_store_if_drifted()
        return len(gone)

    # --- reading ---------------------------------------------------------------------
    def embed(self, images: Sequence[ImageLike]) -> Embeddings:
        """Descriptors and labels for query images (paths, bytes or PIL images)."""
        decoded = [self._decode(image) for image in images]
        return self.embedder.embed_images(decoded)

    def _decode(self, image: ImageLike) -> Image.Image:
        if isinstance(image, Image.Image):
            return image.convert("RGB")
        return load_image(
            image,
            max_pixels=self.settings.max_pixels,
            max_bytes=self.settings.max_file_bytes,
            target_size=self.embedder.input_size,
        )

    def search(
        self,
        image: ImageLike,
        k: int = 10,
        *,
        labels: list[str] | None = None,
        route: str = "global",
        min_score: float | None = None,
    ) -> SearchResult:
        """The ``k`` most similar indexed images to ``image``.

        Args:
            image: A path, encoded bytes or a PIL image.
            k: How many matches (any number up to the collection size).
            labels: Keep only images whose stored top labels include one of these.
            route: ``global`` (default) or ``categories`` (the 2019 behaviour: only images
                sharing a predicted category with the query, falling back to global).
            min_score: Drop matches whose cosine similarity is below this.
        """
        return self.search_many([image], k, labels=labels, route=route, min_score=min_score)[0]

    def search_many(
        self,
        images: Sequence[ImageLike],
        k: int = 10,
        *,
        labels: list[str] | None = None,
        route: str = "global",
        min_score: float | None = None,
        names: Sequence[str] | None = None,
    ) -> list[SearchResult]:
        """Like :meth:`search` for several queries, embedded in one batch."""
        embeddings = self.embed(images)
        names = list(names) if names is not None else [_describe(i) for i in images]
        return self._rank(
            names, embeddings.vectors, embeddings.label_ids,
            k=k, labels=labels, route=route, min_score=min_score,
        )

    def search_by_id(
        self,
        image_id: int,
        k: int = 10,
        *,
        labels: list[str] | None = None,
        route: str = "global",
        min_score: float | None = None,
    ) -> SearchResult:
        """"More like this" for an indexed image, from its stored descriptor and labels,
        so no file is read or embedded again."""
        if not self.catalogue.locations_for([image_id])[image_id]:
            raise LookalikeError(f"no indexed image with id {image_id}")
        stored = self.catalogue.labels_for([image_id])[image_id]
        query_labels = np.asarray([[c for c, _ in stored]], dtype=np.int64)
        vectors = self.catalogue.vectors_for([image_id])
        return self._rank(
            [f"image:{image_id}"], vectors, query_labels,
            k=k, labels=labels, route=route, min_score=min_score,
        )[0]

    def _rank(
        self,
        names: Sequence[str],
        vectors: np.ndarray,
        query_label_ids: np.ndarray,
        *,
        k: int,
        labels: list[str] | None,
        route: str,
        min_score: float | None,
    ) -> list[SearchResult]:
        """Search the store for query vectors and turn the ranking into results."""
        if k < 1:
            raise LookalikeError("k must be at least 1")
        ranked = search_vectors(
            self.catalogue,
            self.store,
            vectors,
            query_label_ids,
            k=k,
            labels=labels,
            route=route,
            min_score=min_score,
        )
        label_names = imagenet_labels()
        return [
            SearchResult(
                query=name,
                matches=expand_matches(self.catalogue, pairs, k),
                query_labels=[label_names[c] for c in query_labels],
                route=taken,
            )
            for name, (pairs, taken), query_labels in zip(names, ranked, query_label_ids, strict=False)
        ]

    def info(self) -> dict:
        """Counts, model, format version, size on disk and the most common labels."""
        names = imagenet_labels()
        size = sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())
        return {
            "path": str(self.path),
            "images": self.catalogue.count_images(),
            "files": self.catalogue.count_files(),
            "failed_files": len(self.catalogue.failures()),
            "model": self.settings.model,
            "model_id": self.catalogue.get_meta("model_id"),
            "format_version": int(self.catalogue.get_meta("format_version", "0")),
            "bytes_on_disk": size,
            "top_labels": [
                {"label": names[c], "images": n} for c, n in self.catalogue.label_histogram()
            ],
        }


def _describe(image: ImageLike) -> str:
    if isinstance(image, (str, os.PathLike)):
        return os.path.abspath(os.path.expanduser(image))
    return "<image>"


def expand_query_paths(queries: Iterable[str | os.PathLike]) -> list[str]:
    """Query arguments to image files: files as given, folders expanded recursively."""
    out: list[str] = []
    for query in queries:
        path = os.path.abspath(os.path.expanduser(query))
        if os.path.isdir(path):
            found = [s.location for s in discover([path])]
            if not found:
                raise LookalikeError(f"no supported images in folder: {path}")
            out.extend(found)
        elif os.path.isfile(path):
            out.append(path)
        else:
            raise ImageError(f"no such query image: {path}")
    return out
