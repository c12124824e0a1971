"""One writer at a time: an advisory lock on ``write.lock`` in the index folder; and Ctrl-C
held off while a write is half done (:func:`deferring_interrupts`).

Indexing and removing take it (:meth:`lookalike.Index.add`, :meth:`lookalike.Index.remove`);
readers (search, info, eval, the server's queries) never do: SQLite's WAL journal gives them
a consistent snapshot of the catalogue, and derived files are replaced in one step.

The lock is ``flock(2)`` on an open file, so the operating system releases it when the
process exits, however it exits (``kill -9`` included): there is no stale lock to clean up.
The file itself stays in the folder, empty; its presence means nothing.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from ..errors import IndexBusyError

LOCK_FILE = "write.lock"
T = TypeVar("T", bound=Callable)


def _open_lock_file(path: Path) -> int | None:
    """A descriptor of the lock file (created if need be), or None where the folder can be
    neither written nor read: writing would fail there anyway, with its own message."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError:
        pass
    try:  # a read-only folder: flock works on a descriptor opened for reading, too
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


def busy_message(folder: Path) -> str:
    return (
        f"another lookalike run is writing to {folder}; try again when it has finished "
        "(or leave out --no-wait to wait for it)"
    )


@contextmanager
def writer_lock(
    folder: str | os.PathLike, *, wait: bool = True, on_wait: Callable[[], None] | None = None
) -> Iterator[None]:
    """Hold the folder's writer lock for the block.

    A non-blocking attempt comes first. When another process holds the lock: with ``wait``
    ``on_wait()`` is called once and the call blocks until the lock is free (Ctrl-C
    interrupts it: ``KeyboardInterrupt``); without it :class:`IndexBusyError` is raised.
    The lock is per open file, so two ``Index`` objects of one process exclude each other
    too.
    """
    folder = Path(folder)
    fd = _open_lock_file(folder / LOCK_FILE)
    try:
        if fd is not None and not _try_lock(fd):
            if not wait:
                raise IndexBusyError(busy_message(folder))
            if on_wait is not None:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)  # EINTR is retried; Ctrl-C raises out of it
        yield
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


def _try_lock(fd: int) -> bool:
    """Take the lock without blocking: False when another process holds it. A file system
    without locks (ENOLCK, EOPNOTSUPP) counts as taken: indexing goes on unlocked, as it
    did before there was a lock, rather than not at all."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
    return True


def is_locked(folder: str | os.PathLike) -> bool:
    """Whether some process holds the folder's writer lock now (a probe: it may change at
    once). It creates nothing."""
    try:
        fd = os.open(Path(folder) / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def deferring_interrupts(function: T) -> T:
    """``function`` with Ctrl-C held off until it returns, then raised (KeyboardInterrupt).

    Python raises KeyboardInterrupt between any two bytecodes of the main thread: between
    SQLite's BEGIN and the ``try`` that would roll it back (the connection then refuses the
    next transaction), or between a commit and the matching change to the vector store in
    memory (which would then be saved without it). Functions that write both are wrapped.
    Other threads never receive KeyboardInterrupt and run the function as it is.
    """

    @functools.wraps(function)
    def deferred(*args, **kwargs):  # noqa: ANN202
        previous = signal.getsignal(signal.SIGINT)
        if threading.current_thread() is not threading.main_thread() or previous is None:
            return function(*args, **kwargs)
        received: list[tuple] = []
        signal.signal(signal.SIGINT, lambda *caught: received.append(caught))
        try:
            return function(*args, **kwargs)
        finally:
            signal.signal(signal.SIGINT, previous)
            if received and callable(previous):
                previous(*received[0])  # the default handler raises KeyboardInterrupt

    return deferred  # type: ignore[return-value]
