"""The catalogue's write statements, each run on the connection of an open
``Catalogue.transaction()``: a part of :class:`lookalike.index.catalogue.Catalogue` (which
inherits them) kept in its own module so each file stays small. New tables add their own
mixin module the same way; all SQL still lives on the one ``Catalogue`` class."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

import numpy as np

from .formats import FEATURE_POINT_DTYPE, VECTOR_DTYPE, WORD_DTYPE, FileStat, NewImage
from .schema import stored_location


class CatalogueWrites:
    """Inserts, updates and deletes of images, files, failures and local features."""

    @staticmethod
    def image_id_for_hash(db: sqlite3.Connection, content_hash: str) -> int | None:
        """The image with these bytes, read on the transaction's connection so it sees the
        transaction's own inserts."""
        row = db.execute("SELECT id FROM images WHERE hash = ?", (content_hash,)).fetchone()
        return None if row is None else int(row[0])

    @staticmethod
    def insert_image(db: sqlite3.Connection, image: NewImage) -> int:
        vector = np.asarray(image.vector, dtype=VECTOR_DTYPE).tobytes()
        # Ids are never reused, not even the highest after it was deleted (SQLite's default),
        # so the derived files that follow the catalogue by id (vector stores, the neighbour
        # graph, the word index) cannot mistake a new image for a removed one.
        cur = db.execute(
            "INSERT INTO images(id, hash, width, height, vector, added_at) VALUES ("
            "(SELECT max(coalesce(max(id), 0), coalesce((SELECT CAST(value AS INTEGER) "
            "FROM meta WHERE key = 'retired_image_id'), 0)) + 1 FROM images), ?, ?, ?, ?, ?)",
            (image.hash, image.width, image.height, vector, time.time()),
        )
        image_id = int(cur.lastrowid)
        labels = enumerate(zip(image.label_ids, image.label_probs, strict=False))
        db.executemany("INSERT INTO labels(image_id, rank, class_id, prob) VALUES (?, ?, ?, ?)",
                       [(image_id, rank, int(c), float(p)) for rank, (c, p) in labels])
        return image_id

    @staticmethod
    def insert_local_features(
        db: sqlite3.Connection, image_id: int, points: np.ndarray, descriptors: np.ndarray,
        words: np.ndarray | None = None,
    ) -> None:
        """Keypoints (float16 pixels), binary descriptors and their visual words (uint16,
        :mod:`lookalike.index.words`) of an image, for verification and word search."""
        db.execute(
            "INSERT OR REPLACE INTO local_features(image_id, points, descriptors, words) "
            "VALUES (?, ?, ?, ?)",
            (image_id, np.asarray(points, dtype=FEATURE_POINT_DTYPE).tobytes(),
             np.ascontiguousarray(descriptors, dtype=np.uint8).tobytes(),
             None if words is None else np.asarray(words, dtype=WORD_DTYPE).tobytes()),
        )

    @staticmethod
    def upsert_file(db: sqlite3.Connection, stat: FileStat, image_id: int) -> int | None:
        """Point a location at an image. Returns the id of an image this orphaned, if any.

        A file whose content changed leaves its old image without files; that image is
        deleted here, in the same transaction, and the caller drops it from vector stores.
        """
        location = stored_location(stat.location)
        row = db.execute("SELECT image_id FROM files WHERE location = ?", (location,)).fetchone()
        db.execute(
            "INSERT INTO files(location, image_id, size, mtime_ns, indexed_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(location) DO UPDATE SET image_id = excluded.image_id, "
            "size = excluded.size, mtime_ns = excluded.mtime_ns, indexed_at = excluded.indexed_at",
            (location, image_id, stat.size, stat.mtime_ns, time.time()),
        )
        db.execute("DELETE FROM failures WHERE location = ?", (location,))
        if row is None or row[0] == image_id:
            return None
        return CatalogueWrites._drop_if_orphan(db, row[0])

    @staticmethod
    def _drop_if_orphan(db: sqlite3.Connection, image_id: int) -> int | None:
        if db.execute("SELECT 1 FROM files WHERE image_id = ? LIMIT 1", (image_id,)).fetchone():
            return None
        db.execute("DELETE FROM images WHERE id = ?", (image_id,))
        db.execute(
            "INSERT INTO meta(key, value) VALUES('retired_image_id', ?) ON CONFLICT(key) "
            "DO UPDATE SET value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
            (str(int(image_id)),),
        )
        return int(image_id)

    @staticmethod
    def record_failure(db: sqlite3.Connection, stat: FileStat, reason: str) -> None:
        db.execute(
            "INSERT INTO failures(location, size, mtime_ns, reason, at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(location) DO UPDATE SET size = excluded.size, "
            "mtime_ns = excluded.mtime_ns, reason = excluded.reason, at = excluded.at",
            (stored_location(stat.location), stat.size, stat.mtime_ns,
             reason.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"),
             time.time()),
        )

    @staticmethod
    def delete_locations(db: sqlite3.Connection, locations: Sequence[str]) -> list[int]:
        """Forget locations; returns ids of images left without any file (also deleted)."""
        orphans: list[int] = []
        for location in map(stored_location, locations):
            row = db.execute("SELECT image_id FROM files WHERE location = ?", (location,)).fetchone()
            db.execute("DELETE FROM files WHERE location = ?", (location,))
            db.execute("DELETE FROM failures WHERE location = ?", (location,))
            if row is not None and CatalogueWrites._drop_if_orphan(db, row[0]) is not None:
                orphans.append(int(row[0]))
        return orphans
