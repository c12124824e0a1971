"""The catalogue's tables, its format version, and the steps that bring older catalogues up to it.

A new catalogue is created at :data:`VERSION` from :data:`TABLES`. An older one, opened for
writing, runs each step of :data:`STEPS` newer than its version, in order, in one transaction
that also records the new version (:meth:`lookalike.index.catalogue.Catalogue.ensure_version`);
opened read-only, it is read as it is. A new format is one more step: write ``_to_3(db)``
(plain SQL that turns any format-2 catalogue into format 3), append ``(3, _to_3)`` to
``STEPS``, set ``VERSION = 3`` and give ``TABLES`` the new shape.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

VERSION = 3

# The shape of a catalogue at VERSION, one statement each (run inside a transaction).
TABLES = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS images (
        id INTEGER PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        vector BLOB NOT NULL,
        added_at REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS labels (
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        rank INTEGER NOT NULL,
        class_id INTEGER NOT NULL,
        prob REAL NOT NULL,
        PRIMARY KEY (image_id, rank)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS labels_by_class ON labels(class_id, image_id)",
    """CREATE TABLE IF NOT EXISTS files (
        id INTEGER PRIMARY KEY,
        location TEXT NOT NULL UNIQUE,
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        indexed_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS files_by_image ON files(image_id)",
    """CREATE TABLE IF NOT EXISTS local_features (
        image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
        points BLOB NOT NULL,
        descriptors BLOB NOT NULL,
        words BLOB
    )""",
    """CREATE TABLE IF NOT EXISTS failures (
        location TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        reason TEXT NOT NULL,
        at REAL NOT NULL
    )""",
)


def stored_version(db: sqlite3.Connection) -> int | None:
    """The format of a catalogue; None for a new, empty file."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        return None
    if not {"meta", "images"} <= tables:  # someone else's database: write nothing into it
        raise sqlite3.DatabaseError("no images table")
    # Before format 2, a catalogue made by Catalogue alone (not by Index) recorded none.
    row = db.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
    if row is not None and not str(row[0]).isdigit():
        raise sqlite3.DatabaseError(f"format_version {row[0]!r}")
    return int(row[0]) if row else 1


def _to_2(db: sqlite3.Connection) -> None:
    """Format 1 grew without version steps: ``local_features`` arrived after the first
    catalogues, then its ``words`` column (visual words). Add whichever is missing; rows
    stored before get no words, and their descriptors are quantised when the word index is
    built."""
    db.execute(
        "CREATE TABLE IF NOT EXISTS local_features ("
        "image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE, "
        "points BLOB NOT NULL, descriptors BLOB NOT NULL, words BLOB)"
    )
    columns = {row[1] for row in db.execute("PRAGMA table_info(local_features)")}
    if "words" not in columns:
        db.execute("ALTER TABLE local_features ADD COLUMN words BLOB")


def _to_3(db: sqlite3.Connection) -> None:
    """Format 3 stores a file name that is not valid UTF-8 (old disks, Samba shares) as a BLOB
    of its raw bytes in ``files.location`` and ``failures.location`` (:func:`stored_location`);
    format-2 readers would take such a value for text, so they must refuse it. No row changes:
    a format-2 catalogue holds only text locations."""


# (version it brings a catalogue to, step), oldest first.
STEPS: tuple[tuple[int, Callable[[sqlite3.Connection], None]], ...] = ((2, _to_2), (3, _to_3))


def stored_location(location: str) -> str | bytes:
    """A location as the catalogue stores it: TEXT when it is valid UTF-8, else a BLOB of
    its raw bytes. A file name is any bytes; Python gives the undecodable ones as lone
    surrogates (``os.fsdecode``), which SQLite's TEXT cannot hold. UNIQUE and ``=`` compare
    blobs byte by byte, so a name keeps its identity either way."""
    try:
        location.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(location)
    return location


def read_location(value: str | bytes) -> str:
    """A stored location as Python's ``str`` for it (the inverse of :func:`stored_location`)."""
    return os.fsdecode(value) if isinstance(value, bytes) else value


def upgrade(db: sqlite3.Connection) -> None:
    """Create a new catalogue, or run in order every step newer than its format, and record
    :data:`VERSION` (inside the caller's write transaction, so the version is read again
    under the lock: another process may have upgraded the file meanwhile)."""
    version = stored_version(db)
    if version is None:
        for statement in TABLES:
            db.execute(statement)
    elif version >= VERSION:
        return
    else:
        for target, step in STEPS:
            if version < target:
                step(db)
    db.execute(
        "INSERT INTO meta(key, value) VALUES('format_version', ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (str(VERSION),),
    )


# SQLite errors of a writable open that mean the file or its folder cannot be written.
CANNOT_WRITE = ("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_READONLY_DIRECTORY")


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    """A connection to the catalogue at ``path`` (any bytes a file name may hold: the URI
    escapes them).

    Read-only, a WAL catalogue needs its ``-shm`` file, which read-only media (or a full
    disk) cannot create: then ``immutable=1`` reads the file as it is, unless a ``-wal``
    file holds transactions that it would not see."""
    uri = "file:" + quote(os.fsencode(path))
    options = {"uri": True, "isolation_level": None, "check_same_thread": False}
    if not readonly:
        return sqlite3.connect(uri, **options)
    db = sqlite3.connect(uri + "?mode=ro", **options)
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.OperationalError:
        db.close()
        wal = Path(f"{path}-wal")
        if wal.exists() and wal.stat().st_size:  # immutable=1 would not see its transactions
            raise
        return sqlite3.connect(uri + "?mode=ro&immutable=1", **options)
