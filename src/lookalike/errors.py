"""Exceptions with one-line, actionable messages.

Everything the user can cause (a bad path, a corrupt image, an index made by another model)
raises a :class:`LookalikeError`; the CLI prints its message and exits non-zero instead of
showing a traceback. :func:`storage_error` names a storage failure (a full disk, read-only
media, a damaged catalogue) in the same way.
"""

from __future__ import annotations

import errno
import os


class LookalikeError(Exception):
    """Base class for errors that carry a message meant for the user."""


class ImageError(LookalikeError):
    """An image could not be read: missing, unsupported, corrupt, or too large."""


class IndexFormatError(LookalikeError):
    """The index folder is missing, damaged, or was written by an incompatible version."""


class ModelError(LookalikeError):
    """The requested model is unknown or its weights package is not installed."""


class ReadOnlyIndexError(LookalikeError):
    """A command would write to an index that cannot be written (read-only media, an
    immutable folder, no permission). Reading it works."""


class DiskFullError(LookalikeError):
    """The disk holding the index is full; every finished transaction is kept."""


class CatalogueDamagedError(IndexFormatError):
    """SQLite found the catalogue damaged; ``lookalike check --repair`` recovers what it can."""


def storage_error(exc: BaseException, folder: str | os.PathLike) -> LookalikeError | None:
    """The one-line error for a storage failure under the index at ``folder``: a full disk,
    read-only media, a damaged catalogue; None for any other exception."""
    folder = os.path.abspath(os.fspath(folder))
    code = getattr(exc, "sqlite_errorcode", None)
    code = code & 0xFF if isinstance(code, int) else None  # the primary result code
    number = exc.errno if isinstance(exc, OSError) else None
    full = code == SQLITE_IOERR and _no_space(folder)  # e.g. the -shm file could not grow
    if full or code == SQLITE_FULL or number in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(
            f"no space left on {_device(folder)}; nothing was lost: finished batches are saved "
            "(free some space and run the same command again)"
        )
    if code == SQLITE_READONLY or number == errno.EROFS:
        return ReadOnlyIndexError(f"the index at {folder} is read-only: {_reason(exc)}")
    if code in (SQLITE_CORRUPT, SQLITE_NOTADB):
        return CatalogueDamagedError(
            f"the catalogue at {folder} is damaged ({_reason(exc)}); run: lookalike check --db {folder}"
        )
    return None


# SQLite's primary result codes (sqlite3 names them from Python 3.11 on)
SQLITE_READONLY, SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_FULL, SQLITE_NOTADB = 8, 10, 11, 13, 26


def _no_space(folder: str) -> bool:
    while not os.path.exists(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    try:
        return os.statvfs(folder).f_bavail == 0
    except OSError:
        return False


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _device(folder: str) -> str:
    """``the device of FOLDER (mounted at M)``: where space must be freed."""
    mount = folder
    while not os.path.ismount(mount) and os.path.dirname(mount) != mount:
        mount = os.path.dirname(mount)
    return f"the device of {folder}" + (f" (mounted at {mount})" if mount != folder else "")


class IndexBusyError(LookalikeError):
    """Another process is writing to the index (indexing or removing) and the caller chose
    not to wait for it."""


class StoreError(LookalikeError):
    """A remote vector store (Milvus) cannot be reached or does not fit the index."""
