"""The catalogue's read queries for browsing the collection page by page: a part of
:class:`lookalike.index.catalogue.Catalogue` (which inherits them), like
:mod:`lookalike.index.catalogue_writes`."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import NamedTuple

from .schema import read_location

# How a page is ordered: newest first, or by the first file's path (folder, then name).
BROWSE_ORDERS = {
    "added": "i.added_at DESC, i.id DESC",
    "folder": "location, i.id",
}
# min(): SQLite takes the bare size and mtime columns from the row with the first location.
_SELECT = (
    "SELECT i.id, min(f.location) AS location, i.width, i.height, i.added_at, f.size, "
    "f.mtime_ns FROM images i JOIN files f ON f.image_id = i.id"
)


class BrowsedImage(NamedTuple):
    """One image of a browse page, or an image's details (its first file by path)."""

    image_id: int
    location: str
    width: int
    height: int
    added_at: float
    size: int
    mtime_ns: int


class CatalogueBrowse:
    """Paged listing of the indexed images and one image's file details."""

    db: sqlite3.Connection

    @staticmethod
    def _label_filter(class_ids: Sequence[int] | None) -> tuple[str, list[int]]:
        if not class_ids:
            return "", []
        marks = ",".join("?" * len(class_ids))
        return f"WHERE i.id IN (SELECT image_id FROM labels WHERE class_id IN ({marks}))", [
            int(c) for c in class_ids
        ]

    def browse(
        self,
        offset: int,
        limit: int,
        order: str = "added",
        class_ids: Sequence[int] | None = None,
    ) -> tuple[int, list[BrowsedImage]]:
        """``(total, page)``: the images (with a file) having one of ``class_ids`` (None:
        all), in ``order`` (a key of :data:`BROWSE_ORDERS`), ``limit`` from ``offset``."""
        where, values = self._label_filter(class_ids)
        total = self.db.execute(
            f"SELECT count(*) FROM images i {where} "
            f"{'AND' if where else 'WHERE'} EXISTS (SELECT 1 FROM files f WHERE f.image_id = i.id)",
            values,
        ).fetchone()[0]
        rows = self.db.execute(
            f"{_SELECT} {where} GROUP BY i.id ORDER BY {BROWSE_ORDERS[order]} LIMIT ? OFFSET ?",
            [*values, int(limit), int(offset)],
        ).fetchall()
        return int(total), [_browsed(row) for row in rows]

    def image_details(self, image_id: int) -> BrowsedImage | None:
        """Pixel size, when it was added, and its first file's size and mtime (None: no file)."""
        row = self.db.execute(
            f"{_SELECT} WHERE i.id = ? GROUP BY i.id",
            (int(image_id),),
        ).fetchone()
        return None if row is None else _browsed(row)


def _browsed(row: tuple) -> BrowsedImage:
    image_id, location, width, height, added_at, size, mtime_ns = row
    return BrowsedImage(
        int(image_id), read_location(location), int(width), int(height), float(added_at),
        int(size), int(mtime_ns),
    )
