"""What a user names: folders and files to index, query images. Checked before anything is
created or written, so a typo costs nothing."""

from __future__ import annotations

import os
from collections.abc import Iterable

from PIL import Image

from .discovery import discover
from .errors import ImageError, LookalikeError
from .images import is_supported


def check_paths(paths: Iterable[str | os.PathLike]) -> list[str]:
    """The paths to index, absolute; :class:`LookalikeError` for one that does not exist or
    is a file of an unsupported type."""
    roots = [os.path.abspath(os.path.expanduser(p)) for p in paths]
    for root in roots:
        if not os.path.exists(root):
            raise LookalikeError(f"no such file or folder: {root}")
        if os.path.isfile(root) and not is_supported(root):
            raise LookalikeError(f"not a supported image type: {root}")
    return roots


def describe_query(image: str | os.PathLike | bytes | Image.Image) -> str:
    """How a result names its query: the file's absolute path, else ``<image>``."""
    if isinstance(image, (str, os.PathLike)):
        return os.path.abspath(os.path.expanduser(image))
    return "<image>"


def expand_query_paths(queries: Iterable[str | os.PathLike]) -> list[str]:
    """Query arguments to image files: files as given, folders expanded recursively."""
    out: list[str] = []
    for query in queries:
        path = os.path.abspath(os.path.expanduser(query))
        if os.path.isdir(path):
            found = [s.location for s in discover([path])]
            if not found:
                raise LookalikeError(f"no supported images in folder: {path}")
            out.extend(found)
        elif os.path.isfile(path):
            out.append(path)
        else:
            raise ImageError(f"no such query image: {path}")
    return out
