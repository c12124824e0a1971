"""ASGI middleware that guards every request: :class:`BodyLimit` (size), :class:`HostGuard`
(DNS rebinding) and :class:`SecurityHeaders` (browser hardening). Refusals are JSON errors."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException

from .errors import error_response


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` (413) before they are spooled to disk,
    whether or not the client sent a Content-Length."""

    def __init__(self, app: Any, max_bytes: int, upload_limit: int):
        self.app, self.max_bytes = app, max_bytes
        self.message = f"request too large: uploads are limited to {upload_limit:,} bytes"

    def _too_large(self) -> HTTPException:
        return HTTPException(413, self.message)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            exc = self._too_large()
            await error_response(exc.status_code, exc.detail)(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise self._too_large()  # FastAPI re-raises HTTPExceptions from body parsing
            return message

        await self.app(scope, limited_receive, send)


def host_name(header: str) -> str:
    """``Host`` header without its port: ``[::1]:8000`` -> ``[::1]``, ``a.b:80`` -> ``a.b``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[: header.find("]") + 1]
    return header.split(":", 1)[0]


class HostGuard:
    """Answer only to the expected host names (JSON 400 otherwise): on loopback this stops
    DNS rebinding, where a web page in the user's own browser reads their collection."""

    def __init__(self, app: Any, allowed: tuple[str, ...]):
        self.app, self.allowed = app, {name.lower() for name in allowed}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            host = host_name(dict(scope["headers"]).get(b"host", b"").decode("latin-1"))
            if host not in self.allowed:
                message = f"unexpected Host header '{host}': this server answers to {', '.join(sorted(self.allowed))}"
                await error_response(400, message)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class SecurityHeaders:
    """No MIME sniffing by browsers, no referrer leaks, no framing of the page."""

    HEADERS = (
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
    )

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers if scope["type"] == "http" else send)
