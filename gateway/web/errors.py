"""The error body of each mount, and the JSON replies that carry them.

Each API keeps the shape its clients parse: GraphQL's ``{"data": null, "errors": [...]}`` under /v3/graphql,
the intelligent tasks' ``{"error_code", "error_msg"}`` under /v2/, and the gateway's own
``{"error": {"code", "message"}}`` everywhere else (/v1 included). The router's own 404 and 405 (an unknown
path, a method a route does not serve) are answered here in that shape: Starlette answers them in plain text by
default, which JSON clients cannot parse.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

ErrorShape = Callable[[str, str], dict[str, Any]]

DATABASE_UNAVAILABLE = "the database is unavailable; try again shortly"

_CODES = {404: "not_found", 405: "not_allowed", 401: "authentication_error", 403: "not_allowed", 413: "invalid_input"}


def error_entry(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """One entry of a GraphQL reply's ``errors``."""
    entry: dict[str, Any] = {"message": message, "name": code, "extensions": {"code": code}}
    entry.update(extra)
    return entry


def graphql_error(code: str, message: str) -> dict[str, Any]:
    """/v3/graphql: a reply in which nothing ran."""
    return {"data": None, "errors": [error_entry(code, message)]}


def error_body(code: str, message: str) -> dict[str, Any]:
    """The gateway's own error shape: ``{"error": {"code", "message"}}``."""
    return {"error": {"code": code, "message": message}}


def task_error(code: str, message: str) -> dict[str, Any]:
    """/v2/ (intelligent tasks): ``{"error_code", "error_msg"}``."""
    return {"error_code": code, "error_msg": message}


def shape_for(path: str) -> ErrorShape:
    """The error shape of the mount a path belongs to."""
    if path.startswith("/v3/graphql"):
        return graphql_error
    if path.startswith("/v2/"):
        return task_error
    return error_body


def error_response(status: int, code: str, message: str, *, shape: ErrorShape,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """An error reply; a 401 says which scheme to authenticate with."""
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": 'Bearer realm="engineshed"'}
    return JSONResponse(shape(code, message), status_code=status, headers=headers)


def _message(request: Request, exc: HTTPException) -> str:
    if exc.status_code == 404:
        return f"no such path: {request.url.path}"
    if exc.status_code == 405:
        allow = (exc.headers or {}).get("Allow") or (exc.headers or {}).get("allow")
        return f"{request.method} is not served here" + (f"; use {allow}" if allow else "")
    return str(exc.detail)


async def http_error(request: Request, exc: Exception) -> Response:
    """The router's refusals (Starlette's HTTPException) as JSON in the shape of the path's mount."""
    assert isinstance(exc, HTTPException)
    code = _CODES.get(exc.status_code, "invalid_input" if exc.status_code < 500 else "internal_error")
    body = shape_for(request.url.path)(code, _message(request, exc))
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)
