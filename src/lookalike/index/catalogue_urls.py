"""The catalogue's statements about indexed URLs: a part of
:class:`lookalike.index.catalogue.Catalogue` (a mixin, like ``catalogue_writes``).

A URL is indexed like a file (a ``files`` row whose location is the URL); ``url_sources``
adds the validators its server sent (``ETag``, ``Last-Modified``), so that a re-run can
ask the server whether it changed instead of downloading it again."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import NamedTuple


class UrlState(NamedTuple):
    """What the catalogue knows of an indexed URL: its content's hash and its validators."""

    hash: str
    etag: str | None
    last_modified: str | None


class CatalogueUrls:
    """Reads and writes of the per-URL validators."""

    db: sqlite3.Connection

    def url_states(self) -> dict[str, UrlState]:
        """Every indexed http(s) location with the hash of its image and its validators
        (None when the server sent none, or the catalogue predates them)."""
        rows = self.db.execute(
            "SELECT f.location, i.hash, u.etag, u.last_modified FROM files f "
            "JOIN images i ON i.id = f.image_id LEFT JOIN url_sources u ON u.location = f.location "
            "WHERE f.location LIKE 'http://%' OR f.location LIKE 'https://%'"
        )
        return {r[0]: UrlState(*r[1:]) for r in rows}

    @staticmethod
    def record_validators(
        db: sqlite3.Connection, rows: Sequence[tuple[str, str | None, str | None]]
    ) -> None:
        """Remember ``(url, etag, last_modified)`` of URLs just indexed or found unchanged."""
        db.executemany(
            "INSERT INTO url_sources(location, etag, last_modified, checked_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(location) DO UPDATE SET etag = excluded.etag, "
            "last_modified = excluded.last_modified, checked_at = excluded.checked_at",
            [(url, etag, modified, time.time()) for url, etag, modified in rows],
        )

    @staticmethod
    def forget_validators(db: sqlite3.Connection, urls: Sequence[str]) -> None:
        db.executemany("DELETE FROM url_sources WHERE location = ?", [(u,) for u in urls])
