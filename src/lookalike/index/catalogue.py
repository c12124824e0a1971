"""The catalogue: what was indexed, in one SQLite database.

Two levels, so identical files are embedded once:

* ``images``: one row per distinct *content* (keyed by a BLAKE2b hash) with its pixel size,
  ImageNet labels and descriptor (float16: the source every vector store is rebuilt from);
* ``files``: one row per *location* (a path, or a URL) pointing at an image, with the size
  and mtime used to skip unchanged files without reading them.

A moved, renamed or copied file therefore costs one hash and one row, never an embedding.
Each batch is one transaction (WAL journal): a crash or Ctrl-C keeps every finished batch.
``meta.generation`` increases with every change; derived files record the one they reflect.
The tables, migrations and how the file is opened are in :mod:`lookalike.index.schema`; no
other module runs SQL on the catalogue.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import IndexFormatError, LookalikeError, ReadOnlyIndexError, storage_error
from . import schema
from .catalogue_browse import CatalogueBrowse
from .catalogue_dupes import CatalogueDupes
from .catalogue_labels import CatalogueLabels
from .catalogue_urls import CatalogueUrls
from .catalogue_writes import CatalogueWrites
from .formats import (
    DESCRIPTOR_BYTES,
    FEATURE_POINT_DTYPE,
    VECTOR_DTYPE,
    WORD_DTYPE,
    FileRecord,
)
from .schema import read_location, stored_location
from .vectors import LabelIds

FORMAT_VERSION = schema.VERSION


class Catalogue(CatalogueWrites, CatalogueLabels, CatalogueUrls, CatalogueBrowse, CatalogueDupes):
    """Typed access to the SQLite catalogue of one index folder: all of its SQL is here (and
    in :mod:`lookalike.index.schema`)."""

    VERSION = schema.VERSION

    def __init__(self, path: Path, *, readonly: bool | LookalikeError = False):
        """Open the catalogue at ``path``, created or migrated to :attr:`VERSION` unless
        ``readonly`` (True, or the error every write then raises: why it cannot be written).
        :class:`IndexFormatError` if it is none, or of a newer format."""
        self.path, self.readonly = Path(path), bool(readonly)
        self.refusal = readonly if isinstance(readonly, LookalikeError) else ReadOnlyIndexError(
            f"the index at {self.path.parent} is read-only: opened read-only")
        try:
            self.db = schema.connect(self.path, self.readonly)
        except sqlite3.DatabaseError as exc:
            raise self._open_error(exc) from exc
        try:
            self.db.execute("PRAGMA foreign_keys = ON")
            self.ensure_version(migrate=not self.readonly)  # first: a newer file is left untouched
            if not self.readonly:
                self.db.execute("PRAGMA journal_mode = WAL")
                self.db.execute("PRAGMA synchronous = NORMAL")
            self.db.execute("SELECT count(*) FROM images").fetchone()
        except BaseException as exc:
            self.db.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise self._open_error(exc) from exc
            raise

    def _open_error(self, exc: sqlite3.DatabaseError) -> LookalikeError:
        if not self.readonly and getattr(exc, "sqlite_errorname", "") in schema.CANNOT_WRITE:
            return ReadOnlyIndexError(f"the index at {self.path.parent} is read-only: {exc}")
        return storage_error(exc, self.path.parent) or IndexFormatError(
            f"{self.path} is not a lookalike catalogue ({exc})")

    def require_writable(self) -> None:
        """Raise :attr:`refusal` if this catalogue was opened read-only."""
        if self.readonly:
            raise type(self.refusal)(str(self.refusal))

    def close(self) -> None:
        self.db.close()

    # --- format and transactions --------------------------------------------------------
    def ensure_version(self, *, migrate: bool = True) -> int | None:
        """Check the stored format; create a new catalogue at :attr:`VERSION`, or bring an
        older one up to it (``migrate``) in one transaction. Returns the format now stored
        (None: an empty file left as it is). Read without a write lock first, so opening a
        current catalogue never waits for a process that is indexing into it."""
        version = schema.stored_version(self.db)
        if version is not None and version > self.VERSION:
            raise IndexFormatError(
                f"{self.path} was written by a newer lookalike (format {version}); upgrade lookalike"
            )
        if version != self.VERSION and migrate:
            with self._immediate() as db:
                schema.upgrade(db)
            return self.ensure_version(migrate=False)  # as stored (a newer one raises)
        return version

    @property
    def version(self) -> int:
        """The stored format: :attr:`VERSION`, or older in a catalogue opened read-only."""
        return int(self.get_meta("format_version", "1"))

    @contextmanager
    def _immediate(self) -> Iterator[sqlite3.Connection]:
        """Take the write lock now (no upgrade deadlock with another writer); undo on error,
        unless SQLite rolled back already (a full disk): its error is the one raised."""
        self.require_writable()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                try:
                    self.db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the error being raised says more
            raise

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write; bumps the generation so vector stores notice the change."""
        with self._immediate() as db:
            yield db
            db.execute(
                "INSERT INTO meta(key, value) VALUES('generation', '1') ON CONFLICT(key) "
                "DO UPDATE SET value = CAST(value AS INTEGER) + 1"
            )

    # --- metadata -------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, values: dict[str, str]) -> None:
        with self.transaction() as db:
            db.executemany("INSERT INTO meta(key, value) VALUES(?, ?) "
                           "ON CONFLICT(key) DO UPDATE SET value = excluded.value", values.items())

    @property
    def generation(self) -> int:
        return int(self.get_meta("generation", "0"))

    # --- reads ----------------------------------------------------------------------
    # A location goes in through stored_location() and comes out through read_location():
    # TEXT, or a BLOB of the raw bytes of a name that is not valid UTF-8.
    def files_by_location(self) -> dict[str, FileRecord]:
        rows = self.db.execute("SELECT id, location, image_id, size, mtime_ns FROM files")
        return {read_location(r[1]): FileRecord(r[0], read_location(r[1]), *r[2:]) for r in rows}

    def known_hashes(self) -> set[str]:
        """Content hashes of every image: files with these bytes need no embedding."""
        return {h for (h,) in self.db.execute("SELECT hash FROM images")}

    def failures(self) -> dict[str, tuple[int, int, str]]:
        rows = self.db.execute("SELECT location, size, mtime_ns, reason FROM failures")
        return {read_location(r[0]): (r[1], r[2], r[3]) for r in rows}

    def count_images(self) -> int:
        return self.db.execute("SELECT count(*) FROM images").fetchone()[0]

    def count_local_features(self) -> int:
        """Images with stored local features (0 for a read-only catalogue without the table)."""
        try:
            return self.db.execute("SELECT count(*) FROM local_features").fetchone()[0]
        except sqlite3.OperationalError:
            return 0

    def count_files(self) -> int:
        return self.db.execute("SELECT count(*) FROM files").fetchone()[0]

    def image_ids(self) -> np.ndarray:
        """Every image id, ascending (int64)."""
        rows = self.db.execute("SELECT id FROM images ORDER BY id")
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Every image id and its descriptor as float32 ``(N, D)``."""
        rows = self.db.execute("SELECT id, vector FROM images ORDER BY id").fetchall()
        return _decode_vectors(rows)

    def vectors_by_id(self, image_ids: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """The ids among ``image_ids`` still in the catalogue and their float32 descriptors
        (absent ids are skipped: a store may ask for an image deleted meanwhile)."""
        sql = "SELECT id, vector FROM images WHERE id IN ({})"
        return _decode_vectors(list(self._in_query(sql, [int(i) for i in image_ids])))

    def vector_chunks(self, size: int = 20_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every ``(ids, float32 descriptors)`` in id order, ``size`` at a time (bounded
        memory for building stores over large collections)."""
        last = -1
        while rows := self.db.execute(
            "SELECT id, vector FROM images WHERE id > ? ORDER BY id LIMIT ?", (last, size)
        ).fetchall():
            last = rows[-1][0]
            yield _decode_vectors(rows)

    def vectors_for(self, image_ids: Sequence[int]) -> np.ndarray:
        """Descriptors of ``image_ids`` in that order, float32 (every id must exist)."""
        rows = dict(self._in_query("SELECT id, vector FROM images WHERE id IN ({})", image_ids))
        return np.stack([np.frombuffer(rows[i], VECTOR_DTYPE) for i in image_ids]).astype(np.float32)

    def labels_for(self, image_ids: Sequence[int]) -> dict[int, list[tuple[int, float]]]:
        out: dict[int, list[tuple[int, float]]] = {i: [] for i in image_ids}
        for image_id, class_id, prob in self._in_query(
            "SELECT image_id, class_id, prob FROM labels WHERE image_id IN ({}) "
            "ORDER BY image_id, rank",
            image_ids,
        ):
            out[image_id].append((class_id, prob))
        return out

    def locations_for(self, image_ids: Sequence[int]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {i: [] for i in image_ids}
        for image_id, location in self._in_query(
            "SELECT image_id, location FROM files WHERE image_id IN ({}) ORDER BY location",
            image_ids,
        ):
            out[image_id].append(read_location(location))
        return out

    def local_features_for(self, image_ids: Sequence[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Stored local features: ``{image_id: (points float32 (N, 2), descriptors uint8 (N, 32))}``;
        images indexed without them (or before they existed, opened read-only) are absent."""
        out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        try:
            rows = list(self._in_query(
                "SELECT image_id, points, descriptors FROM local_features WHERE image_id IN ({})",
                [int(i) for i in image_ids],
            ))
        except sqlite3.OperationalError:  # a read-only catalogue from before the table
            return out
        for image_id, points, descriptors in rows:
            pts = np.frombuffer(points, dtype=FEATURE_POINT_DTYPE).astype(np.float32).reshape(-1, 2)
            desc = np.frombuffer(descriptors, dtype=np.uint8).reshape(len(pts), DESCRIPTOR_BYTES)
            out[int(image_id)] = (pts, desc)
        return out

    def local_feature_ids(self) -> np.ndarray:
        """Ids of the images with stored local features, ascending."""
        try:
            rows = self.db.execute("SELECT image_id FROM local_features ORDER BY image_id")
            return np.fromiter((r[0] for r in rows), dtype=np.int64)
        except sqlite3.OperationalError:  # a read-only catalogue from before the table
            return np.zeros(0, dtype=np.int64)

    def visual_words(
        self, image_ids: Sequence[int] | None = None
    ) -> Iterator[tuple[int, np.ndarray | None, bytes]]:
        """Images with local features (all, or those of ``image_ids``): ``(image_id, words or
        None, descriptors blob)``; None for images indexed before words were stored (the
        caller quantises their descriptors instead)."""
        sql = "SELECT image_id, words, descriptors FROM local_features"
        try:
            if image_ids is None:
                rows = self.db.execute(sql)
            else:
                rows = self._in_query(sql + " WHERE image_id IN ({})", [int(i) for i in image_ids])
            for image_id, words, descriptors in rows:
                stored = np.frombuffer(words, dtype=WORD_DTYPE) if words is not None else None
                yield int(image_id), stored, descriptors
        except sqlite3.OperationalError:  # a read-only catalogue from before the table/column
            return

    def image_ids_with_labels(self, class_ids: Sequence[int]) -> LabelIds:
        """Images holding any of ``class_ids``, ascending, each once (also when the ids
        are queried in several chunks, as a broad word's hundreds of classes are)."""
        rows = self._in_query("SELECT DISTINCT image_id FROM labels WHERE class_id IN ({})", class_ids)
        return LabelIds(np.unique(np.fromiter((r[0] for r in rows), dtype=np.int64)), class_ids)

    def image_for_location(self, location: str) -> int | None:
        sql = "SELECT image_id FROM files WHERE location = ?"
        row = self.db.execute(sql, (stored_location(location),)).fetchone()
        return row[0] if row else None

    def label_histogram(self, top: int = 20) -> list[tuple[int, int]]:
        """Most common top-1 labels: ``(class_id, images)``."""
        return self.db.execute(
            "SELECT class_id, count(*) AS n FROM labels WHERE rank = 0 GROUP BY class_id "
            "ORDER BY n DESC, class_id LIMIT ?", (top,),
        ).fetchall()

    def _in_query(self, sql: str, values: Sequence) -> Iterator[tuple]:
        values = list(values)
        for start in range(0, len(values), 500):
            chunk = values[start : start + 500]
            yield from self.db.execute(sql.format(",".join("?" * len(chunk))), chunk)

    def settings_json(self) -> dict:
        return json.loads(self.get_meta("settings", "{}") or "{}")


def _decode_vectors(rows: Sequence[tuple[int, bytes]]) -> tuple[np.ndarray, np.ndarray]:
    """``(id, blob)`` rows as int64 ids and a float32 ``(N, D)`` matrix (``(0, 0)`` if none)."""
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=VECTOR_DTYPE)
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    return ids, matrix.reshape(len(rows), -1).astype(np.float32)
