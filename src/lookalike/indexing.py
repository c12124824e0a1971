"""Incremental indexing: discover files, skip the unchanged, hash, decode, embed, commit.

The work is split so that each step is done at most once per file content:

1. *discover* (:mod:`lookalike.discovery`) walks the roots and stats files (no reads);
2. files whose size and mtime match the catalogue are skipped without being opened;
3. worker threads read and hash the rest; content already in the catalogue (a moved, renamed
   or copied file) only gets a new ``files`` row; new content is decoded at reduced size
   (JPEG DCT scaling), resized to the input square as uint8 and, by default, its local
   features are extracted and mapped to visual words (:mod:`lookalike.index.words`); a
   bounded window (three batches) keeps memory flat;
4. full batches are embedded on their own threads, one batch per core, each by a
   single-threaded ONNX Runtime session (:meth:`Embedder.for_parallel_batches`), while the
   next files decode; the model runs a few images per call (``RuntimeParams.
   inference_batch``), since its activations are what peak memory is made of;
5. batches are committed in order, each in one transaction, so an interrupted run keeps all
   finished batches (Ctrl-C also waits for the ones being embedded) and the next run resumes
   from there.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from .discovery import is_under
from .embed.embedder import Embedder, Embeddings
from .errors import ImageError
from .images import FULL_SIZE, load_image
from .index.catalogue import Catalogue
from .index.formats import FileStat, NewImage
from .index.lock import deferring_interrupts
from .index.vectors import VectorStore
from .index.words import shipped_vocabulary
from .query.results import path_fields
from .settings import Settings
from .verify import extract

ProgressCallback = Callable[[int, int], None]


@dataclass
class IndexReport:
    """What one indexing run did. ``failed`` lists ``(location, reason)`` for this run."""

    discovered: int = 0
    unchanged: int = 0
    embedded: int = 0
    reused: int = 0
    removed: int = 0
    skipped_known_bad: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    urls: dict[str, int] = field(default_factory=dict)  # URL outcomes (lookalike.sources)

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        fields = {
            **asdict(self), "failed": [{**path_fields(p), "reason": r} for p, r in self.failed],
            "seconds": round(self.seconds, 3),
        }
        if not self.urls:
            del fields["urls"]
        return fields


def hash_bytes(data: bytes) -> str:
    """Content hash used to recognise the same image under another name (BLAKE2b-128)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


@deferring_interrupts
def forget(catalogue: Catalogue, store: VectorStore, locations: list[str]) -> list[int]:
    """Forget file locations, and the images left without any file (in the catalogue, then
    in the store); returns those images' ids."""
    with catalogue.transaction() as db:
        orphans = Catalogue.delete_locations(db, locations)
    store.remove(np.asarray(orphans, dtype=np.int64))
    return orphans


@dataclass
class Prepared:
    """One file after reading, hashing and (for new content) decoding: what committing needs."""

    stat: FileStat
    hash: str = ""
    width: int = 0
    height: int = 0
    pixels: np.ndarray | None = None  # uint8 (S, S, 3), the resized picture
    features: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # points, descriptors, words
    error: str | None = None


