"""What a search returns: :class:`SearchResult` with its :class:`Match` es, best first."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Match:
    """One result. ``labels`` are the stored ImageNet labels of the match, most likely first."""

    rank: int
    path: str
    score: float
    labels: list[str]
    image_id: int
    # Homography inliers when spatial verification checked this match (None: not checked).
    inliers: int | None = None

    def as_dict(self) -> dict:
        """The stable JSON fields (``inliers`` is Python-API only, so the schema is unchanged)."""
        return {"rank": self.rank, "path": self.path, "score": round(self.score, 6), "labels": self.labels}


@dataclass
class SearchResult:
    """The matches for one query, best first.

    ``route`` says how candidates were chosen: ``global`` (every image), ``categories``
    (images sharing a predicted ImageNet category with the query) or ``categories+global``
    (too few category matches, so the global ranking was used instead).
    """

    query: str
    matches: list[Match] = field(default_factory=list)
    query_labels: list[str] = field(default_factory=list)
    route: str = "global"

    def as_dict(self) -> dict:
        """The stable JSON schema: ``{"query": str, "matches": [{rank, path, score, labels}]}``."""
        return {"query": self.query, "matches": [m.as_dict() for m in self.matches]}
