"""Which images a query may match: label filters and category routing.

``route="categories"`` is how the 2019 script searched: only images sharing one of the
query's predicted ImageNet categories. Where that leaves fewer than ``k`` images the whole
collection is searched instead (the script raised an error there), and the result says so.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..embed.labels import label_ids
from ..errors import LookalikeError
from ..index.catalogue import Catalogue


def resolve_label(name: str) -> int:
    """Class id of an ImageNet label name (case-insensitive), with a helpful error."""
    key = name.strip().lower()
    ids = label_ids()
    if key in ids:
        return ids[key]
    close = sorted(n for n in ids if key in n)[:5]
    hint = f"; did you mean: {', '.join(close)}" if close else "; `lookalike info` lists labels"
    raise LookalikeError(f"unknown label '{name}'{hint}")


def candidate_ids(
    catalogue: Catalogue,
    *,
    label: Sequence[str] | None = None,
    route: str = "global",
    query_label_ids: np.ndarray | None = None,
    k: int = 0,
) -> tuple[np.ndarray | None, str]:
    """Image ids a query may match (None: all), and the route that was taken."""
    allowed: np.ndarray | None = None
    if label:
        allowed = catalogue.image_ids_with_labels([resolve_label(n) for n in label])
    if route == "categories" and query_label_ids is not None:
        routed = catalogue.image_ids_with_labels([int(c) for c in query_label_ids])
        routed = routed if allowed is None else np.intersect1d(allowed, routed)
        if len(routed) >= k:
            return routed, route
        return allowed, "categories+global"
    return allowed, route
