"""Finding the files to index: a walk of folders and files that stats (never reads) what it
finds, skips what is not an image or must not be walked, and reports what cannot be read."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from stat import S_ISREG

from .images import is_supported
from .index.formats import FileStat


def discover(
    roots: Iterable[str | os.PathLike],
    *,
    exclude: Iterable[Path] = (),
    failed: list[tuple[str, str]] | None = None,
) -> Iterator[FileStat]:
    """Yield supported image files under ``roots`` (files or folders), recursively.

    Hidden folders and the excluded folders (the index itself) are skipped; symlinked folders
    are not followed, so a link cycle cannot loop. What cannot be walked or read (``permission
    denied``, a ``symlink loop``, a dangling link, a pipe) is skipped and appended to
    ``failed`` as ``(path, reason)``."""
    excluded = {os.path.abspath(p) for p in exclude}
    report = failed.append if failed is not None else (lambda item: None)
    for root in roots:
        root = os.path.abspath(root)
        if os.path.isfile(root):
            st = os.stat(root)
            yield FileStat(root, st.st_size, st.st_mtime_ns)
            continue
        walk = os.walk(root, onerror=lambda exc: report((exc.filename, _os_reason(exc))))
        for folder, dirs, files in walk:
            kept = []
            for d in sorted(dirs):
                path = os.path.join(folder, d)
                if d.startswith(".") or path in excluded:
                    continue
                if not os.path.islink(path):
                    kept.append(d)
                elif loop := _loop_reason(path, folder):  # other links: not followed
                    report((path, loop))
            dirs[:] = kept
            for name in sorted(files):
                if not is_supported(name):
                    continue
                path = os.path.join(folder, name)
                try:
                    st = os.stat(path)
                    if not S_ISREG(st.st_mode):  # reading a FIFO named x.jpg blocks forever
                        raise OSError(0, "not a regular file (a pipe, socket or device)")
                except OSError as exc:
                    report((path, _os_reason(exc)))
                    continue
                yield FileStat(path, st.st_size, st.st_mtime_ns)


def _loop_reason(link: str, folder: str) -> str | None:
    """Why following the symlinked folder ``link`` (in ``folder``) would loop, or None."""
    try:
        os.stat(link)
    except OSError as exc:
        return "symlink loop" if exc.errno == errno.ELOOP else None
    target, here = os.path.realpath(link), os.path.realpath(folder)
    inside = here == target or here.startswith(target.rstrip(os.sep) + os.sep)
    return f"symlink loop (points back to {target})" if inside else None


def _os_reason(exc: OSError) -> str:
    reasons = {errno.ELOOP: "symlink loop", errno.EACCES: "permission denied",
               errno.EPERM: "permission denied", errno.ENOENT: "not found (a dangling symlink?)"}
    return reasons.get(exc.errno or 0, (exc.strerror or type(exc).__name__).lower())


def is_under(location: str, roots: Iterable[str]) -> bool:
    return any(location == r or location.startswith(r.rstrip(os.sep) + os.sep) for r in roots)
