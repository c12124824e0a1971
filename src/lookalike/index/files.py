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
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..atomic import atomic_write, replacing  # noqa: F401 - atomic_write: the index's writes import it here


def atomic_save(path: Path, array: np.ndarray) -> None:
    """``np.save`` to ``path``, replaced in one step."""
    with replacing(path, ".tmp.npy") as tmp:
        np.save(tmp, array)


def save_with_meta(path: Path, meta: dict, **arrays: np.ndarray) -> None:
    """Arrays and a JSON ``meta`` dict in one ``.npz``, replaced atomically (derived data
    such as the neighbour graph or the word index, stamped with what it reflects)."""
    with replacing(path, ".tmp.npz") as tmp:
        np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)


def load_with_meta(
    path: Path, names: tuple[str, ...], optional: tuple[str, ...] = (), *, mapped: bool = False,
    **expected: object,
) -> tuple[dict[str, np.ndarray], int] | None:
    """``(arrays, generation)`` written by :func:`save_with_meta`, or None when the file is
    missing, unreadable, lacks one of ``names`` or its meta differs from ``expected``.
    Arrays named in ``optional`` are included when the file has them.

    ``mapped`` maps the arrays from the file instead of reading them (copy-on-write): a
    fresh process, such as one CLI search, then touches only the pages it uses. Reading
    (the default) also checks each array's CRC, which is what ``lookalike check`` wants."""
    try:
        with np.load(path) as z:
            meta = json.loads(str(z["meta"]))
            if any(meta.get(key) != value for key, value in expected.items()):
                return None
            present = [*names, *(name for name in optional if name in z.files)]
            read = _mapped_members(path, z.zip, present) if mapped else {}
            arrays = {name: read[name] if name in read else z[name] for name in present}
            return arrays, int(meta.get("generation", -1))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _mapped_members(path: Path, archive: zipfile.ZipFile, names: list[str]) -> dict[str, np.ndarray]:
    """The stored (uncompressed) ``.npy`` members ``names`` of an ``.npz``, memory-mapped
    where they lie in the file (``np.savez`` stores without compression)."""
    out = {}
    with open(path, "rb") as f:
        for name in names:
            info = archive.getinfo(f"{name}.npy")
            if info.compress_type != zipfile.ZIP_STORED or not info.file_size:
                continue  # (read normally)
            f.seek(info.header_offset)
            local = f.read(30)  # the local file header: its name and extra field follow
            if local[:4] != b"PK\x03\x04":
                raise ValueError(f"{path}: damaged member {name}")
            start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") \
                + int.from_bytes(local[28:30], "little")
            f.seek(start)
            header = _NPY_HEADERS.get(np.lib.format.read_magic(f))
            if header is None:
                continue
            shape, fortran, dtype = header(f)
            if dtype.hasobject or fortran or not np.prod(shape):
                continue
            mapped = np.memmap(f, dtype=dtype, mode="c", offset=f.tell(), shape=shape)
            out[name] = mapped.view(np.ndarray)  # (a plain array; the map lives on as its base)
    return out


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
