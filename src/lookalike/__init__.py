"""lookalike: reverse image search for your own image collections, offline on a CPU."""

from .api import Index  # noqa: E402
from .errors import LookalikeError  # noqa: E402
from .query.options import SearchOptions  # noqa: E402
from .query.results import Match, SearchResult  # noqa: E402
from .settings import Settings  # noqa: E402
from .version import __version__  # noqa: E402

__all__ = [
    "Index", "LookalikeError", "Match", "SearchOptions", "SearchResult", "Settings", "__version__",
]
