"""Every failure as JSON ``{"error": "..."}`` with a status the page can show as is."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..embed.tags import HINT as CLI_TAGS_HINT
from ..errors import DiskFullError, LookalikeError, storage_error

API_TAGS_HINT = "GET /api/tags lists the known words"  # the CLI's hint, as the API says it


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    """The one shape of every error the server sends (a hint to run a command becomes the
    endpoint that answers the same)."""
    message = message.replace(CLI_TAGS_HINT, API_TAGS_HINT)
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":  # pydantic says "1: JSON decode error"
            parts.append("the request body is not valid JSON")
            continue
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", ""))
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Every failure becomes ``{"error": message}`` with a meaningful status code."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, _validation_message(exc))

    @app.exception_handler(LookalikeError)  # ImageError included: a bad image is a bad request
    async def lookalike_error(_: Request, exc: LookalikeError) -> JSONResponse:
        return error_response(400, str(exc))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # A full disk, read-only media or a damaged catalogue: the CLI's one line, 507/503.
        known = storage_error(exc, request.app.state.lookalike.index.path)
        if known is not None:
            return error_response(507 if isinstance(known, DiskFullError) else 503, str(known))
        return error_response(500, f"internal error ({type(exc).__name__})")
