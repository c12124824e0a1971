"""Which images a query may match: label filters and category routing.

A label filter takes the words of tag search (:mod:`lookalike.embed.tags`): an exact
ImageNet class name, a synonym, a plural or a broader word ("dog": every dog breed).

``route="categories"`` is how the 2019 script searched: only images sharing one of the
query's predicted ImageNet categories. Where that leaves fewer than ``k`` images the whole
collection is searched instead (the script raised an error there), and the result says so.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..embed.tags import resolve
from ..index.catalogue import Catalogue


def resolve_label(name: str) -> frozenset[int]:
    """The class ids a label filter word names (case-insensitive), or an error that lists
    the closest known words."""
    return resolve(name, "label").classes


def label_classes(names: Sequence[str] | None) -> frozenset[int]:
    """Every class id the label filter ``names`` name together (empty: no filter)."""
    return frozenset().union(*(resolve_label(n) for n in names or ()))


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
        allowed = catalogue.image_ids_with_labels(sorted(label_classes(label)))
    if route == "categories" and query_label_ids is not None:
        routed = catalogue.image_ids_with_labels([int(c) for c in query_label_ids])
        routed = routed if allowed is None else np.intersect1d(allowed, routed)
        if len(routed) >= k:
            return routed, route
        return allowed, "categories+global"
    return allowed, route
