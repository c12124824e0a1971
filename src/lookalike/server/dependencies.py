"""What endpoints take besides their own parameters: the shared state, a valid image id,
and, for write endpoints, the bearer token."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .config import MAX_IMAGE_ID
from .state import ServerState


def get_state(request: Request) -> ServerState:
    """The one :class:`ServerState` that :func:`~lookalike.server.app.create_app` stored."""
    return request.app.state.lookalike


State = Annotated[ServerState, Depends(get_state)]
ImageId = Annotated[int, PathParam(ge=1, le=MAX_IMAGE_ID, description="an indexed image's id")]
_bearer = HTTPBearer(auto_error=False, description="the token given to `lookalike serve --token`")


def require_token(
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Write endpoints: 403 on a read-only server, 401 for a missing or wrong token."""
    token = state.config.token
    if token is None:
        raise HTTPException(
            403, "this server is read-only: restart `lookalike serve` with --token to enable it"
        )
    given = credentials.credentials if credentials else ""
    if not secrets.compare_digest(given.encode(), token.encode()):
        raise HTTPException(
            401,
            "missing or wrong token: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
