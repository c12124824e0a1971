"""What one query asks for: :class:`SearchOptions`, the only carrier of per-query options.

The CLI, the REST API, the web page and :mod:`lookalike.evaluate` all build one of these; each
option has exactly one name everywhere (``--label`` / ``label=`` / ``?label=``). ``None``
means "the index's :class:`~lookalike.settings.Settings`": the pipeline in
``Settings.pipeline``, changed by the shorthands ``rerank``, ``verify``, ``words`` and
``regions`` (see :mod:`lookalike.query.spec`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from typing import Any

from ..errors import LookalikeError

ROUTES: tuple[str, ...] = ("global", "categories")
RERANK_METHODS: tuple[str, ...] = ("auto", "diffusion", "qe", "none")
SUGGESTIONS = 10  # tag-search words suggested when no limit is given


@dataclass(frozen=True)
class SearchOptions:
    """Per-query options. Every field's default is the one the CLI and REST API show.

    Attributes:
        k: How many matches (any number up to the collection size).
        label: Keep only images whose stored top labels include a class one of these words
            names (a single word or several): an ImageNet label, a synonym, a plural or a
            broader word such as "dog" (:mod:`lookalike.embed.tags`).
        route: ``global`` searches every image; ``categories`` only images that share a
            predicted ImageNet category with the query (how the 2019 script searched),
            falling back to every image when that leaves fewer than ``k``.
        min_score: Drop matches whose cosine similarity to the query is below this.
        pipeline: The ranking stages as a spec string such as
            ``"cosine,auto,verify:20,words:10,regions:10"`` (default: ``Settings.pipeline``;
            :mod:`lookalike.query.spec`).
        rerank: Shorthand that replaces the pipeline's re-ranking stage: ``auto``,
            ``diffusion``, ``qe`` or ``none``.
        verify: Shorthand for the number of first matches spatially verified; 0 turns
            verification off, with its word and region candidates.
        words: Shorthand for the number of visual-word candidates verified; 0: none.
        regions: Shorthand for the number of regional candidates verified when no match is
            a sure copy; 0: none.
    """

    k: int = 10
    label: tuple[str, ...] | None = None
    route: str = "global"
    min_score: float | None = None
    pipeline: str | None = None
    rerank: str | None = None
    verify: int | None = None
    words: int | None = None
    regions: int | None = None

    def __post_init__(self) -> None:
        label = self.label
        if isinstance(label, str):  # one name, not a sequence of letters
            label = (label,)
        if label is not None:
            label = tuple(name.strip() for name in label if name and name.strip()) or None
        object.__setattr__(self, "label", label)
        if int(self.k) < 1:
            raise LookalikeError("k must be at least 1")
        if self.route not in ROUTES:
            raise LookalikeError(f"unknown route '{self.route}'; choose one of: {', '.join(ROUTES)}")
        if self.rerank is not None and self.rerank not in RERANK_METHODS:
            raise LookalikeError(
                f"unknown re-ranking '{self.rerank}'; choose one of: {', '.join(RERANK_METHODS)}"
            )
        for name in ("verify", "words", "regions"):
            value = getattr(self, name)
            if value is not None and int(value) < 0:
                raise LookalikeError(f"{name} must be 0 (off) or a number of candidates to check")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every option's name, as the CLI, the REST API and :meth:`with_` spell it."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def default(cls, name: str) -> Any:
        """The default of one option (help texts read it from here)."""
        return next(f.default for f in fields(cls) if f.name == name)

    def with_(self, **changes: Any) -> SearchOptions:
        """A copy with some options changed; ``None`` values leave an option as it is."""
        unknown = sorted(set(changes) - set(self.names()))
        if unknown:
            raise LookalikeError(
                f"unknown search option {', '.join(unknown)}; options are: {', '.join(self.names())}"
            )
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_any(cls, options: SearchOptions | None = None, **changes: Any) -> SearchOptions:
        """``options`` (or the defaults) with ``changes`` applied."""
        return (options or cls()).with_(**changes)


def as_labels(value: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """A label option as a tuple of names (a single string is one name)."""
    return SearchOptions(label=value if value is None or isinstance(value, str) else tuple(value)).label
