"""Finding the files to index: a walk of folders and files that stats (never reads) what it
finds, skips what is not an image or must not be walked, and reports what cannot be read.

Skipped without being asked: hidden files and folders (a leading dot), operating-system
litter (:data:`LITTER`: thumbnail caches, recycle bins), anything matching an ``exclude``
glob, and anything matching a line of a ``.lookalikeignore`` file in a walked folder (its
globs apply to that folder and below). A glob without a ``/`` matches a name; one with a
``/`` matches the path relative to the indexed folder (or to the ignore file's folder), or
the absolute path. A root given by name is always indexed."""

from __future__ import annotations

import errno
import fnmatch
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from stat import S_ISREG

from .images import is_supported
from .index.formats import FileStat

IGNORE_FILE = ".lookalikeignore"
# Folders and files that operating systems and NAS boxes leave in photo folders.
LITTER = frozenset({"@eaDir", "#recycle", "#snapshot", "$RECYCLE.BIN", "System Volume Information",
                    "Thumbs.db", "desktop.ini", "lost+found"})


def discover(
    roots: Iterable[str | os.PathLike],
    *,
    exclude: Iterable[Path] = (),
    globs: Sequence[str] = (),
    failed: list[tuple[str, str]] | None = None,
) -> Iterator[FileStat]:
    """Yield supported image files under ``roots`` (files or folders), recursively.

    Hidden, littering and ignored names (``globs``, ``.lookalikeignore``: see the module) and
    the ``exclude`` folders (the index itself) are skipped; symlinked folders
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
        rules = {root: [(root, g) for g in globs] + _ignore_file(root)}
        walk = os.walk(root, onerror=lambda exc: report((exc.filename, _os_reason(exc))))
        for folder, dirs, files in walk:
            here = rules.pop(folder, [])
            kept = []
            for d in sorted(dirs):
                path = os.path.join(folder, d)
                if path in excluded or ignored(path, here):
                    continue
                if not os.path.islink(path):
                    kept.append(d)
                    rules[path] = here + _ignore_file(path)
                elif loop := _loop_reason(path, folder):  # other links: not followed
                    report((path, loop))
            dirs[:] = kept
            for name in sorted(files):
                path = os.path.join(folder, name)
                if not is_supported(name) or ignored(path, here):
                    continue
                try:
                    st = os.stat(path)
                    if not S_ISREG(st.st_mode):  # reading a FIFO named x.jpg blocks forever
                        raise OSError(0, "not a regular file (a pipe, socket or device)")
                except OSError as exc:
                    report((path, _os_reason(exc)))
                    continue
                yield FileStat(path, st.st_size, st.st_mtime_ns)


def ignored(path: str, rules: Sequence[tuple[str, str]]) -> bool:
    """Whether ``path`` is hidden, litter, or matches one of ``rules``: ``(base folder,
    glob)`` pairs, a glob with a ``/`` being matched against the path relative to its base
    and against the absolute path."""
    name = os.path.basename(path)
    if name.startswith(".") or name in LITTER:
        return True
    for base, glob in rules:
        glob = glob.rstrip("/")
        if "/" not in glob:
            if fnmatch.fnmatch(name, glob):
                return True
        elif fnmatch.fnmatch(os.path.relpath(path, base), glob.lstrip("/")) or fnmatch.fnmatch(path, glob):
            return True
    return False


def is_ignored(path: str, roots: Iterable[str], globs: Sequence[str] = ()) -> bool:
    """Whether :func:`discover` over ``roots`` would skip ``path`` (it, or a folder above
    it under its root, is ignored): for one changed file, without a walk."""
    root = next((r for r in map(os.path.abspath, roots) if is_under(path, [r])), None)
    if root is None or path == root:
        return False  # a root given by name is always indexed
    rules = [(root, g) for g in globs] + _ignore_file(root)
    current = root
    for part in os.path.relpath(path, root).split(os.sep):
        current = os.path.join(current, part)
        if ignored(current, rules):
            return True
        rules = rules + _ignore_file(current)
    return False


def _ignore_file(folder: str) -> list[tuple[str, str]]:
    """The globs of ``folder``'s ``.lookalikeignore`` (blank lines and ``#`` comments
    skipped), each with ``folder`` as its base; none if it has no such file."""
    try:
        with open(os.path.join(folder, IGNORE_FILE), encoding="utf-8", errors="replace") as f:
            lines = [line.strip() for line in f]
    except OSError:
        return []
    return [(folder, line) for line in lines if line and not line.startswith("#")]


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
