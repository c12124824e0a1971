"""lookalike: reverse image search for your own image collections, offline on a CPU.

The public names are imported on first use (PEP 562), so ``lookalike --help`` and other
light entry points do not load NumPy, ONNX Runtime and the index code.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:
    from .api import Index
    from .errors import LookalikeError
    from .query.options import SearchOptions
    from .query.results import Match, SearchResult
    from .settings import Settings

_WHERE = {
    "Index": ".api",
    "LookalikeError": ".errors",
    "SearchOptions": ".query.options",
    "Match": ".query.results",
    "SearchResult": ".query.results",
    "Settings": ".settings",
}

__all__ = [
    "Index", "LookalikeError", "Match", "SearchOptions", "SearchResult", "Settings", "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(import_module(_WHERE[name], __name__), name)
        globals()[name] = value  # next time a plain attribute
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
