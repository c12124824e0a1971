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
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from . import __version__
from .embed.embedder import Embedder, Embeddings
from .embed.labels import imagenet_labels
from .errors import ImageError, IndexFormatError, LookalikeError
from .images import is_supported, load_image
from .index.ann import CatalogueVectors
from .index.catalogue import FORMAT_VERSION, Catalogue
from .index.transform import MIN_IMAGES, Transform, TransformedStore
from .index.vectors import VectorStore, approximate_for, open_store
from .index.words import REBUILD_FRACTION, InvertedFile, shipped_vocabulary
from .pipeline import Indexer, IndexReport, ProgressCallback, discover, is_under
from .search import (
    RegionParams,
    SearchOptions,
    SearchResult,
    expand_matches,
    regional_checks,
    search_vectors,
)
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
        self._store: TransformedStore | None = None
        self._graph = None  # rerank.KnnGraph: built by add() when "auto" picks diffusion
        self._verifier = None  # verify.Verifier, with its per-generation feature cache
        self._words: InvertedFile | None = None  # visual-word index, current with the catalogue
        self._words_generation = -1
        self._words_built: tuple[InvertedFile | None, int] | None = None  # last built, its generation

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

        Stored descriptors are centred on the collection mean and whitened
        (:mod:`lookalike.index.transform`); both are re-learned, and the store rebuilt, when
        the collection size has moved by half since they were learned.
        """
        if self._store is None:
            self._store = self._open_store()
        return self._store

    def _whiten_min_images(self, count: int) -> int | None:
        """``Settings.whiten_min_images``, or None (no whitening) when it is off or the
        collection uses the approximate store: that store re-scores its candidates from the
        catalogue's raw descriptors, and whitening each costs a 1,280 x 1,280 product
        (200 per search, 600 per regional stage)."""
        if not self.settings.whiten or approximate_for(self.path, count, self.settings):
            return None
        return self.settings.whiten_min_images

    def _open_store(self, expected: int = 0) -> TransformedStore:
        """Exact or approximate by collection size (``expected``: images about to be added)."""
        transform = Transform.from_json(self.catalogue.get_meta("transform"))
        count = self.catalogue.count_images()
        whiten_min = self._whiten_min_images(max(count, expected))
        refit = transform.stale_for(count, whiten_min)
        if refit:
            transform = self._refit_transform(whiten_min)
        inner = open_store(
            self.path,
            self.catalogue,
            self.settings,
            transform=transform.apply,
            fingerprint=transform.fingerprint,
            rebuild=refit,
            expected=expected,
        )
        return TransformedStore(inner, transform)

    def _refit_transform(self, whiten_min_images: int | None) -> Transform:
        # The mean is streamed in chunks (a million float32 descriptors would need 5 GB at
        # once); the whitening reads a sample of at most transform.WHITEN_SAMPLE of them.
        total, count = None, 0
        for _, chunk in CatalogueVectors(self.catalogue).chunks():
            part = chunk.sum(axis=0, dtype=np.float64)
            total, count = (part if total is None else total + part), count + len(chunk)
        if count < MIN_IMAGES:
            transform = Transform(None, count)
        else:
            source = CatalogueVectors(self.catalogue)
            ids = source.ids()
            transform = Transform.with_whitening(
                (total / count).astype(np.float32), count,
                lambda positions: source(ids[positions])[1], whiten_min_images,
            )
        self.catalogue.set_meta({"transform": transform.to_json()})
        return transform

    def _refresh_store_if_drifted(self) -> None:
        """After writes: drop the store if the transform must be re-learned (rebuilt lazily)."""
        count = self.catalogue.count_images()
        if self._store is not None and self._store.transform.stale_for(count, self._whiten_min_images(count)):
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
        ``progress(done, total)`` is called as files are done; when it also has a
        ``stage(label, unit)`` method (:class:`lookalike.progress.Progress`), it then follows
        the diffusion graph being brought up to date (images linked).
        """
        roots = [os.path.abspath(os.path.expanduser(p)) for p in paths]
        for root in roots:
            if not os.path.exists(root):
                raise LookalikeError(f"no such file or folder: {root}")
            if os.path.isfile(root) and not is_supported(root):
                raise LookalikeError(f"not a supported image type: {root}")
        stats = list(discover(roots, exclude=[self.path]))
        folders = [r for r in roots if os.path.isdir(r)] if prune else []
        if self._store is None:  # sized for what is coming: a big first run goes approximate
            self._store = self._open_store(expected=len(self) + len(stats))
        indexer = Indexer(self.catalogue, self.embedder, self.store, self.settings, progress)
        try:
            report = indexer.run(stats, prune_under=folders)
        finally:
            self._save_store(self.store, self.catalogue.generation)
        self._refresh_store_if_drifted()
        if not report.interrupted:
            try:
                self._prepare_ranking(progress)
            except KeyboardInterrupt:
                report.interrupted = True  # the next add or diffusion query finishes the graph
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
            self._prepare_ranking()
        return len(gone)

    def _prepare_ranking(self, progress: ProgressCallback | None = None) -> None:
        """Bring the diffusion graph up to date now when default queries will diffuse, so the
        first query after indexing does not pay for it (one 100-neighbour search per new
        image; about 2 s for 8,677 images from scratch, about a minute at 50,000 by
        extrapolation).

        A ``progress`` with a ``stage(label, unit)`` method (:class:`lookalike.progress.
        Progress` has one) is told the new stage and then gets ``(linked, to link)``; a plain
        callable is not called, since its counts are files."""
        if self._rerank_method() != "diffusion":
            return
        stage = getattr(progress, "stage", None)
        if stage is not None:
            stage("linking neighbours", "images")
        self._knn_graph(progress if stage is not None else None)

    # --- reading ---------------------------------------------------------------------
    def embed(self, images: Sequence[ImageLike]) -> Embeddings:
        """Descriptors and labels for query images (paths, bytes or PIL images)."""
        decoded = [self._decode(image) for image in images]
        return self.embedder.embed_images(decoded)

    @property
    def query_size(self) -> int:
        """Pixels a query picture needs on its short side (when the file has them): enough
        for the model and for the regional pass. JPEGs are decoded at a reduced scale."""
        return max(self.embedder.input_size, RegionParams().size)

    def _decode(self, image: ImageLike) -> Image.Image:
        if isinstance(image, Image.Image):
            return image.convert("RGB")
        return load_image(
            image,
            max_pixels=self.settings.max_pixels,
            max_bytes=self.settings.max_file_bytes,
            target_size=self.query_size,
        )

    def search(
        self,
        image: ImageLike,
        k: int = 10,
        *,
        labels: list[str] | None = None,
        route: str = "global",
        min_score: float | None = None,
        rerank: str | None = None,
        verify: int | None = None,
        regions: int | None = None,
        words: int | None = None,
    ) -> SearchResult:
        """The ``k`` most similar indexed images to ``image``.

        Args:
            image: A path, encoded bytes or a PIL image.
            k: How many matches (any number up to the collection size).
            labels: Keep only images whose stored top labels include one of these.
            route: ``global`` (default) or ``categories`` (the 2019 behaviour: only images
                sharing a predicted category with the query, falling back to global).
            min_score: Drop matches whose cosine similarity is below this.
            rerank: ``auto``, ``diffusion``, ``qe`` or ``none`` (default ``settings.rerank``,
                ``auto``: diffusion for 500-50,000 images, else query expansion): re-orders
                the ranking (:mod:`lookalike.rerank`); scores stay cosines.
            verify: Spatially verify this many first matches with local features, moving
                verified copies of the query to the top (default ``settings.verify_top``,
                20; 0 turns it off; :mod:`lookalike.verify`).
            regions: When nothing among those verifies surely (60+ inliers), search again
                with regional descriptors of the query and verify this many more
                candidates (default ``settings.regions``, 10; 0 turns it off): finds the
                original of a photo pasted into a larger picture.
            words: Also verify this many candidates found by the query's visual words
                (default ``settings.word_candidates``, 10; 0 turns it off;
                :mod:`lookalike.index.words`): finds originals of thumbnails, small crops
                and blurred copies that the global descriptor misses.
        """
        return self.search_many(
            [image], k, labels=labels, route=route, min_score=min_score,
            rerank=rerank, verify=verify, regions=regions, words=words,
        )[0]

    def search_many(
        self,
        images: Sequence[ImageLike],
        k: int = 10,
        *,
        labels: list[str] | None = None,
        route: str = "global",
        min_score: float | None = None,
        names: Sequence[str] | None = None,
        rerank: str | None = None,
        verify: int | None = None,
        regions: int | None = None,
        words: int | None = None,
    ) -> list[SearchResult]:
        """Like :meth:`search` for several queries, embedded in one batch."""
        decoded = [self._decode(image) for image in images]  # kept for verification
        embeddings = self.embedder.embed_images(decoded)
        names = list(names) if names is not None else [_describe(i) for i in images]
        options = SearchOptions(k, labels, route, min_score, rerank, verify, regions, words)
        return self._rank(
            names, embeddings.vectors, embeddings.label_ids, options, query_images=decoded
        )

    def search_by_id(
        self,
        image_id: int,
        k: int = 10,
        *,
        labels: list[str] | None = None,
        route: str = "global",
        min_score: float | None = None,
        rerank: str | None = None,
        verify: int | None = None,
        regions: int | None = None,
        words: int | None = None,
    ) -> SearchResult:
        """"More like this" for an indexed image, from its stored descriptor and labels,
        so nothing is embedded again (its file is read only for spatial verification)."""
        if not self.catalogue.locations_for([image_id])[image_id]:
            raise LookalikeError(f"no indexed image with id {image_id}")
        stored = self.catalogue.labels_for([image_id])[image_id]
        query_labels = np.asarray([[c for c, _ in stored]], dtype=np.int64)
        vectors = self.catalogue.vectors_for([image_id])
        options = SearchOptions(k, labels, route, min_score, rerank, verify, regions, words)
        return self._rank(
            [f"image:{image_id}"], vectors, query_labels, options, query_ids=[image_id]
        )[0]

    def _rank(
        self,
        names: Sequence[str],
        vectors: np.ndarray,
        query_label_ids: np.ndarray,
        options: SearchOptions,
        *,
        query_images: Sequence[Image.Image | None] | None = None,
        query_ids: Sequence[int] | None = None,
    ) -> list[SearchResult]:
        """Search the store for query vectors and turn the ranking into results."""
        if options.k < 1:
            raise LookalikeError("k must be at least 1")
        ranked, inliers = self._ranked_pairs(
            vectors, query_label_ids, options, query_images=query_images, query_ids=query_ids
        )
        k = options.k
        label_names = imagenet_labels()
        return [
            SearchResult(
                query=name,
                matches=expand_matches(self.catalogue, pairs, k, checked),
                query_labels=[label_names[c] for c in query_labels],
                route=taken,
            )
            for name, (pairs, taken), query_labels, checked in zip(
                names, ranked, query_label_ids, inliers, strict=False
            )
        ]

    def _ranked_pairs(
        self,
        vectors: np.ndarray,
        query_label_ids: np.ndarray,
        options: SearchOptions,
        *,
        query_images: Sequence[Image.Image | None] | None = None,
        query_ids: Sequence[int] | None = None,
        exclude_query: bool = False,
    ) -> tuple[list[tuple[list[tuple[int, float]], str]], list[dict[int, int]]]:
        """The ranking behind :meth:`_rank`: ``([(pairs, route)], [inliers per query])``.

        Cosine search, then re-ranking (``rerank``), then spatial verification of the first
        ``verify`` cosine matches against the query picture (``query_images``, or the file of
        the indexed image ``query_ids[i]``). ``exclude_query`` leaves the indexed query image
        out of its own ranking (evaluation: "each image against the rest").
        """
        from .rerank import RerankParams
        from .rerank import rerank as reorder_ids

        k = options.k
        method = self._rerank_method(options.rerank)
        top = self.settings.verify_top if options.verify is None else int(options.verify)
        if top < 0:
            raise LookalikeError("verify must be 0 (off) or a number of matches to check")
        regions = self.settings.regions if options.regions is None else int(options.regions)
        if regions < 0:
            raise LookalikeError("regions must be 0 (off) or a number of candidates to check")
        words = self.settings.word_candidates if options.words is None else int(options.words)
        if words < 0:
            raise LookalikeError("words must be 0 (off) or a number of candidates to check")
        store = self.store
        inner, transform = store.inner, store.transform  # inner searches the transformed space
        params = RerankParams(min_images=self.settings.diffusion_min_images)
        skip = 1 if exclude_query else 0
        depth = top + skip
        if method == "qe":
            depth = max(depth, params.qe_n + skip)
        elif method == "diffusion":
            depth = max(depth, params.depth + skip)
        inliers: list[dict[int, int]] = [{} for _ in range(len(np.atleast_2d(vectors)))]

        def reorder(number, vector, scores, ids, allowed):
            own = int(query_ids[number]) if exclude_query and query_ids is not None else None
            if own is not None:
                keep = ids != own
                scores, ids = scores[keep], ids[keep]
            query = transform.apply(vector[None, :])[0]
            order = ids
            if method != "none":
                order = reorder_ids(
                    method, query, scores, ids, k=k + skip, search=inner.search,
                    vectors_of=self._vectors_of, candidates=allowed, graph=self._knn_graph,
                    params=params, exclude=own,
                )
                if own is not None:
                    order = order[order != own]
            if top:
                image = self._query_image(number, query_images, query_ids)
                if image is not None:
                    skip_ids = {own} if own is not None else set()
                    more = partial(self._regional, image, regions, allowed, skip_ids) if regions else None
                    order, inliers[number] = self._verify(
                        image, order, ids[:top], more, words=words, allowed=allowed, exclude=skip_ids
                    )
            order = np.asarray(order[:k], dtype=np.int64)
            # Scores stay cosines to the query: from the first search, else computed.
            sorter = np.argsort(ids, kind="stable")
            pos = sorter[np.clip(np.searchsorted(ids, order, sorter=sorter), 0, max(len(ids) - 1, 0))]
            found = ids[pos] == order if len(ids) else np.zeros(len(order), bool)
            out = np.zeros(len(order), dtype=np.float32)
            out[found] = scores[pos[found]]
            if not found.all():
                out[~found] = self._vectors_of(order[~found]) @ query
            return list(zip(order.tolist(), out.tolist(), strict=True))

        plain = method == "none" and not top and not exclude_query
        ranked = search_vectors(
            self.catalogue, store, vectors, query_label_ids,
            k=k, labels=options.labels, route=options.route, min_score=options.min_score,
            depth=0 if plain else depth, reorder=None if plain else reorder,
        )
        return ranked, inliers

    # --- re-ranking and verification helpers ------------------------------------------
    def _rerank_method(self, requested: str | None = None) -> str:
        """The re-ranking a query gets: ``requested``, else ``Settings.rerank``, with
        ``auto`` resolved by the collection's size (:func:`lookalike.rerank.resolve_method`)."""
        from .rerank import resolve_method

        settings = self.settings
        return resolve_method(
            settings.rerank if requested is None else requested, len(self.store),
            settings.diffusion_min_images, settings.diffusion_max_images,
        )

    def _vectors_of(self, ids) -> np.ndarray:
        """Descriptors of indexed images in the store's space (transformed), in the order given."""
        from .index.vectors import FlatStore

        ids = np.asarray(ids, dtype=np.int64)
        inner = self.store.inner
        if isinstance(inner, FlatStore) and len(inner.ids):
            rows = np.clip(np.searchsorted(inner.ids, ids), 0, len(inner.ids) - 1)
            if np.array_equal(inner.ids[rows], ids):
                return inner.vectors[rows]
        found, vectors = CatalogueVectors(self.catalogue, self.store.transform.apply)(ids)
        position = {int(i): r for r, i in enumerate(found)}
        return vectors[[position[int(i)] for i in ids]]

    def _knn_graph(self, progress: ProgressCallback | None = None):
        """The neighbour graph for diffusion, current with the catalogue (built lazily)."""
        from .rerank import KnnGraph, RerankParams

        inner, fingerprint = self.store.inner, self.store.transform.fingerprint
        generation = self.catalogue.generation
        graph = self._graph
        if graph is not None and graph.fingerprint == fingerprint and self._graph_generation == generation:
            return graph
        saved = -1
        if graph is None or graph.fingerprint != fingerprint:
            graph, saved = KnnGraph.load(self.path, fingerprint)
        current = CatalogueVectors(self.catalogue).ids()
        changed = len(current) if graph is None else int(np.setxor1d(graph.ids, current).size)
        pool = RerankParams().graph_pool  # a graph saved with another pool size is rebuilt
        # Else the saved file is current (and, unless written before session 7, holds the
        # links): no rewrite.
        stale = saved != generation or graph is None or not graph.links_saved
        if graph is None or graph.k != pool or changed > len(current) // 2:
            graph = KnnGraph.build(
                current, self._vectors_of, inner.search, pool, fingerprint, progress=progress,
            )
            stale = True
        elif stale:
            graph.sync(current, self._vectors_of, inner.search, progress)
        if stale:
            try:
                graph.save(self.path, generation)
            except OSError:
                pass  # read-only index folder: kept in memory only
        self._graph, self._graph_generation = graph, generation
        return graph

    def _regional(self, image: Image.Image, count: int, allowed, exclude: set[int]):
        """``count`` candidates found by regional descriptors of ``image`` (``Settings.regions``),
        each paired with the box of the query window closest to it: ``[(image_id, box)]``."""
        params, store = RegionParams(), self.store
        size = params.size if store.inner.kind == "flat" else params.size_approximate
        vectors, boxes = self.embedder.region_vectors(image, size, params.levels)
        return regional_checks(  # transformed once, then searched in the store's own space
            store.transform.apply(vectors), boxes, store.inner.search, self._vectors_of, count,
            allowed=allowed, exclude=exclude, params=params,
        )

    def _load_indexed(self, image_id: int, size: int) -> Image.Image | None:
        """The picture of an indexed image from the first of its files that decodes."""
        for location in self.catalogue.locations_for([image_id]).get(image_id, []):
            if os.path.isfile(location):
                try:
                    return load_image(
                        location, max_pixels=self.settings.max_pixels,
                        max_bytes=self.settings.max_file_bytes, target_size=size,
                    )
                except ImageError:
                    continue
        return None

    def _query_image(self, number, query_images, query_ids) -> Image.Image | None:
        if query_images is not None and query_images[number] is not None:
            return query_images[number]
        if query_ids is not None:
            return self._load_indexed(int(query_ids[number]), self.query_size)
        return None

    def _verify(
        self, image: Image.Image, order, checked, more=None, *, words: int = 0,
        allowed=None, exclude: set[int] = frozenset(),
    ) -> tuple[list[int], dict[int, int]]:
        """Spatial verification of ``checked`` and of the ``words`` best candidates of the
        query's visual words (then of ``more()``'s ids if none verifies surely)."""
        from .verify import Features, Verifier, extract

        if self._verifier is None:  # its feature cache stays valid: image ids are never reused
            self._verifier = Verifier()
        size = self._verifier.params.size
        query = extract(image, self._verifier.params)
        checked = [int(i) for i in checked]
        if words and query.descriptors is not None and len(self.store) <= self.settings.word_index_max_images:
            seen = set(checked)
            found, _ = self._inverted_file().search(
                shipped_vocabulary().quantise(query.descriptors), words,
                allowed=allowed, exclude=tuple(exclude),
            )
            checked += [int(i) for i in found if int(i) not in seen]
        # Stored features and locations are read here, not in the verifying threads, which
        # must not share the catalogue's connection.
        stored: dict[int, Features] = {}
        where: dict[int, list[str]] = {}

        def prefetch(ids: list[int]) -> None:
            for image_id, (points, descriptors) in self.catalogue.local_features_for(ids).items():
                stored[image_id] = Features(points, descriptors)
            where.update(self.catalogue.locations_for([i for i in ids if i not in stored]))

        prefetch(checked)

        def located_more():
            extra = more()
            prefetch([int(i) for i, _ in extra])
            return extra

        def load(image_id: int) -> Features | Image.Image | None:
            if image_id in stored:
                return stored[image_id]
            for location in where.get(image_id, []):
                if os.path.isfile(location):
                    try:
                        return load_image(
                            location, max_pixels=self.settings.max_pixels,
                            max_bytes=self.settings.max_file_bytes, target_size=size,
                        )
                    except ImageError:
                        continue
            return None

        return self._verifier.reorder(
            image, order, checked, load, located_more if more else None, query=query
        )

    def _inverted_file(self) -> InvertedFile:
        """The visual-word index of the stored local features, current with the catalogue.

        The last built file (saved in the index folder) is loaded and followed by id: images
        added or removed since are merged in at query time (:meth:`InvertedFile.with_changes`).
        It is rebuilt from the catalogue (about 0.8 s for 10,000 images; images indexed before
        words were stored are quantised here) and saved when there is none yet or the changes
        exceed ``words.REBUILD_FRACTION`` of it.
        """
        generation = self.catalogue.generation
        if self._words is not None and self._words_generation == generation:
            return self._words
        vocabulary = shipped_vocabulary()
        if self._words_built is None:
            self._words_built = InvertedFile.load(self.path, vocabulary.fingerprint)
        built, saved = self._words_built
        found = None
        if built is not None and saved == generation:
            found = built
        elif built is not None:
            current = self.catalogue.local_feature_ids()
            added = np.setdiff1d(current, built.image_ids, assume_unique=True)
            removed = np.setdiff1d(built.image_ids, current, assume_unique=True)
            if len(added) + len(removed) <= REBUILD_FRACTION * len(built.image_ids):
                found = built.with_changes(*self._stored_words(added), removed)
        if found is None:
            found = InvertedFile.build(*self._stored_words(), vocabulary.size)
            self._words_built = (found, generation)
            try:
                found.save(self.path, generation, vocabulary.fingerprint)
            except OSError:
                pass  # read-only index folder: kept in memory only
        self._words, self._words_generation = found, generation
        return found

    def _stored_words(self, image_ids: np.ndarray | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
        """``(ids, words)`` of the images with local features (all, or of ``image_ids``)."""
        vocabulary = shipped_vocabulary()
        ids, words = [], []
        for image_id, stored, descriptors in self.catalogue.visual_words(image_ids):
            if stored is None:
                stored = vocabulary.quantise(np.frombuffer(descriptors, dtype=np.uint8))
            ids.append(image_id)
            words.append(stored)
        return np.asarray(ids, dtype=np.int64), words

    def info(self) -> dict:
        """Counts, model, vector store, the learned descriptor transform, the re-ranking
        default queries get (``auto`` resolved), format version, size on disk and the most
        common labels."""
        names = imagenet_labels()
        size = sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())
        return {
            "path": str(self.path),
            "images": self.catalogue.count_images(),
            "files": self.catalogue.count_files(),
            "failed_files": len(self.catalogue.failures()),
            "images_with_local_features": self.catalogue.count_local_features(),
            "store": self.store.inner.kind,
            "transform": self.store.transform.describe(),
            "rerank": self._rerank_method(),
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
