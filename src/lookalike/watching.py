"""Keeping an index in sync with folders while it runs (``lookalike watch``, ``serve
--watch``), on the operating system's change notifications (watchdog).

Events are gathered, not acted on one by one: a burst (a thousand photos copied in) is
applied as one indexing run once no new event has come for ``WatchParams.quiet`` seconds
(or every ``max_wait`` seconds under a steady stream). A file changed less than ``settle``
seconds ago may be half-written: it waits for the next round, and one that failed to decode
while being written is retried when its size or time changes again. New and changed files
are indexed before moved-away and deleted ones are forgotten, so a moved photo is attached
to its image under the new name and never embedded again. A folder created, moved or
deleted, or lost events (the notification queue overflowed), rescan the watched folder
(stat only; pruning what is gone).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from .discovery import is_ignored, is_under
from .errors import LookalikeError
from .images import is_supported
from .settings import WatchParams


@dataclass
class Batch:
    """What one indexing run applies: ``files`` to (re)index, ``rescan`` folders to walk
    again (pruned), ``gone`` paths to forget."""

    files: list[str] = field(default_factory=list)
    rescan: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.files or self.rescan or self.gone)


Apply = Callable[[Batch], None]


class FolderWatcher(FileSystemEventHandler):
    """Watches ``roots`` and calls ``apply(batch)`` from :meth:`run`'s thread."""

    def __init__(self, roots: Sequence[str], apply: Apply, params: WatchParams, *,
                 globs: Sequence[str] = (), exclude: Iterable[str] = ()):
        self.roots = [os.path.abspath(r) for r in roots]
        self.apply, self.params, self.globs = apply, params, list(globs)
        self.excluded = [os.path.abspath(p) for p in exclude]  # the index folder itself
        self._lock = threading.Condition()
        self._files: dict[str, None] = {}
        self._gone: dict[str, None] = {}
        self._rescan: dict[str, None] = {}
        self._first = self._last = 0.0
        self._stop = threading.Event()
        self._observer = Observer()

    # --- events (on watchdog's thread) -------------------------------------------------
    def on_any_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if kind in ("opened", "closed_no_write", "attrib") or (event.is_directory and kind == "modified"):
            return
        src, dest = os.fsdecode(event.src_path), os.fsdecode(getattr(event, "dest_path", "") or "")
        with self._lock:
            if kind == "events_lost":  # EventsLostEvent: the queue overflowed, rescan everything
                self._rescan.update(dict.fromkeys(self.roots))
            elif event.is_directory:
                for path in (src, dest):
                    if path and self._wanted(path):
                        self._rescan[self._root_of(path)] = None
            else:
                if kind in ("deleted", "moved") and self._wanted(src):
                    self._gone[src] = None
                    self._files.pop(src, None)
                target = dest if kind == "moved" else src if kind != "deleted" else ""
                if target and is_supported(target) and self._wanted(target):
                    self._files[target] = None
                    self._gone.pop(target, None)
            now = time.monotonic()
            self._first = self._first or now
            self._last = now
            self._lock.notify()

    def _wanted(self, path: str) -> bool:
        return (is_under(path, self.roots) and not is_under(path, self.excluded)
                and not is_ignored(path, self.roots, self.globs))

    def _root_of(self, path: str) -> str:
        return next(r for r in self.roots if is_under(path, [r]))

    # --- batching (on run()'s thread) --------------------------------------------------
    def start(self) -> None:
        """Start watching (before a first full run, so nothing changed meanwhile is missed)."""
        for root in self.roots:
            self._observer.schedule(self, root, recursive=True)
        self._observer.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify()

    def close(self) -> None:
        self.stop()
        self._observer.stop()
        if self._observer.is_alive():
            self._observer.join()

    def run(self) -> None:
        """Apply batches until :meth:`stop` (or Ctrl-C, which propagates)."""
        while not self._stop.is_set():
            batch = self.next_batch()
            if batch:
                try:
                    self.apply(batch)
                except LookalikeError:  # a file vanished meanwhile: its event comes next
                    with self._lock:
                        self._files.update(dict.fromkeys(p for p in batch.files if os.path.exists(p)))
                        self._last = time.monotonic()

    def next_batch(self) -> Batch:
        """Wait for a quiet moment after events (or :meth:`stop`); take what is ready."""
        p = self.params
        with self._lock:
            while not self._stop.is_set():
                now = time.monotonic()
                pending = self._files or self._gone or self._rescan
                if pending and (now - self._last >= p.quiet or now - self._first >= p.max_wait):
                    break
                self._lock.wait(timeout=p.quiet / 2 if pending else None)
            return self._take()

    def _take(self) -> Batch:
        now, batch = time.time(), Batch()
        waiting: dict[str, None] = {}
        for path in self._files:
            try:
                if now - os.stat(path).st_mtime < self.params.settle:
                    waiting[path] = None  # maybe still being written: next round
                else:
                    batch.files.append(path)
            except OSError:
                pass  # gone again: its deletion event is (or was) recorded
        batch.gone = [p for p in self._gone if not os.path.lexists(p)]
        batch.rescan = [r for r in self._rescan if os.path.isdir(r)]
        batch.files = [f for f in batch.files if not is_under(f, batch.rescan)]
        self._files, self._gone, self._rescan = waiting, {}, {}
        self._first = self._last = time.monotonic() if waiting else 0.0
        return batch


def apply_to(index, batch: Batch, *, globs: Sequence[str] = (), prune: bool = True):  # noqa: ANN001, ANN201
    """Apply ``batch`` to a :class:`lookalike.Index`: index its files and rescanned folders
    first, then forget what is gone. Returns the indexing run's report (None: no run)."""
    report = None
    if batch.files or batch.rescan:
        report = index.add([*batch.rescan, *batch.files], exclude=globs, prune=prune)
    if batch.gone and prune:
        removed = index.remove(batch.gone)
        if report is not None:
            report.removed += removed
    return report
