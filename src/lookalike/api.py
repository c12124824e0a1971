"""The public Python API: :class:`Index`.

>>> import lookalike
>>> with lookalike.Index.open("photos.lookalike") as index:
...     index.add(["~/Pictures"])
...     result = index.search("query.jpg", k=10)
...     for match in result.matches:
...         print(match.rank, match.score, match.path)

``Index`` is a small facade: the folder and its derived files are
:class:`~lookalike.index.folder.IndexFolder`'s, indexing is :mod:`lookalike.indexing`'s, the
ranking is the query cascade's (:mod:`lookalike.query`). The CLI, the web server, evaluation
and the benchmarks are thin layers over this class.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from .discovery import discover, is_under
from .distributed import indexer_type
from .embed.embedder import Embeddings
from .embed.tags import parse_text
from .errors import LookalikeError
from .images import is_url, load_image
from .index.folder import IndexFolder
from .index.graph import KnnGraph
from .index.lock import writer_lock
from .index.remote import open_folder
from .index.transform import TransformedStore
from .index.words import InvertedFile
from .indexing import IndexReport, ProgressCallback, forget
from .paths import check_paths, describe_query
from .query.candidates import candidate_ids, label_classes
from .query.cascade import Cascade, Ranked, rank_queries
from .query.options import SearchOptions
from .query.rerank import Auto
from .query.results import SearchResult, search_results
from .query.spec import parse, with_shorthands
from .query.text import SUGGESTIONS, rank_text, suggest
from .settings import DEFAULT_DUPE_LEVEL, Settings
from .summary import index_info

if TYPE_CHECKING:  # (imported where used: a search does not load duplicates, checks or URLs)
    from .dupes import Group
    from .index.check import CheckReport
    from .verify import Features

ImageLike = str | os.PathLike | bytes | Image.Image


class Index:
    """One image collection: a folder holding a catalogue (SQLite) and derived files."""

    def __init__(self, folder: IndexFolder):
        self.folder = folder
        # The catalogue generation this object last saw: its store is current up to it.
        self._generation = folder.catalogue.generation

    # --- opening ---------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        model: str | None = None, settings: Settings | None = None,
        create: bool = True, store: str | None = None,
    ) -> Index:
        """Open the index folder at ``path``, creating it if needed (``create=True``).
        ``model`` picks a *new* index's model; an existing one must have been built with it.
        ``store``: keep the vectors in ``milvus://HOST:PORT/COLLECTION`` (docs/scale.md)."""
        return cls(open_folder(path, settings or Settings(), model=model, create=create,
                               store=store))

    def close(self) -> None:
        self.folder.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        """Number of distinct images (identical files count once)."""
        return self.catalogue.count_images()

    def __repr__(self) -> str:
        return f"<lookalike.Index {str(self.path)!r}: {len(self)} images, {self.settings.model}>"

    @property
    def path(self):  # noqa: ANN201 - a pathlib.Path
        return self.folder.path

    @property
    def catalogue(self):  # noqa: ANN201 - lookalike.index.catalogue.Catalogue
        return self.folder.catalogue

    @property
    def settings(self) -> Settings:
        return self.folder.settings

    @property
    def embedder(self):  # noqa: ANN201 - lookalike.embed.embedder.Embedder
        return self.folder.embedder

    @property
    def store(self) -> TransformedStore:
        """The vector store (descriptors centred and whitened), current with the catalogue."""
        return self.folder.store

    # --- writing ---------------------------------------------------------------------
    def add(
        self,
        paths: Iterable[str | os.PathLike] = (),
        *,
        urls: Iterable[str] = (),
        exclude: Sequence[str] = (),
        prune: bool = False,
        progress: ProgressCallback | None = None,
        wait: bool = True,
        on_wait: Callable[[], None] | None = None, ray: str | None = None,
    ) -> IndexReport:
        """Index image files and folders (recursively); only new or changed files are embedded.

        With ``prune=True`` catalogued files under the given folders that no longer exist are
        forgotten, which makes a re-run mirror the folders. Interrupting (Ctrl-C) keeps every
        finished batch; ``report.interrupted`` is then True and a re-run resumes.
        ``progress(done, total)`` is called as files are done; when it also has a
        ``stage(label, unit)`` method (:class:`lookalike.progress.Progress`), it then follows
        the neighbour graph being brought up to date (images linked). ``exclude`` globs skip
        files and folders (:mod:`lookalike.discovery`). ``urls`` are http(s) images indexed by
        reference (:mod:`lookalike.sources`: ``Settings.urls``; with ``prune`` a URL gone
        from its server is forgotten); their outcomes are in ``report.urls``.

        One process writes to an index at a time (:mod:`lookalike.index.lock`): while another
        one indexes or removes, this call waits for it (``on_wait()`` is called once first),
        or with ``wait=False`` raises :class:`~lookalike.errors.IndexBusyError`. The paths are
        checked before anything is written or waited for; ``ray`` embeds on Ray (docs/scale.md).
        """
        from .sources import UrlSource, merged, read_url_list

        roots, urls = check_paths(paths), read_url_list(urls)
        with writer_lock(self.path, wait=wait, on_wait=on_wait):
            failed: list[tuple[str, str]] = []
            stats = list(discover(roots, exclude=[self.path], globs=exclude, failed=failed))
            folders = [r for r in roots if os.path.isdir(r)] if prune else []
            self._fresh_store(len(self) + len(stats) + len(urls))  # a big first run: approximate
            indexer = indexer_type(ray)(self.catalogue, self.embedder, self.store, self.settings, progress)
            try:
                unseen = [p for p, _ in failed if os.path.isdir(p)]  # unreadable: not pruned
                report = indexer.run(stats, prune_under=folders, unseen=unseen)
                if urls and not report.interrupted:
                    report = merged(report, UrlSource(indexer, self.settings.urls).run(
                        urls, prune=prune, progress=progress))
            finally:
                del indexer  # it holds the store, which a re-learned transform rebuilds
                self.folder.after_writes()
            report.failed[:0] = failed
            if not report.interrupted:
                try:
                    self._prepare_ranking(progress)
                except KeyboardInterrupt:
                    report.interrupted = True  # the next add or diffusion query finishes it
            self._generation = self.catalogue.generation
        return report

    def remove(
        self,
        paths: Iterable[str | os.PathLike],
        *,
        wait: bool = True,
        on_wait: Callable[[], None] | None = None,
    ) -> int:
        """Forget files (or everything under folders); returns how many files were removed.
        Waits for another writer like :meth:`add` (``wait``, ``on_wait``)."""
        roots = [p if is_url(p) else os.path.abspath(os.path.expanduser(p)) for p in map(str, paths)]
        with writer_lock(self.path, wait=wait, on_wait=on_wait):
            gone = [loc for loc in self.catalogue.files_by_location() if is_under(loc, roots)]
            if gone:
                self._fresh_store()
                forget(self.catalogue, self.store, gone)
                self.folder.after_writes()
                self._prepare_ranking()
            self._generation = self.catalogue.generation
        return len(gone)

    def _fresh_store(self, expected: int = 0) -> None:
        """Make sure the store writes go to holds what the catalogue holds now: when another
        process wrote since this ``Index`` last saw the catalogue (a search that then adds,
        a long-lived ``Index``), the store in memory is reloaded, or its writes would be
        saved over the other process' images."""
        if self.catalogue.generation != self._generation:
            self.folder.open_store(expected)
        else:
            self.folder.reserve(expected)

    def _prepare_ranking(self, progress: ProgressCallback | None = None) -> None:
        """Bring the neighbour graph up to date now when default queries diffuse, so the
        first query after indexing does not pay for it. A ``progress`` with a
        ``stage(label, unit)`` method is told the new stage and then gets ``(linked, to
        link)``; a plain callable is not called, since its counts are files."""
        if self.rerank_method() != "diffusion":
            return
        stage = getattr(progress, "stage", None)
        if stage is not None:
            stage("linking neighbours", "images")
        self.graph(progress if stage is not None else None)

    # --- reading ---------------------------------------------------------------------
    def embed(self, images: Sequence[ImageLike]) -> Embeddings:
        """Descriptors and labels for query images (paths, bytes or PIL images)."""
        return self.embedder.embed_images([self._decode(image) for image in images])

    @property
    def query_size(self) -> int:
        """Pixels a query picture needs on its short side (when the file has them): enough
        for the model and for the regional pass. JPEGs are decoded at a reduced scale."""
        return max(self.embedder.input_size, self.settings.regions.size)

    def _decode(self, image: ImageLike) -> Image.Image:
        if isinstance(image, Image.Image):
            return image.convert("RGB")
        return load_image(
            image, max_pixels=self.settings.max_pixels,
            max_bytes=self.settings.max_file_bytes, target_size=self.query_size,
        )

    def search(
        self, image: ImageLike, k: int | None = None, *,
        options: SearchOptions | None = None, **changes: Any,
    ) -> SearchResult:
        """The ``k`` most similar indexed images to ``image`` (a path, bytes or PIL image).

        Options are :class:`~lookalike.query.options.SearchOptions` fields, given as an
        object, as keywords (``label="tabby"``, ``verify=0``, ``pipeline="cosine,qe"``), or
        both (keywords win); defaults come from the index's settings.
        """
        return self.search_many([image], k, options=options, **changes)[0]

    def search_many(
        self, images: Sequence[ImageLike], k: int | None = None, *,
        names: Sequence[str] | None = None, options: SearchOptions | None = None,
        **changes: Any,
    ) -> list[SearchResult]:
        """Like :meth:`search` for several queries, embedded in one batch."""
        options = SearchOptions.from_any(options, k=k, **changes)
        pipeline = self.pipeline(options)
        with ThreadPoolExecutor(1) as worker:  # decoding, then embedding, on a worker thread:
            decoding = worker.submit(lambda: [self._decode(image) for image in images])
            embedding = worker.submit(lambda: self.embedder.embed_images(decoding.result()))
            pipeline.prepare(self.folder)  # meanwhile the pipeline loads its files, then
            decoded = decoding.result()    # extracts the queries' local features
            features = pipeline.query_features(decoded, self.settings.verify)
            embeddings = embedding.result()
        names = list(names) if names is not None else [describe_query(i) for i in images]
        pictures = [(lambda picture=picture: picture) for picture in decoded]
        ranked = self.rank(embeddings.vectors, options, label_ids=embeddings.label_ids,
                           pictures=pictures, features=features)
        return search_results(self.catalogue, names, ranked, embeddings.label_ids, options.k,
                              label_classes(options.label))

    def search_by_id(
        self, image_id: int, k: int | None = None, *,
        options: SearchOptions | None = None, **changes: Any,
    ) -> SearchResult:
        """"More like this" for an indexed image, from its stored descriptor and labels, so
        nothing is embedded again (its file is read only for spatial verification)."""
        options = SearchOptions.from_any(options, k=k, **changes)
        if not self.catalogue.locations_for([image_id])[image_id]:
            raise LookalikeError(f"no indexed image with id {image_id}")
        stored = self.catalogue.labels_for([image_id])[image_id]
        label_ids = np.asarray([[c for c, _ in stored]], dtype=np.int64)
        ranked = self.rank(self.catalogue.vectors_for([image_id]), options, label_ids=label_ids,
                           query_ids=[image_id])
        return search_results(self.catalogue, [f"image:{image_id}"], ranked, label_ids, options.k,
                              label_classes(options.label))[0]

    def search_text(
        self, text: str, k: int | None = None, *,
        options: SearchOptions | None = None, **changes: Any,
    ) -> SearchResult:
        """Tag search (not CLIP): the images whose stored ImageNet labels best match the
        words of ``text`` ("dog on a sofa"), by label probability (:mod:`lookalike.query.text`).
        Of the options only ``k`` and ``label`` apply; ``route`` is ``"text"``."""
        options = SearchOptions.from_any(options, k=k, **changes)
        tags = parse_text(text)
        allowed, _ = candidate_ids(self.catalogue, label=options.label)
        ranked = rank_text(self.catalogue, tags, allowed)
        classes = frozenset().union(*(t.classes for t in tags))
        no_labels = np.zeros((1, 0), dtype=np.int64)
        result = search_results(self.catalogue, [text], [ranked], no_labels, options.k, classes)[0]
        result.query_labels = [t.shown for t in tags]
        return result

    def tags(self, prefix: str = "", limit: int = SUGGESTIONS) -> list[dict]:
        """Words tag search and the label filter know, starting with ``prefix``, those
        naming the most images here first: ``{"word", "classes", "images"}``."""
        return suggest(self.catalogue, prefix, limit)

    def rank(
        self,
        vectors: np.ndarray,
        options: SearchOptions | None = None,
        *,
        label_ids: np.ndarray | None = None,
        pictures: Sequence[Callable[[], Image.Image | None]] | None = None,
        query_ids: Sequence[int] | None = None,
        exclude_query: bool = False,
        features: Sequence[Features | None] | None = None,
    ) -> list[Ranked]:
        """The ranking behind every search, on raw query descriptors: ids, cosine scores and
        the inlier counts of the candidates verified, per query.

        ``label_ids`` are the queries' predicted labels (for ``route="categories"``);
        ``pictures[i]()`` gives query ``i``'s picture for spatial verification, else the file
        of the indexed image ``query_ids[i]`` is read; ``exclude_query`` leaves that image
        out of its own ranking (evaluation: "each image against the rest"); ``features[i]``
        are query ``i``'s local features when they were extracted already.
        """
        options = options or SearchOptions()
        vectors = np.atleast_2d(vectors)
        if label_ids is None:
            label_ids = np.zeros((len(vectors), 0), dtype=np.int64)
        if pictures is None and query_ids is not None:
            load = self.folder.picture_loader([int(i) for i in query_ids], self.query_size)
            pictures = [(lambda i=int(i): load(i)) for i in query_ids]
        return rank_queries(
            self.pipeline(options), self.folder, self.catalogue, vectors, label_ids, options,
            pictures=pictures, exclude=query_ids if exclude_query else None, features=features,
        )

    def pipeline(self, options: SearchOptions | None = None) -> Cascade:
        """The query pipeline ``options`` ask for: ``options.pipeline`` (default
        ``Settings.pipeline``) edited by the shorthands ``rerank``/``verify``/``words``/
        ``regions``."""
        options = options or SearchOptions()
        spec = with_shorthands(
            options.pipeline or self.settings.pipeline, rerank=options.rerank,
            verify=options.verify, words=options.words, regions=options.regions,
        )
        return parse(spec)

    def rerank_method(self, options: SearchOptions | None = None) -> str:
        """The re-ranking a query gets (``auto`` resolved): diffusion, qe or none."""
        stage = next((s for s in self.pipeline(options).stages if s.kind == "rerank"), None)
        if stage is None:
            return "none"
        if isinstance(stage, Auto):
            stage = stage.resolve(self.folder)
        return stage.spec.partition(":")[0]

    def graph(self, progress: Callable[[int, int], None] | None = None) -> KnnGraph:
        """The neighbour graph that diffusion uses, current with the catalogue."""
        return self.folder.graph(progress)

    def word_index(self) -> InvertedFile:
        """The visual-word index of the stored local features, current with the catalogue."""
        return self.folder.word_index()

    def duplicates(self, level: str = DEFAULT_DUPE_LEVEL, *, min_group: int | None = None,
                   progress: Callable[[int, int], None] | None = None, save: bool = True) -> list[Group]:
        """Groups of duplicate files, ``exact``, ``copies`` or ``similar`` (:mod:`lookalike.dupes`);
        only images added since the last saved check have their neighbourhoods checked
        (and stored, unless ``save`` is False)."""
        from .dupes import find_duplicates

        return find_duplicates(self.folder, level, min_group, progress, save)

    def not_duplicate(self, image_ids: Sequence[int]) -> int:
        """Mark every pair among ``image_ids`` "not a duplicate" (kept by content, so it
        survives re-indexing); returns the number of pairs newly marked."""
        return self.catalogue.mark_not_duplicates(image_ids)

    def check(self, repair: bool = False) -> CheckReport:
        """``lookalike check``: the catalogue's integrity and every derived file against it,
        one line per problem. ``repair`` rebuilds the derived files and recovers a damaged
        catalogue (this index is closed meanwhile, then opened again)."""
        from .index.check import check_index

        if not repair:
            return check_index(self.path, self.settings)
        with writer_lock(self.path):  # no indexing run may write meanwhile
            self.folder.close()
            try:
                return check_index(self.path, self.settings, repair=True)
            finally:
                self.folder = IndexFolder.open(self.path, self.settings, create=False)

    def info(self) -> dict:
        """What ``lookalike info`` shows (:func:`lookalike.summary.index_info`)."""
        return index_info(self.folder, self.rerank_method())
