"""Images indexed by URL, as the web page shows them: fetched by the server with the safe
fetch (the page's Content-Security-Policy admits only its own origin's images, and the
server's URL rules apply: ``--allow-private-urls``), and served only while the content at
the URL is still the image that was indexed, as for files."""

from __future__ import annotations

from fastapi import HTTPException

from ..errors import ImageError
from ..fetch import fetch_url
from ..images import is_url
from ..index.catalogue import Catalogue
from ..indexing import hash_bytes
from .state import ServerState, known_locations


def remote_locations(state: ServerState, image_id: int) -> list[str]:
    """The URLs of an image indexed only by reference ([] when it has a file: the file is
    served); 404 for an unknown id."""
    with state.reading() as index:
        locations = known_locations(index, image_id)
    return locations if all(is_url(loc) for loc in locations) else []


def fetch_indexed(state: ServerState, image_id: int, urls: list[str]) -> tuple[str, bytes]:
    """The first of ``urls`` whose content is still image ``image_id``: ``(url, bytes)``;
    404 (saying why) when none is."""
    config, why = state.config, ""
    for url in urls:
        try:
            _, data, _ = fetch_url(url, timeout=config.url_timeout, max_bytes=config.max_upload_bytes,
                                   allow_private=config.allow_private_urls)
        except ImageError as exc:
            why = str(exc).replace("pass allow_private=True", "start the server with --allow-private-urls")
            continue
        with state.reading() as index:
            if Catalogue.image_id_for_hash(index.catalogue.db, hash_bytes(data)) == image_id:
                return url, data
        why = "the image at its URL changed since it was indexed; re-index"
    raise HTTPException(404, why)