class Indexer:
    """Brings a catalogue and a vector store up to date with a set of files."""

    def __init__(self, catalogue: Catalogue, embedder: Embedder, store: VectorStore,
                 settings: Settings, progress: ProgressCallback | None = None,
                 read: Callable[[FileStat], bytes] | None = None):
        """``read`` gives a location's bytes (default: the file's; :mod:`lookalike.sources`
        hands over downloaded ones)."""
        self.read = read or _read_file
        self.catalogue = catalogue
        self.embedder = embedder
        self.store = store
        self.settings = settings
        self.progress = progress or (lambda done, total: None)
        self._vocabulary = shipped_vocabulary() if settings.local_features else None
        self._verify_params = settings.verify
        # Decode big JPEGs at a reduced scale, but large enough for the local features
        # (their longer side is VerifyParams.size: at 4:3 that is 3/4 of it on the short side).
        self._decode_size = embedder.input_size
        if settings.local_features:
            self._decode_size = max(self._decode_size, self._verify_params.size * 3 // 4)

    def run(
        self, stats: list[FileStat], *, prune_under: Iterable[str] = (), unseen: Iterable[str] = ()
    ) -> IndexReport:
        """Index ``stats``; forget catalogued files under ``prune_under`` that are gone, but
        not those under ``unseen`` (paths discovery could not walk: they may still exist)."""
        started = time.perf_counter()
        report = IndexReport(discovered=len(stats))
        known = self.catalogue.files_by_location()
        failures = self.catalogue.failures()
        todo: list[FileStat] = []
        for stat in stats:
            record = known.get(stat.location)
            if record and (record.size, record.mtime_ns) == (stat.size, stat.mtime_ns):
                report.unchanged += 1
            elif failures.get(stat.location, (None, None))[:2] == (stat.size, stat.mtime_ns):
                report.skipped_known_bad += 1
            else:
                todo.append(stat)

        try:
            self._process(todo, report)
        except KeyboardInterrupt:
            report.interrupted = True
        finally:
            return_free_memory()  # the embedding session's, before the end-of-run stages
        # Prune last: a file moved within the roots must first be attached to its image
        # under the new name, or removing the old name would orphan (and drop) the image.
        if not report.interrupted:
            self._prune(known, failures, stats, prune_under, list(unseen), report)
        report.seconds = time.perf_counter() - started
        return report

    # --- internals -------------------------------------------------------------------
    def _prune(self, known, failures, stats, prune_under, unseen, report) -> None:
        """Forget catalogued files under ``prune_under`` that were not discovered."""
        prune_roots = [os.path.abspath(r) for r in prune_under]
        if not prune_roots:
            return
        present = {s.location for s in stats}
        gone = [loc for loc in [*known, *failures] if loc not in present
                and is_under(loc, prune_roots) and not is_under(loc, unseen)]
        if gone:
            forget(self.catalogue, self.store, gone)
            report.removed = len(set(gone) & set(known))

    def prepare(self, stat: FileStat, known_hashes: set[str]) -> Prepared:
        item = Prepared(stat)
        try:
            if stat.size > self.settings.max_file_bytes:
                raise ImageError(f"file is larger than {self.settings.max_file_bytes} bytes")
            data = self.read(stat)
            item.hash = hash_bytes(data)
            if item.hash in known_hashes:
                return item
            image = load_image(
                data,
                name=stat.location,
                max_pixels=self.settings.max_pixels,
                max_bytes=self.settings.max_file_bytes,
                target_size=self._decode_size,
            )
            item.width, item.height = image.info.get(FULL_SIZE, image.size)  # not the reduced decode
            item.pixels = self.embedder.pixels(image)
            if self.settings.local_features:
                features = extract(image, self._verify_params)
                descriptors = features.descriptor_array()
                item.features = (features.points, descriptors, self._vocabulary.quantise(descriptors))
        except (ImageError, OSError, ValueError) as exc:
            item.error = _one_line(exc)
        return item

    def _process(self, todo: list[FileStat], report: IndexReport) -> None:
        if not todo:
            return
        known_hashes = self.catalogue.known_hashes()
        self._known_hashes = known_hashes
        # The indexing session (and its memory) lives only as long as this run's embedding:
        # the end-of-run stages (the transform, the neighbour graph) do not share its peak.
        embedder = self.embedder.for_parallel_batches()
        workers = self.settings.decode_workers or self.settings.cpu_count()
        streams = self.settings.threads or self.settings.cpu_count()
        window = self.settings.batch_size * 3
        pending: deque[Future[Prepared]] = deque()
        # Batches being embedded (one per core), committed strictly in submission order.
        inflight: deque[tuple[list[Prepared], list[Prepared], Future]] = deque()
        batch: list[Prepared] = []
        reused: list[Prepared] = []
        done = 0
        self.progress(0, len(todo))
        with (
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool,
            ThreadPoolExecutor(max_workers=streams, thread_name_prefix="embed") as embed_pool,
        ):
            def submit() -> None:
                """Hand the filled batch to the embedding threads; commit what is due."""
                embedded = embed_pool.submit(self._embed, embedder, batch.copy()) if batch else None
                inflight.append((batch.copy(), reused.copy(), embedded))
                batch.clear()
                reused.clear()
                while len(inflight) > streams:
                    self._commit(*inflight.popleft(), report)

            def take_one() -> None:
                """Take the oldest decoded file into the batch; hand the batch on when full."""
                nonlocal done
                done = self._drain_one(pending, batch, reused, report, done, len(todo))
                if len(batch) >= self.settings.batch_size:
                    submit()

            try:
                for stat in todo:
                    pending.append(pool.submit(self.prepare, stat, known_hashes))
                    while len(pending) >= window or (pending and pending[0].done()):
                        take_one()
                while pending:
                    take_one()
                submit()
                while inflight:
                    self._commit(*inflight.popleft(), report)
            except KeyboardInterrupt:
                # Keep what was already decoded for embedding: the batches in flight take
                # well under a second, and the next run resumes after them.
                for future in pending:
                    future.cancel()
                while inflight:
                    self._commit(*inflight.popleft(), report)
                raise
            except BaseException:
                for future in pending:
                    future.cancel()
                for _, _, embedded in inflight:
                    if embedded is not None:
                        embedded.cancel()
                raise

    @deferring_interrupts  # a failure is recorded in a transaction
    def _drain_one(self, pending, batch, reused, report, done, total) -> int:
        item = pending.popleft().result()
        if item.error is not None:
            report.failed.append((item.stat.location, item.error))
            with self.catalogue.transaction() as db:
                Catalogue.record_failure(db, item.stat, item.error)
        elif item.pixels is None:
            reused.append(item)
        else:
            batch.append(item)
        done += 1
        self.progress(done, total)
        return done

    @deferring_interrupts  # the catalogue and the store in memory change together
    def _commit(self, batch, reused, embedded: Future | None, report) -> None:
        """Write ``batch`` (its embeddings: ``embedded``) and the ``reused`` files in one
        transaction."""
        if not batch and not reused:
            return
        new_ids: list[int] = []
        new_vectors: list[np.ndarray] = []
        orphans: list[int | None] = []
        embeddings = embedded.result() if embedded is not None else None
        with self.catalogue.transaction() as db:
            by_hash: dict[str, int] = {}
            for i, item in enumerate(batch):
                if item.hash in by_hash:  # identical new files within one batch
                    orphans.append(Catalogue.upsert_file(db, item.stat, by_hash[item.hash]))
                    report.reused += 1
                    continue
                existing = Catalogue.image_id_for_hash(db, item.hash)
                if existing is not None:
                    image_id = existing
                    report.reused += 1
                else:
                    image_id = Catalogue.insert_image(
                        db,
                        NewImage(
                            item.hash,
                            item.width,
                            item.height,
                            embeddings.vectors[i],
                            embeddings.label_ids[i],
                            embeddings.label_probs[i],
                        ),
                    )
                    if item.features is not None:
                        Catalogue.insert_local_features(db, image_id, *item.features)
                    new_ids.append(image_id)
                    new_vectors.append(embeddings.vectors[i])
                    report.embedded += 1
                by_hash[item.hash] = image_id
                self._known_hashes.add(item.hash)
                orphans.append(Catalogue.upsert_file(db, item.stat, image_id))
            for item in reused:
                image_id = Catalogue.image_id_for_hash(db, item.hash)
                if image_id is None:  # its twin was removed meanwhile: treat as unchanged-failed
                    continue
                orphans.append(Catalogue.upsert_file(db, item.stat, image_id))
                report.reused += 1
        dropped = [i for i in orphans if i is not None]
        if dropped:
            self.store.remove(np.asarray(dropped, dtype=np.int64))
        if new_ids:
            self.store.add(np.asarray(new_ids, dtype=np.int64), np.stack(new_vectors))

    def _embed(self, embedder: Embedder, batch: list[Prepared]) -> Embeddings:
        """Embed one batch's pictures (on an embedding thread); see :func:`embed_pictures`."""
        pixels = [item.pixels for item in batch]
        for item in batch:
            item.pixels = None  # free them while the batch waits to be written
        return embed_pictures(embedder, pixels, self.settings.runtime.inference_batch)


def embed_pictures(embedder: Embedder, pixels: list[np.ndarray], per_call: int) -> Embeddings:
    """Descriptors and labels of uint8 ``(S, S, 3)`` pictures, ``per_call`` at a time.

    The model's activations for one call are the largest allocation of indexing, and they
    grow with the images in the call; small calls keep the peak low at the same speed.
    """
    side = embedder.input_size
    tensors = np.empty((min(per_call, len(pixels)), 3, side, side), dtype=np.float32)
    parts = []
    for start in range(0, len(pixels), per_call):
        chunk = pixels[start : start + per_call]
        out = tensors[: len(chunk)]
        for slot, picture in enumerate(chunk):
            embedder.tensors(picture[None], out=out[slot : slot + 1])
        parts.append(embedder.embed_tensors(out))
    return Embeddings(*(np.concatenate(arrays) for arrays in zip(
        *((p.vectors, p.label_ids, p.label_probs) for p in parts), strict=True)))


def return_free_memory() -> None:
    """Hand memory freed by the model runtime back to the system (glibc keeps freed heap
    pages for reuse, so the process would carry the embedding peak into the stages that
    follow); a no-op where the C library has no ``malloc_trim``."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    if trim is not None:
        trim(0)


def _read_file(stat: FileStat) -> bytes:
    with open(stat.location, "rb") as f:
        return f.read()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
