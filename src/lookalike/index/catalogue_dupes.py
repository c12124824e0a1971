"""The catalogue's statements for duplicate finding (:mod:`lookalike.dupes`): a part of
:class:`lookalike.index.catalogue.Catalogue` (which inherits them), like
:mod:`lookalike.index.catalogue_writes`.

* ``dupe_pairs``: the image pairs checked so far that may be duplicates (their descriptor
  cosine, inlier count and, for pairs that verified, the share of cells that moved once
  aligned: NULL when not measured), so a later run only checks the neighbourhoods of new images;
  ``dupe_state`` says what was checked, with which settings. Both are derived: losing them
  costs one full check.
* ``not_duplicates``: pairs a person said are not duplicates, by content hash, so the
  answer survives removing and re-indexing the files.

These writes do not move the catalogue generation: no image changes, so no derived file
(vector store, graph, word index) has anything to catch up with.
"""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections.abc import Iterable, Sequence

from ..errors import LookalikeError
from .schema import read_location

# One file of an image: (image_id, location, size, mtime_ns, width, height).
FileRow = tuple[int, str, int, int, int, int]
# A checked pair: (a, b, cosine, inliers, moved) with a < b; moved None when not measured.
PairRow = tuple[int, int, float, int, float | None]


class CatalogueDupes:
    """Reads and writes of ``dupe_pairs``, ``dupe_state`` and ``not_duplicates``."""

    db: sqlite3.Connection

    def images_with_several_files(self) -> list[int]:
        """Ids of the images (one content) that more than one file location holds."""
        rows = self.db.execute(
            "SELECT image_id FROM files GROUP BY image_id HAVING count(*) > 1 ORDER BY image_id")
        return [r[0] for r in rows]

    def file_rows(self, image_ids: Sequence[int]) -> list[FileRow]:
        """Every file of ``image_ids`` with its size, mtime and the image's pixel size."""
        rows = self._in_query(  # type: ignore[attr-defined]
            "SELECT f.image_id, f.location, f.size, f.mtime_ns, i.width, i.height FROM files f "
            "JOIN images i ON i.id = f.image_id WHERE f.image_id IN ({})", [int(i) for i in image_ids])
        return [(r[0], read_location(r[1]), *r[2:]) for r in rows]

    def dupe_state(self) -> dict[str, str]:
        """What the stored pairs cover ({} when nothing was checked, or opened read-only
        from before the table)."""
        try:
            return dict(self.db.execute("SELECT key, value FROM dupe_state"))
        except sqlite3.OperationalError:
            return {}

    def dupe_pairs(self) -> list[PairRow]:
        try:
            return self.db.execute("SELECT a, b, cosine, inliers, moved FROM dupe_pairs").fetchall()
        except sqlite3.OperationalError:
            return []

    def save_dupe_pairs(self, pairs: Iterable[PairRow], state: dict[str, str], *, clear: bool = False) -> None:
        """Store checked pairs and the state they bring the check to, in one transaction
        (an interrupted check resumes from the last one); ``clear`` drops older pairs first.
        Pairs of images removed meanwhile are skipped."""
        with self._immediate() as db:  # type: ignore[attr-defined]
            if clear:
                db.execute("DELETE FROM dupe_pairs")
                db.execute("DELETE FROM dupe_state")
            db.executemany(
                "INSERT OR REPLACE INTO dupe_pairs(a, b, cosine, inliers, moved) SELECT ?, ?, ?, ?, ? "
                "WHERE EXISTS (SELECT 1 FROM images WHERE id = ?) "
                "AND EXISTS (SELECT 1 FROM images WHERE id = ?)",
                [(a, b, float(c), int(n), None if m is None else float(m), a, b) for a, b, c, n, m in pairs])
            db.executemany("INSERT OR REPLACE INTO dupe_state(key, value) VALUES (?, ?)", state.items())

    def mark_not_duplicates(self, image_ids: Sequence[int]) -> int:
        """Record every pair among ``image_ids`` as not duplicates; returns the pairs new."""
        if len(set(image_ids)) < 2:
            raise LookalikeError("give at least two image ids (the images that are not duplicates)")
        hashes = dict(self._in_query(  # type: ignore[attr-defined]
            "SELECT id, hash FROM images WHERE id IN ({})", [int(i) for i in image_ids]))
        missing = [int(i) for i in image_ids if int(i) not in hashes]
        if missing:
            raise LookalikeError(f"no indexed image with id {missing[0]}")
        pairs = {tuple(sorted(p)) for p in itertools.combinations(set(hashes.values()), 2)}
        with self._immediate() as db:  # type: ignore[attr-defined]
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO not_duplicates(hash_a, hash_b, at) VALUES (?, ?, ?)",
                           [(a, b, time.time()) for a, b in sorted(pairs)])
            return db.total_changes - before

    def not_duplicate_pairs(self) -> set[tuple[int, int]]:
        """The pairs marked not duplicates whose images are indexed, as ``(a, b)`` ids, a < b."""
        try:
            rows = self.db.execute(
                "SELECT x.id, y.id FROM not_duplicates n JOIN images x ON x.hash = n.hash_a "
                "JOIN images y ON y.hash = n.hash_b")
            return {(min(a, b), max(a, b)) for a, b in rows}
        except sqlite3.OperationalError:
            return set()
