"""404 and 405 from the router itself (an unknown path, a method a route does not serve) as JSON, in the shape
of the API the path belongs to: GraphQL's ``errors`` under /v3/graphql, seed 004's ``error_code``/``error_msg``
under /v2/, and the gateway's ``{"error": {"code", "message"}}`` everywhere else. Starlette answers these in
plain text by default, which JSON clients cannot parse."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.rest.common import error_body
from gateway.rest.intelligent_tasks import upstream_error
from gateway.web.graphql_view import error_entry

_CODES = {404: "not_found", 405: "not_allowed", 401: "authentication_error", 403: "not_allowed", 413: "invalid_input"}


def _message(request: Request, exc: HTTPException) -> str:
    if exc.status_code == 404:
        return f"no such path: {request.url.path}"
    if exc.status_code == 405:
        allow = (exc.headers or {}).get("Allow") or (exc.headers or {}).get("allow")
        return f"{request.method} is not served here" + (f"; use {allow}" if allow else "")
    return str(exc.detail)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _CODES.get(exc.status_code, "invalid_input" if exc.status_code < 500 else "internal_error")
    message = _message(request, exc)
    path = request.url.path
    if path.startswith("/v3/graphql"):
        body = {"data": None, "errors": [error_entry(code, message)]}
    elif path.startswith("/v2/"):
        body = upstream_error(code, message)
    else:
        body = error_body(code, message)
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)
