"""The ranking stages' common interface, in the spirit of faiss' index factory.

A query is ranked by a short chain of small objects (:class:`Stage`), described by a spec
string (:mod:`lookalike.query.spec`) and run in order by :class:`~lookalike.query.cascade.
Cascade`. Every stage reads the same two things: the :class:`Query` (its vector, its picture,
its filter) and the :class:`Collection` (the store, the neighbour graph, the word index, the
stored local features), and changes one :class:`Ranking`. No stage calls back into
:class:`lookalike.Index`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from ..embed.embedder import Embedder
    from ..index.graph import KnnGraph
    from ..index.transform import TransformedStore
    from ..index.words import InvertedFile
    from ..settings import Settings
    from ..verify import Features, Loader, Verifier


class Collection(Protocol):
    """What the stages may read of an index (:class:`lookalike.index.folder.IndexFolder`)."""

    settings: Settings
    embedder: Embedder

    @property
    def store(self) -> TransformedStore: ...

    def graph(self) -> KnnGraph:
        """The neighbour graph, current with the catalogue."""

    def word_index(self) -> InvertedFile:
        """The visual-word index, current with the catalogue."""

    @property
    def verifier(self) -> Verifier: ...

    def feature_loader(self, ids: list[int]) -> Loader:
        """A loader of the stored local features (or pictures) of ``ids``, read now."""


@dataclass
class Query:
    """One query as the stages see it.

    ``vector`` is in the store's space. ``exclude`` is an indexed image left out of its own
    ranking (evaluation); ``allowed`` restricts candidates (label filters, routing);
    ``picture`` loads the query's picture for verification (None: it has none).
    """

    vector: np.ndarray
    k: int
    allowed: np.ndarray | None = None
    exclude: int | None = None
    picture: Callable[[], Image.Image | None] = lambda: None
    _image: Image.Image | None = field(default=None, repr=False)
    _features: Features | None = field(default=None, repr=False)
    _loaded: bool = field(default=False, repr=False)
    # Cached by the verification stages: the visual-word search ``(k, ids, scores)`` and
    # whether the gate (:func:`lookalike.query.verification.may_hold_copy`) let them run.
    _word_hits: tuple[int, np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    _gate: bool | None = field(default=None, repr=False)

    @property
    def skip(self) -> int:
        """Extra matches asked for, since the excluded image may be among them."""
        return 0 if self.exclude is None else 1

    def image(self) -> Image.Image | None:
        if not self._loaded:
            self._image, self._loaded = self.picture(), True
        return self._image

    def features(self, collection: Collection) -> Features | None:
        """The query picture's local features (extracted once, shared by the stages)."""
        from ..verify import extract

        if self._features is None and self.image() is not None:
            self._features = extract(self.image(), collection.settings.verify)
        return self._features


@dataclass
class Ranking:
    """A query's ranking as it passes through the stages.

    ``ids``/``scores`` are the first (cosine) search, best first, the excluded image left
    out; ``order`` is the current order; ``inliers`` holds the spatial verification counts
    of every candidate checked, in the order they were checked.
    """

    ids: np.ndarray
    scores: np.ndarray
    order: np.ndarray
    inliers: dict[int, int] = field(default_factory=dict)
    min_inliers: int = 0  # VerifyParams.min_inliers: what counts as verified

    def verified_first(self) -> np.ndarray:
        """``order`` with the verified candidates (``min_inliers`` or more) moved to the
        front, most inliers first (ties keep the order they were checked in)."""
        verified = [i for i, n in self.inliers.items() if n >= self.min_inliers]
        if not self.inliers or not verified:
            return self.order
        verified.sort(key=lambda i: -self.inliers[i])
        moved = set(verified)
        rest = [int(i) for i in self.order if int(i) not in moved]
        return np.asarray(verified + rest, dtype=np.int64)


class Stage(Protocol):
    """One step of a query pipeline. ``spec`` is how the stage is written in a spec string."""

    kind: str  # "first", "rerank" or "verify": where the stage belongs in a pipeline

    @property
    def spec(self) -> str: ...

    def depth(self, collection: Collection) -> int:
        """How many matches of the first search this stage needs."""

    def apply(self, query: Query, ranking: Ranking, collection: Collection) -> None:
        """Change ``ranking`` in place."""
