"""Files in an index folder: atomic writes, and derived files stamped with what they follow.

Everything in the folder except ``catalogue.sqlite`` is *derived* (vector store, neighbour
graph, word index) and rebuilt from the catalogue when it is missing, stale or damaged. So
a derived file is always written whole (to a temporary name, then renamed), carries the
catalogue generation it reflects, and failing to write one is never an error: a read-only
index folder still searches, keeping what it rebuilt in memory.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np


@contextmanager
def _replacing(path: Path, suffix: str) -> Iterator[Path]:
    """A temporary name next to ``path`` to write, this process's own (two processes saving
    the same derived file cannot write into one temporary file); renamed over ``path`` when
    the block ends, removed when it fails (a full disk leaves no half-written file behind)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one step (readers see the old or the new file)."""
    with _replacing(path, ".tmp") as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_save(path: Path, array: np.ndarray) -> None:
    """``np.save`` to ``path``, replaced in one step."""
    with _replacing(path, ".tmp.npy") as tmp:
        np.save(tmp, array)


def save_with_meta(path: Path, meta: dict, **arrays: np.ndarray) -> None:
    """Arrays and a JSON ``meta`` dict in one ``.npz``, replaced atomically (derived data
    such as the neighbour graph or the word index, stamped with what it reflects)."""
    with _replacing(path, ".tmp.npz") as tmp:
        np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)


def load_with_meta(
    path: Path, names: tuple[str, ...], optional: tuple[str, ...] = (), **expected: object
) -> tuple[dict[str, np.ndarray], int] | None:
    """``(arrays, generation)`` written by :func:`save_with_meta`, or None when the file is
    missing, unreadable, lacks one of ``names`` or its meta differs from ``expected``.
    Arrays named in ``optional`` are included when the file has them."""
    try:
        with np.load(path) as z:
            meta = json.loads(str(z["meta"]))
            if any(meta.get(key) != value for key, value in expected.items()):
                return None
            arrays = {name: z[name] for name in names}
            arrays.update({name: z[name] for name in optional if name in z.files})
            return arrays, int(meta.get("generation", -1))
    except (OSError, ValueError, KeyError):
        return None


def save_quietly(save: Callable[[], None]) -> bool:
    """Run ``save()``; False when the folder cannot be written (read-only media, full disk).

    A derived file that cannot be saved is kept in memory and rebuilt by the next process,
    so this is never an error for a search."""
    try:
        save()
    except OSError:
        return False
    return True


def unlink_quietly(folder: Path, names: tuple[str, ...]) -> None:
    """Remove derived files that no longer apply (ignoring a read-only folder)."""
    for name in names:
        try:
            (folder / name).unlink(missing_ok=True)
        except OSError:
            pass


def read_only_reason(folder: Path, catalogue: Path) -> str | None:
    """Why the index in ``folder`` cannot be written (read-only media, an immutable folder or
    file, no permission), or None when it can. Asked of the kernel (``access``), which knows
    read-only mounts and immutable files, also for root; the reason is the error a write
    would get."""
    for path in (catalogue, folder):
        if os.access(path, os.W_OK):
            continue
        try:
            if path == folder:
                tempfile.TemporaryFile(dir=folder).close()
            else:
                open(path, "r+b").close()
        except OSError as exc:
            return f"{(exc.strerror or 'not writable').lower()}: {path}"
    return None
