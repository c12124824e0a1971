"""lookalike: reverse image search for your own image collections, offline on a CPU."""

__version__ = "0.1.0"

from .api import Index  # noqa: E402
from .errors import LookalikeError  # noqa: E402
from .query.options import SearchOptions  # noqa: E402
from .query.results import Match, SearchResult  # noqa: E402
from .settings import Settings  # noqa: E402

__all__ = [
    "Index", "LookalikeError", "Match", "SearchOptions", "SearchResult", "Settings", "__version__",
]
