"""What a search returns: :class:`SearchResult` with its :class:`Match` es, best first."""

from __future__ import annotations

import base64
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # NumPy and the label list load on first use: the CLI starts faster
    import numpy as np

    from ..index.catalogue import Catalogue
    from .cascade import Ranked


REPR_MATCHES = 5  # matches a SearchResult's repr lists


def shown_path(location: str) -> str:
    """A location as text any output can carry: a file name that is not valid UTF-8 (Python
    holds its undecodable bytes as lone surrogates) with those bytes escaped as ``\\xNN``."""
    if not _undecodable(location):
        return location
    return os.fsencode(location).decode("utf-8", "backslashreplace")


def path_fields(location: str, key: str = "path") -> dict[str, str]:
    """``{key: shown path}``, plus ``key_bytes``: base64 of the raw bytes, only for a name
    that is not valid UTF-8 (so JSON stays strict and the exact name can be recovered)."""
    fields = {key: shown_path(location)}
    if _undecodable(location):
        fields[f"{key}_bytes"] = base64.b64encode(os.fsencode(location)).decode("ascii")
    return fields


def _undecodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


COPY, SIMILAR = "copy", "similar"
RAISED = "similar, ranked up by its likeness to the top matches"


@dataclass(frozen=True)
class Match:
    """One result. ``labels`` are the stored ImageNet labels of the match, most likely first;
    ``matched_labels`` those of them that a label filter or a text query asked for.

    ``kind`` is ``copy`` when spatial verification found the match to show the same picture
    as the query (copies come first, most matching points first), else ``similar``;
    ``why`` says so in words for people (why the match is where it is)."""

    rank: int
    path: str
    score: float
    labels: list[str]
    image_id: int
    # Matching points when spatial verification checked this match (None: not checked).
    inliers: int | None = None
    matched_labels: list[str] = field(default_factory=list)
    kind: str = SIMILAR
    why: str = SIMILAR

    def shown_labels(self, n: int = 3) -> list[str]:
        """The first ``n`` labels, and any matched label after them: a filter that kept
        this match on its fifth label shows that label."""
        return self.labels[:n] + [label for label in self.matched_labels if label not in self.labels[:n]]

    def as_dict(self) -> dict:
        """The stable JSON fields, ``kind``, ``inliers`` and ``why`` included; ``path_bytes``
        only for a file name that is not valid UTF-8 (:func:`path_fields`);
        ``matched_labels`` only when a label filter or a text query chose the match."""
        fields = {"rank": self.rank, **path_fields(self.path), "score": round(self.score, 6),
                  "labels": self.labels, "kind": self.kind, "inliers": self.inliers, "why": self.why}
        if self.matched_labels:
            fields["matched_labels"] = self.matched_labels
        return fields

    def __repr__(self) -> str:
        labels = ", ".join(self.shown_labels())
        return f"<Match #{self.rank} {self.score:.3f} {shown_path(self.path)!r} [{labels}]>"


@dataclass
class SearchResult:
    """The matches for one query, best first.

    ``route`` says how candidates were chosen: ``global`` (every image), ``categories``
    (images sharing a predicted ImageNet category with the query), ``categories+global``
    (too few category matches, so the global ranking was used instead) or ``text`` (a tag
    search: ``query_labels`` are then the words read from the text).
    """

    query: str
    matches: list[Match] = field(default_factory=list)
    query_labels: list[str] = field(default_factory=list)
    route: str = "global"

    def as_dict(self) -> dict:
        """The stable JSON schema: ``{"query": str, "matches": [{rank, path, score, labels}]}``."""
        return {"query": shown_path(self.query), "matches": [m.as_dict() for m in self.matches]}

    def __repr__(self) -> str:
        """The query and its first matches, one a line (the REPL's view of a search)."""
        shown = [f"  {m!r}" for m in self.matches[:REPR_MATCHES]]
        if len(self.matches) > REPR_MATCHES:
            shown.append(f"  ... {len(self.matches) - REPR_MATCHES} more")
        head = (f"<SearchResult {shown_path(self.query)!r} ({self.route}): "
                f"{len(self.matches)} matches")
        return "\n".join([head + (":" if shown else ""), *shown]) + ">"


def explain(ranked: Ranked) -> dict[int, tuple[str, str]]:
    """``image id -> (kind, why)`` for one ranking: a verified copy is "same picture, N
    matching points"; a similar image placed above one with a higher score (re-ranking by
    the neighbour graph or query expansion put it there) says so."""
    out: dict[int, tuple[str, str]] = {}
    best_below = float("-inf")
    for image_id, score in reversed(ranked.pairs()):
        if ranked.is_copy(image_id):
            points = ranked.inliers[image_id]
            out[image_id] = (COPY, f"same picture, {points} matching points")
            continue
        out[image_id] = (SIMILAR, RAISED if score < best_below else SIMILAR)
        best_below = max(best_below, score)
    return out


def search_results(
    catalogue: Catalogue, names: Sequence[str], ranked: Sequence[Ranked],
    label_ids: np.ndarray, k: int, matched: Collection[int] = frozenset(),
) -> list[SearchResult]:
    """Rankings as results: one :class:`Match` per file location of each ranked image, at
    most ``k`` (two copies of one photo are two results with the same score). ``matched``:
    the class ids a label filter or text query asked for (each match's ``matched_labels``)."""
    from ..embed.labels import imagenet_labels

    label_names = imagenet_labels()
    results = []
    for name, one, query_labels in zip(names, ranked, label_ids, strict=False):
        image_ids = one.ids.tolist()
        locations = catalogue.locations_for(image_ids)
        stored = catalogue.labels_for(image_ids)
        reasons = explain(one)
        matches: list[Match] = []
        for image_id, score in one.pairs():
            labels = [label_names[c] for c, _ in stored.get(image_id, [])]
            chosen = [label_names[c] for c, _ in stored.get(image_id, []) if c in matched]
            for location in locations.get(image_id, [])[: max(k - len(matches), 0)]:
                matches.append(Match(
                    len(matches) + 1, location, score, labels, image_id,
                    one.inliers.get(image_id), chosen, *reasons[image_id],
                ))
        results.append(SearchResult(
            query=name, matches=matches, query_labels=[label_names[c] for c in query_labels],
            route=one.route,
        ))
    return results
