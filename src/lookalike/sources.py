"""Images indexed by reference: a list of http(s) URLs, each stored with its URL as its
location. Nothing downloaded is kept: the catalogue's descriptor and local features cover
what search and verification need.

Downloads run on a bounded pool of threads (``UrlParams.workers``), at most
``UrlParams.chunk`` ahead of the batch being embedded, so a long list is bound neither by
latency nor by memory. Each download goes through the safe fetch of :mod:`lookalike.fetch`
(http/https only, private addresses refused unless allowed, every redirect checked, a
deadline and a size cap). A URL indexed before is asked for with its validators (``ETag``,
``Last-Modified``): 304, or the same content hash, is *unchanged*; other content is
*changed* and embedded through the same :class:`~lookalike.indexing.Indexer` as files. A
known URL answering 404 or 410 is *gone* and forgotten like a deleted file (unless
``prune=False``); any other failure is recorded with its reason, keeps what was indexed, and
is retried on the next run.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from .errors import ImageError, LookalikeError
from .fetch import FetchError, fetch_url
from .images import is_url
from .index.catalogue import Catalogue
from .index.catalogue_urls import UrlState
from .index.formats import FileStat
from .index.lock import deferring_interrupts
from .indexing import Indexer, IndexReport, ProgressCallback, forget, hash_bytes
from .settings import UrlParams

GONE = (404, 410)
OUTCOMES = ("new", "changed", "unchanged", "gone", "failed")


def read_url_list(lines: Iterable[str]) -> list[str]:
    """The URLs of a list, one a line (blank lines and ``#`` comments skipped, repeats
    dropped); a line that is not an http(s) URL raises a one-line error naming it."""
    urls: dict[str, None] = {}
    for number, line in enumerate(lines, 1):
        url = line.strip()
        if not url or url.startswith("#"):
            continue
        if not is_url(url):
            raise LookalikeError(f"line {number} of the URL list is not an http(s) URL: {url[:200]}")
        urls[url] = None
    return list(urls)


@dataclass
class _Fetched:
    url: str
    outcome: str  # one of OUTCOMES
    data: bytes = b""
    validators: tuple[str | None, str | None] = (None, None)
    reason: str = ""


class UrlSource:
    """Brings a catalogue up to date with a list of URLs (see the module)."""

    def __init__(self, indexer: Indexer, params: UrlParams):
        self.indexer, self.params = indexer, params
        self.catalogue: Catalogue = indexer.catalogue
        self._downloaded: dict[str, bytes] = {}
        # The indexer now reads downloads, and the progress shown is the downloads'.
        indexer.read, indexer.progress = self._read, lambda done, total: None

    def run(self, urls: list[str], *, prune: bool = True,
            progress: ProgressCallback | None = None) -> IndexReport:
        """Index ``urls``; ``progress(done, total)`` follows the downloads."""
        started = time.perf_counter()
        report = IndexReport(discovered=len(urls), urls=dict.fromkeys(OUTCOMES, 0))
        known = self.catalogue.url_states()
        progress = progress or (lambda done, total: None)
        if hasattr(progress, "stage"):  # lookalike.progress.Progress: a bar of its own
            progress.stage("fetching", "URLs")
        progress(0, len(urls))
        chunk: list[_Fetched] = []
        try:
            for done, fetched in enumerate(self._downloads(urls, known), 1):
                chunk.append(fetched)
                progress(done, len(urls))
                if len(chunk) >= self.params.chunk:
                    self._apply(chunk, prune, report)
            self._apply(chunk, prune, report)
        except KeyboardInterrupt:
            report.interrupted = True
        report.seconds = time.perf_counter() - started
        return report

    # --- downloading ------------------------------------------------------------------
    def _downloads(self, urls: list[str], known: dict[str, UrlState]) -> Iterator[_Fetched]:
        """Each URL's outcome, in list order, with at most ``chunk`` downloads ahead."""
        pending: deque[Future[_Fetched]] = deque()
        pool = ThreadPoolExecutor(self.params.workers, thread_name_prefix="download")
        try:
            for url in urls:
                pending.append(pool.submit(self._fetch, url, known.get(url)))
                while len(pending) > self.params.chunk or (pending and pending[0].done()):
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # on Ctrl-C: waiting for the downloads in flight could take their deadline
            pool.shutdown(wait=False, cancel_futures=True)

    def _fetch(self, url: str, state: UrlState | None) -> _Fetched:
        """Download one URL, conditionally when it was indexed before (on a pool thread)."""
        headers = {}
        if state is not None and state.etag:
            headers["If-None-Match"] = state.etag
        if state is not None and state.last_modified:
            headers["If-Modified-Since"] = state.last_modified
        try:
            status, data, answer = fetch_url(
                url, timeout=self.params.timeout, max_bytes=self.params.max_bytes,
                allow_private=self.params.allow_private, headers=headers)
        except FetchError as exc:
            if exc.status in GONE and state is not None:
                return _Fetched(url, "gone")
            return _Fetched(url, "failed", reason=_reason(exc, url))
        except ImageError as exc:
            return _Fetched(url, "failed", reason=_reason(exc, url))
        validators = (answer.get("ETag"), answer.get("Last-Modified"))
        kind = answer.get("Content-Type", "").split(";")[0].strip().lower()
        if status == 304 and state is not None:
            return _Fetched(url, "unchanged", validators=validators)
        if kind.startswith("text/") or not data:
            return _Fetched(url, "failed", reason=f"the server sent {kind or 'nothing'}, not an image")
        if state is not None and hash_bytes(data) == state.hash:
            return _Fetched(url, "unchanged", validators=validators)
        return _Fetched(url, "changed" if state is not None else "new", data, validators)

    def _read(self, stat: FileStat) -> bytes:
        """The Indexer's reader: the bytes downloaded for a URL, handed over once."""
        return self._downloaded.pop(stat.location)

    # --- applying ---------------------------------------------------------------------
    def _apply(self, chunk: list[_Fetched], prune: bool, report: IndexReport) -> None:
        """Embed the chunk's new and changed images, record failures and validators, forget
        what is gone; then empty the chunk."""
        now = time.time_ns()  # a fresh "mtime": a URL is never skipped as an unchanged file
        fresh = [f for f in chunk if f.outcome in ("new", "changed")]
        for f in fresh:
            self._downloaded[f.url] = f.data
        stats = [FileStat(f.url, len(f.data), now) for f in fresh]
        result = self.indexer.run(stats) if stats else IndexReport()
        self._downloaded.clear()
        undecodable = {location for location, _ in result.failed}
        _add(report, result, ("embedded", "reused"))
        report.failed += result.failed
        self._record(chunk, undecodable, prune, now, report)
        chunk.clear()
        if result.interrupted:
            raise KeyboardInterrupt

    @deferring_interrupts  # the catalogue and the store change together
    def _record(self, chunk: list[_Fetched], undecodable: set[str], prune: bool, now: int,
                report: IndexReport) -> None:
        gone = [f.url for f in chunk if f.outcome == "gone"]
        failed = [f for f in chunk if f.outcome == "failed"]
        kept = [(f.url, *f.validators) for f in chunk
                if f.outcome in ("new", "changed", "unchanged") and f.url not in undecodable]
        with self.catalogue.transaction() as db:
            for f in failed:
                Catalogue.record_failure(db, FileStat(f.url, 0, now), f.reason)
            Catalogue.record_validators(db, kept)
            if prune:
                Catalogue.forget_validators(db, gone)
        if prune and gone:
            forget(self.catalogue, self.indexer.store, gone)
            report.removed += len(gone)
        report.failed += [(f.url, f.reason) for f in failed]
        for f in chunk:
            outcome = "failed" if f.url in undecodable else f.outcome
            report.urls[outcome] += 1
        report.unchanged += sum(f.outcome == "unchanged" for f in chunk)


def _reason(exc: ImageError, url: str) -> str:
    """The error's reason without the "cannot read image 'URL':" the report already names."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    prefix = f"cannot read image '{url}': "
    text = text.replace("pass allow_private=True", "--allow-private-urls")
    return text[len(prefix):] if text.startswith(prefix) else text


def merged(files: IndexReport, urls: IndexReport) -> IndexReport:
    """One report for a run over files and then URLs."""
    _add(files, urls, ("discovered", "unchanged", "embedded", "reused", "removed", "seconds"))
    files.failed += urls.failed
    files.interrupted, files.urls = urls.interrupted, urls.urls
    return files


def _add(into: IndexReport, other: IndexReport, names: Iterable[str]) -> None:
    for name in names:
        setattr(into, name, getattr(into, name) + getattr(other, name))
