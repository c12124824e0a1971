"""Files replaced in one step: written under a temporary name of this process's own, then
renamed over the target, so a reader sees the old file or the new one and a failed or
interrupted write (a full disk, Ctrl-C) leaves nothing half-written behind."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary name next to ``path`` to write, this process's own (two processes saving
    the same file cannot write into one temporary file); renamed over ``path`` when the
    block ends, removed when it fails."""
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
    with replacing(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
