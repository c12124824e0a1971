"""Opening an index folder that moves its vectors to a remote store (Milvus: docs/scale.md).

The address is checked before anything is written (a bad address, a server that is down, a
collection of another vector size, an index type the server cannot build: one error, no
index created or changed), then recorded in the catalogue, and the store brought level.
"""

from __future__ import annotations

from pathlib import Path

from ..settings import Settings
from .folder import IndexFolder
from .stores import attach_check, record_remote


def open_folder(path: str | Path, settings: Settings, *, model: str | None, create: bool,
                store: str | None) -> IndexFolder:
    """:meth:`IndexFolder.open`, with ``store`` (``milvus://HOST:PORT/COLLECTION``) checked
    first and recorded after."""
    address = attach_check(store, settings.with_(model=model) if model else settings)
    folder = IndexFolder.open(path, settings, model=model, create=create)
    try:
        if record_remote(folder.catalogue, address):
            folder.open_store()  # the collection brought level with the catalogue
    except BaseException:
        folder.close()
        raise
    return folder
