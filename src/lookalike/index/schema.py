"""The catalogue's tables, its format version, and the steps that bring older catalogues up to it.

A new catalogue is created at :data:`VERSION` from :data:`TABLES`. An older one, opened for
writing, runs each step of :data:`STEPS` newer than its version, in order, in one transaction
that also records the new version (:meth:`lookalike.index.catalogue.Catalogue.ensure_version`);
opened read-only, it is read as it is. A new format is one more step: write ``_to_6(db)``
(plain SQL that turns any format-5 catalogue into format 6), append ``(6, _to_6)`` to
``STEPS``, set ``VERSION = 6`` and give ``TABLES`` the new shape.

Also here: how the file is opened (:func:`connect`: read-only media included), how a location
is stored (:func:`stored_location`), and how a damaged catalogue is examined and read back
row by row (:func:`findings`, :func:`readable_rows`, :func:`sound`, :func:`write_catalogue`), for
:mod:`lookalike.index.check`.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import numpy as np

from .formats import DESCRIPTOR_BYTES, FEATURE_POINT_DTYPE, WORD_DTYPE

VERSION = 7

# The validators an indexed URL's server sent, for conditional re-fetches (format 4).
URL_SOURCES = """CREATE TABLE IF NOT EXISTS url_sources (
    location TEXT PRIMARY KEY,
    etag TEXT,
    last_modified TEXT,
    checked_at REAL NOT NULL
)"""

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
    URL_SOURCES,
)
# Format 5: duplicate finding (lookalike.dupes). Pairs a person said are not duplicates, by
# content hash (they survive removing and re-indexing the files); the pairs checked so far
# and what was checked (derived state, rebuilt when lost).
DUPES_TABLES = (
    """CREATE TABLE IF NOT EXISTS not_duplicates (
        hash_a TEXT NOT NULL,
        hash_b TEXT NOT NULL,
        at REAL NOT NULL,
        UNIQUE (hash_a, hash_b)
    )""",
    """CREATE TABLE IF NOT EXISTS dupe_pairs (
        a INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        b INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        cosine REAL NOT NULL,
        inliers INTEGER NOT NULL,
        moved REAL,
        PRIMARY KEY (a, b)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS dupe_pairs_by_b ON dupe_pairs(b)",
    "CREATE TABLE IF NOT EXISTS dupe_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
TABLES += DUPES_TABLES


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


def _to_4(db: sqlite3.Connection) -> None:
    """Format 4 remembers, per indexed URL, the validators its server sent (``ETag``,
    ``Last-Modified``), so a re-run asks only whether it changed (:mod:`lookalike.sources`).
    Older catalogues have no URL metadata: their URLs are fetched once in full."""
    db.execute(URL_SOURCES)


def _to_5(db: sqlite3.Connection) -> None:
    """Format 5 adds the tables of duplicate finding (:data:`DUPES_TABLES`), empty."""
    for statement in DUPES_TABLES:
        db.execute(statement)


def _to_6(db: sqlite3.Connection) -> None:
    """Format 6 keeps, per checked pair, the share of cells that moved once the two pictures
    are aligned (``dupe_pairs.moved``, :mod:`lookalike.dupes.pixels`). The stored pairs are
    derived: they are dropped, and the next ``dupes`` checks every image afresh."""
    db.execute("DROP TABLE IF EXISTS dupe_pairs")
    db.execute("DELETE FROM dupe_state")
    for statement in DUPES_TABLES:
        db.execute(statement)


def _to_7(db: sqlite3.Connection) -> None:
    """Format 7 stores each image's pixel size at full resolution. Before, a JPEG decoded
    at a reduced scale stored the reduced size, and which rows did cannot be told apart:
    every size becomes 0 x 0, unknown, which readers take from the file's header instead."""
    db.execute("UPDATE images SET width = 0, height = 0")


# (version it brings a catalogue to, step), oldest first.
STEPS: tuple[tuple[int, Callable[[sqlite3.Connection], None]], ...] = (
    (2, _to_2), (3, _to_3), (4, _to_4), (5, _to_5), (6, _to_6), (7, _to_7))


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


# --- a damaged catalogue: what SQLite finds, and what can still be read ---------------------
# The columns a recovery copies from each table, parents first.
COLUMNS = {
    "meta": ("key", "value"),
    "images": ("id", "hash", "width", "height", "vector", "added_at"),
    "labels": ("image_id", "rank", "class_id", "prob"),
    "files": ("id", "location", "image_id", "size", "mtime_ns", "indexed_at"),
    "local_features": ("image_id", "points", "descriptors", "words"),
    "failures": ("location", "size", "mtime_ns", "reason", "at"),
    "not_duplicates": ("hash_a", "hash_b", "at"),
    "url_sources": ("location", "etag", "last_modified", "checked_at"),
}
_FIRST_KEY = -(2**63)


def findings(db: sqlite3.Connection, limit: int = 20) -> list[str]:
    """SQLite's findings on a catalogue, one line each: damaged pages and indexes
    (``PRAGMA integrity_check``) and rows pointing at missing images; [] when it is whole."""
    found = [line for (text,) in db.execute(f"PRAGMA integrity_check({int(limit)})")
             for line in str(text).splitlines() if line != "ok" and not line.startswith("***")]
    for table, _, parent, _ in db.execute("PRAGMA foreign_key_check").fetchmany(limit):
        found.append(f"a row of {table} points at a missing row of {parent}")
    return found


def readable_rows(
    db: sqlite3.Connection, table: str, key: str = "rowid", chunk: int = 500
) -> tuple[list[tuple], list[tuple[int, int | None]]]:
    """The rows of ``table`` (its :data:`COLUMNS`) that can still be read, in ``key`` order,
    and the key ranges that could not (``(first, last)``; ``last`` None: to the end).

    Rows are read by key range, so a damaged page loses only its own rows: a read that
    fails is retried row by row, then the next key that reads is found by probing forward
    (doubling, then bisecting)."""
    # From a key on (>=), never after one (>): a seek straight to the key reads no page
    # before it, which may be the damaged one.
    sql = f"SELECT {key}, {_select(db, table)} FROM {table} WHERE {key} >= ? ORDER BY {key} LIMIT ?"
    rows: list[tuple] = []
    gaps: list[tuple[int, int | None]] = []
    start = _FIRST_KEY
    while True:
        got = _try(db, sql, (start, chunk)) or _try(db, sql, (start, 1))
        if got is None:
            following = _next_readable(db, sql, start)
            gaps.append((start, None if following is None else following - 1))
            if following is None:
                return rows, gaps
            start = following
            continue
        if not got or got[-1][0] < start:
            return rows, gaps
        rows.extend(row[1:] for row in got)
        start = got[-1][0] + 1


def rows_of_images(
    db: sqlite3.Connection, table: str, image_ids: list[int]
) -> tuple[dict[int, list[tuple]], list[int]]:
    """The rows of a per-image table (labels, local_features) of each image, and the ids
    whose rows could not be read. A table the catalogue does not have gives no rows."""
    try:
        sql = f"SELECT {_select(db, table)} FROM {table} WHERE image_id = ?"
    except LookupError:
        return {}, []
    found: dict[int, list[tuple]] = {}
    unreadable: list[int] = []
    for image_id in image_ids:
        got = _try(db, sql, (image_id,))
        if got is None:
            unreadable.append(image_id)
        elif got:
            found[image_id] = got
    return found, unreadable


def sound(table: str, row: tuple, vector_bytes: int = 0) -> bool:
    """Whether a row read back (:data:`COLUMNS` order) holds values of its columns' types
    and sizes: a damaged page may also give rows that read but hold garbage. ``vector_bytes``
    is the size of an image's descriptor."""
    if table == "images":
        image_id, content_hash, width, height, vector, added_at = row
        return (isinstance(content_hash, str) and len(content_hash) == 32
                and all(isinstance(v, int) for v in (image_id, width, height))
                and isinstance(vector, bytes) and len(vector) == vector_bytes
                and isinstance(added_at, (int, float)))
    if table == "files":
        file_id, location, image_id, size, mtime_ns, _ = row
        return (isinstance(location, (str, bytes)) and len(location) > 0
                and all(isinstance(v, int) for v in (file_id, image_id, size, mtime_ns)))
    if table == "local_features":
        _, points, descriptors, words = row
        point = 2 * np.dtype(FEATURE_POINT_DTYPE).itemsize
        count = len(points) // point if isinstance(points, bytes) else -1
        return (count >= 0 and len(points) % point == 0 and isinstance(descriptors, bytes)
                and len(descriptors) == DESCRIPTOR_BYTES * count
                and (words is None or len(words) == np.dtype(WORD_DTYPE).itemsize * count))
    return True


def write_catalogue(path: Path, tables: dict[str, list[tuple]]) -> None:
    """A new catalogue at ``path`` (format :data:`VERSION`) holding ``tables``' rows, each in
    :data:`COLUMNS` order, written in one transaction."""
    db = connect(path)
    try:
        db.execute("BEGIN")
        for statement in TABLES:
            db.execute(statement)
        for table, rows in tables.items():
            columns = COLUMNS[table]
            db.executemany(
                f"INSERT INTO {table}({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                rows,
            )
        db.execute("COMMIT")
    finally:
        db.close()


def _select(db: sqlite3.Connection, table: str) -> str:
    """``table``'s :data:`COLUMNS` as a select list (NULL for a column an older format
    lacks); LookupError when the table is missing."""
    present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
    if not present:
        raise LookupError(table)
    return ", ".join(c if c in present else "NULL" for c in COLUMNS[table])


def _try(db: sqlite3.Connection, sql: str, args: tuple) -> list[tuple] | None:
    """The rows, or None where SQLite finds the pages damaged."""
    try:
        return db.execute(sql, args).fetchall()
    except sqlite3.DatabaseError:
        return None


def _next_readable(db: sqlite3.Connection, sql: str, start: int) -> int | None:
    """The first key above ``start`` from which ``sql`` reads a whole row again (None: none
    does): probing forward in doubling steps, then bisecting back."""
    failed, step = start, 1
    while (found := _try(db, sql, (start + step, 1))) is None:
        failed, step = start + step, step * 2
        if start + step >= 2**62:
            return None
    good = start + step
    while good - failed > 1:  # the smallest start that reads
        middle = (good + failed) // 2
        if (got := _try(db, sql, (middle, 1))) is None:
            failed = middle
        else:
            good, found = middle, got
    return found[0][0] if found else None
