"""Bearer authentication: one way from a caller's token to a Principal, for HTTP requests and WebSockets alike.

The token travels as ``Bearer <token>``: in the Authorization header, or, on a WebSocket, in the
``connection_init`` payload (``{"Authorization": "Bearer …"}``, or ``{"token": "…"}``), which browsers need
because they cannot set headers on the upgrade request; the upgrade request's header is the fallback there.
The principal is kept in the connection's scope, so a WebSocket connection looks its token up once, not on
every subscription.

A token that is missing or unknown raises ``AuthenticationError``. A token that cannot be checked because
PostgreSQL is away raises one of ``CONNECTION_LOST``: that is no refusal, and each caller says what it means
(an HTTP request answers 503; a WebSocket connection is acknowledged and checks again per subscription).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse

from gateway import logs
from gateway.errors import AuthenticationError, ServiceUnavailable
from gateway.services.access import tokens
from gateway.services.access.principal import Principal
from gateway.web.errors import DATABASE_UNAVAILABLE, ErrorShape, error_response
from storage.db import CONNECTION_LOST

PRINCIPAL = "principal"  # the scope key of the authenticated caller

# What authenticate() raises when it does not return a principal.
FAILURES: tuple[type[BaseException], ...] = (AuthenticationError, *CONNECTION_LOST)


async def authenticate(conn: HTTPConnection, connection_params: Mapping[str, Any] | None = None) -> Principal:
    """The caller of a request or a WebSocket connection (``connection_params``: its connection_init payload)."""
    principal = conn.scope.get(PRINCIPAL)
    if principal is None:
        principal = await tokens.authenticate(conn.app.state.resources.pool, _authorization(conn, connection_params))
        conn.scope[PRINCIPAL] = principal
    # The rest of the request's (or connection's) log lines name the caller's organization.
    logs.bind_organization(principal.org_id)
    return principal


def refusal(exc: BaseException, shape: ErrorShape) -> JSONResponse:
    """The HTTP reply to one of ``FAILURES``: 401 for a bad token, 503 when it could not be checked."""
    if isinstance(exc, AuthenticationError):
        return error_response(401, exc.code, exc.message, shape=shape)
    return error_response(503, ServiceUnavailable.code, DATABASE_UNAVAILABLE, shape=shape)


def _authorization(conn: HTTPConnection, params: Mapping[str, Any] | None) -> str | None:
    header = None
    if params:
        header = params.get("Authorization") or params.get("authorization")
        if header is None and params.get("token"):
            header = f"Bearer {params['token']}"
    if header is None:
        header = conn.headers.get("authorization")
    if header is not None and not isinstance(header, str):  # JSON can send anything here
        raise AuthenticationError("Authorization in connection_init must be text: \"Bearer <token>\"")
    return header
