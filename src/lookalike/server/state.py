"""What the app shares between requests: :class:`ServerState` (the index and its lock),
the background :class:`IndexJob` and the thumbnail :class:`LRUCache`.

SQLite connections and vector stores are not safe to use from several threads at once, so
every use of the index is serialised by one lock; decoding an upload or fetching a URL happens
*outside* it.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO, Literal

from fastapi import HTTPException
from PIL import Image

from ..api import Index
from ..index.catalogue import Catalogue
from ..query.options import SearchOptions
from ..query.results import SearchResult
from .config import ServerConfig
from .search_options import search_index

VERIFIED_FILES = 8192  # files whose content was checked, remembered by inode, size and mtime


class LRUCache:
    """A small thread-safe LRU: encoded thumbnails (bytes), so a grid re-render is free, and
    the files whose content was checked."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
            return self._items.get(key)

    def put(self, key: Any, value: Any) -> Any:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return value


@dataclass
class IndexJob:
    """One background indexing run; its progress is polled by ``GET /api/index``."""

    paths: list[str]
    prune: bool
    missing: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)  # paths a watched folder lost: forgotten
    state: Literal["running", "done", "failed"] = "running"
    done: int = 0
    total: int = 0
    report: dict | None = None
    error: str | None = None
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None

    def progress(self, done: int, total: int) -> None:
        self.done, self.total = done, total

    def finish(self, report: dict | None = None, error: str | None = None) -> None:
        self.report, self.error = report, error
        self.state = "failed" if error else "done"
        self.finished_at = time.time()

    def as_dict(self) -> dict:
        return {
            "state": self.state,
            "paths": self.paths,
            "prune": self.prune,
            "missing": self.missing,
            "urls": len(self.urls),
            "done": self.done,
            "total": self.total,
            "report": self.report,
            "error": self.error,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


def content_hash(file: BinaryIO) -> str:
    """:func:`lookalike.indexing.hash_bytes` of a file's content, read in chunks."""
    digest = hashlib.blake2b(digest_size=16)
    while chunk := file.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def known_locations(index: Index, image_id: int) -> list[str]:
    """The files of an indexed image, or 404. Call with the index lock held."""
    locations = index.catalogue.locations_for([image_id])[image_id]
    if not locations:
        raise HTTPException(404, f"no indexed image with id {image_id}")
    return locations


class ServerState:
    """The shared index, the lock that serialises its use, and the thumbnail cache."""

    def __init__(self, index: Index, config: ServerConfig):
        self.index = index
        self.config = config
        self.lock = threading.Lock()
        self.thumbnails = LRUCache(config.thumbnail_cache)
        self._verified = LRUCache(VERIFIED_FILES)  # (location, stat) -> image id it holds
        self.job: IndexJob | None = None
        self._job_lock = threading.Lock()
        self._watcher: Any = None  # lookalike.watching.FolderWatcher of serve --watch

    @contextmanager
    def reading(self) -> Iterator[Index]:
        """The index, held exclusively for the duration of the block."""
        with self.lock:
            yield self.index

    def close(self) -> None:
        """Stop watching; close the index in use (after an indexing run, not the one the app
        started with)."""
        if self._watcher is not None:
            self._watcher.close()
        with self.lock:
            self.index.close()

    def watch(self, folders: list[str]) -> None:
        """Index ``folders`` now (a background run), then apply what changes in them as
        indexing runs, one at a time, on a watcher thread (``serve --watch``)."""
        from ..watching import FolderWatcher

        self._watcher = FolderWatcher(folders, self._run_watched, self.index.settings.watch,
                                      exclude=[str(self.index.path)])
        self._watcher.start()
        self.start_job(folders, True, [])
        threading.Thread(target=self._watcher.run, name="lookalike-watch", daemon=True).start()

    def _run_watched(self, batch: Any) -> None:
        """A watcher's batch (:class:`lookalike.watching.Batch`) as the next indexing run,
        after the one in progress."""
        job = IndexJob([*batch.rescan, *batch.files], True, gone=batch.gone)
        while True:
            with self._job_lock:
                if self.job is None or self.job.state != "running":
                    self.job = job
                    break
            time.sleep(0.2)
        self._run_job(job)

    def search(self, query: Image.Image | int, options: SearchOptions) -> SearchResult:
        """Search for an image, or for more like the indexed image with this id (404 if none:
        an unknown id is a missing resource, not a bad request)."""
        with self.reading() as index:
            if isinstance(query, int):
                known_locations(index, query)
            return search_index(index, query, options)

    def open_indexed(self, image_id: int) -> tuple[str, BinaryIO]:
        """A file of an indexed image, opened, whose content is still the image that was
        indexed; 404 otherwise. Ids are the only way to name files, and a file is served
        from the very descriptor that was checked, so a symlink in the collection that now
        points elsewhere, or a file rewritten since, is never served."""
        with self.reading() as index:
            locations = known_locations(index, image_id)
        changed = False
        for location in locations:
            try:  # non-blocking: a pipe where the file was must not hang the server
                fd = os.open(location, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                continue
            file = os.fdopen(fd, "rb")
            try:
                if self._is_indexed(file, location, image_id):
                    return location, file
            except BaseException:
                file.close()
                raise
            file.close()
            changed = True
        if changed:
            raise HTTPException(404, "the file changed since it was indexed; re-index")
        raise HTTPException(404, f"the file of image {image_id} is no longer on disk")

    def _is_indexed(self, file: BinaryIO, location: str, image_id: int) -> bool:
        """Whether ``file`` holds the content indexed as ``image_id`` (left at its start). A
        file checked before is not read again while its inode, size and mtime are the same."""
        st = os.fstat(file.fileno())
        if not stat.S_ISREG(st.st_mode):
            return False
        key = (location, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if self._verified.get(key) == image_id:
            return True
        digest = content_hash(file)
        file.seek(0)
        with self.reading() as index:
            same = Catalogue.image_id_for_hash(index.catalogue.db, digest) == image_id
        if same:
            self._verified.put(key, image_id)
        return same

    def start_job(self, paths: list[str], prune: bool, missing: list[str], *,
                  urls: Sequence[str] = (), exclude: Sequence[str] = ()) -> IndexJob:
        """Index ``paths`` and ``urls`` in a background thread; 409 while another run is in
        progress."""
        with self._job_lock:
            if self.job is not None and self.job.state == "running":
                raise HTTPException(409, "an indexing run is already in progress")
            self.job = IndexJob(paths, prune, missing, list(urls), list(exclude))
        threading.Thread(
            target=self._run_job, args=(self.job,), name="lookalike-index", daemon=True
        ).start()
        return self.job

    def _run_job(self, job: IndexJob) -> None:
        """Index with a second :class:`Index` (SQLite WAL lets searches go on meanwhile), then
        swap it in, so searches never see a half-updated vector store. A failed run is swapped
        in too: the batches it finished are committed and should be searchable."""
        settings = self.index.settings
        settings = settings.with_(urls=replace(settings.urls, allow_private=self.config.allow_private_urls))
        try:
            fresh = Index.open(self.index.path, settings=settings, create=False)
        except Exception as exc:  # noqa: BLE001 - any failure is reported to the poller
            job.finish(error=str(exc))
            return
        outcome: dict[str, Any] = {}
        try:
            report = fresh.add(job.paths, urls=job.urls, exclude=job.exclude, prune=job.prune,
                               progress=job.progress)
            if job.gone:
                report.removed += fresh.remove(job.gone)
            outcome["report"] = report.as_dict()
        except Exception as exc:  # noqa: BLE001
            outcome["error"] = str(exc)
        with self.lock:
            old, self.index = self.index, fresh
            old.close()
        job.finish(**outcome)
