"""What ``lookalike serve`` allows and the request limits it enforces, in one place."""

from __future__ import annotations

from dataclasses import dataclass

MAX_K = 500  # most matches one request may ask for
MAX_VERIFY = 100  # most first matches one request may have spatially verified
MAX_WORDS = 100  # most visual-word candidates one request may have verified
MAX_REGIONS = 50  # most regional candidates one request may have verified
MAX_IMAGE_ID = 2**63 - 1  # SQLite's integer range; larger ids would raise OverflowError
MULTIPART_OVERHEAD = 64 * 1024  # headers and boundaries around an uploaded file


@dataclass(frozen=True)
class ServerConfig:
    """What ``lookalike serve`` lets a client do, and how much it may send.

    ``token`` enables the write endpoints (None: read-only server). ``allowed_hosts`` guards
    against DNS rebinding when bound to loopback (None: any ``Host`` header). ``watch``:
    folders indexed at start and kept in sync while the server runs (``serve --watch``).
    """

    token: str | None = None
    allow_private_urls: bool = False
    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000
    url_timeout: float = 10.0
    thumbnail_size: int = 320
    thumbnail_cache: int = 1024
    allowed_hosts: tuple[str, ...] | None = None
    watch: tuple[str, ...] = ()
