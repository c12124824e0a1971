"""The catalogue's reads of stored labels by class, for tag search and tag suggestions: a
part of :class:`lookalike.index.catalogue.Catalogue` (which inherits them), like
:mod:`.catalogue_writes`. The ``labels_by_class`` index answers each of them."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import numpy as np


class CatalogueLabels:
    """Which images hold which ImageNet labels, and how likely."""

    db: sqlite3.Connection  # and ``_in_query``: the Catalogue's

    def label_probs(self, class_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every stored label among ``class_ids``: image ids, class ids and probabilities."""
        rows = list(self._in_query(
            "SELECT image_id, class_id, prob FROM labels WHERE class_id IN ({})",
            [int(c) for c in class_ids],
        ))
        image_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        classes = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
        probs = np.fromiter((r[2] for r in rows), dtype=np.float64, count=len(rows))
        return image_ids, classes, probs

    def images_per_class(self) -> dict[int, int]:
        """How many images hold each class among their stored labels."""
        return dict(self.db.execute("SELECT class_id, count(*) FROM labels GROUP BY class_id"))

    def labels_beyond(self, rank: int) -> bool:
        """Whether any image holds more than ``rank`` labels (a scan of the label table:
        for the rare checks that already read every id, such as a store's synchronisation)."""
        return self.db.execute("SELECT 1 FROM labels WHERE rank >= ? LIMIT 1", (rank,)).fetchone() is not None
