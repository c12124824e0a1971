"""The API's description at ``/openapi.json``: every error as :class:`ErrorOut` with the
status codes the server really sends, written as OpenAPI 3.0 so the bundled Swagger UI (4.x,
which cannot read 3.1) renders it at ``/docs``.

FastAPI emits OpenAPI 3.1 from pydantic's JSON Schema; :func:`downgrade` rewrites the few 3.1
forms it uses (``anyOf`` with ``null``, ``contentMediaType``, ``examples``, ``const``) into
their 3.0 equivalents, so the document stays generated from the code.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from .models import ErrorOut

OPENAPI_VERSION = "3.0.3"

ERROR_DESCRIPTIONS = {
    400: "Bad request: not a readable image, a refused URL, or an unexpected Host header",
    401: "Missing or wrong token",
    403: "Write endpoint on a read-only server (started without a token)",
    404: "No such image, or its file changed or is gone since it was indexed",
    409: "An indexing run is already in progress",
    413: "Upload or request body over the size limit",
    422: "Invalid parameters (an unknown label included)",
    500: "Internal error",
    503: "The index cannot be read (damaged, or its media is gone)",
    507: "The disk is full",
}
# What any endpoint may answer; routes add their own (404, 413, 401/403, ...).
COMMON_ERRORS = (400, 422, 500, 503)


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route or router: each code as ``{"error": ...}``."""
    return {code: {"model": ErrorOut, "description": ERROR_DESCRIPTIONS[code]} for code in codes}


def downgrade(node: Any) -> Any:
    """An OpenAPI 3.1 schema fragment as 3.0 (a new object; ``node`` is left unchanged)."""
    if isinstance(node, list):
        return [downgrade(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: downgrade(value) for key, value in node.items()}
    options = node.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        del node["anyOf"]
        if len(rest) == 1 and "$ref" not in rest[0]:
            node = {**rest[0], **node}
        elif len(rest) == 1:  # no siblings beside a 3.0 $ref
            node["allOf"] = rest
        else:
            node["anyOf"] = rest
        node["nullable"] = True
    if "contentMediaType" in node:
        node.pop("contentMediaType")
        node["format"] = "binary"
    if isinstance(node.get("examples"), list) and node.get("type") is not None:
        examples = node.pop("examples")
        if examples:
            node["example"] = examples[0]
    if "const" in node:
        node["enum"] = [node.pop("const")]
    return node


def install_openapi(app: FastAPI) -> None:
    """Serve the 3.0 document (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=OPENAPI_VERSION,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = downgrade(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
