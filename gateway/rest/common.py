"""What every REST route shares: bearer authentication, JSON bodies under the body limit, and JSON errors.

A route is a ``RestEndpoint`` mapping HTTP methods to handlers ``async (RestRequest) -> Any``. A handler
returns a JSON-serialisable value (answered 200), a ``(status, value)`` pair, or a Starlette ``Response``;
it raises ``gateway.errors.ApiError`` subclasses for refusals, which become::

    {"error": {"code": "not_found", "message": "..."}}

with the HTTP status ``HTTP_STATUS`` gives the code (a route whose API has another error shape, such as the
intelligent tasks' ``{"error_code", "error_msg"}``, passes its own ``ErrorShape`` from ``gateway.web.errors``).
Anything else is logged and answered as a masked 500.
The services decide tenancy and scopes exactly as they do for GraphQL, so another organization's IDs answer
404 like made-up ones.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from gateway.errors import (
    ApiError, InvalidInput, NotFound, PayloadTooLarge, ServiceUnavailable, unstorable, unstorable_text,
)
from gateway.services.access.principal import Principal
from gateway.settings import Settings
from gateway.web import auth
from gateway.web.body_limit import BodyLimitMiddleware
from gateway.web.errors import DATABASE_UNAVAILABLE, ErrorShape, error_body, error_response
from storage.db import CONNECTION_LOST

log = logging.getLogger("engineshed.rest")

# The HTTP status of each error code (gateway/errors.py); unknown codes are 500.
HTTP_STATUS = {
    "invalid_input": 400,
    "authentication_error": 401,
    "not_allowed": 403,
    "not_found": 404,
    "capacity_exceeded": 429,
    "internal_error": 500,
    "not_implemented": 501,
    "service_failure": 502,
    "service_unavailable": 503,
}


@dataclass(slots=True)
class RestRequest:
    """One authenticated request: the Starlette request, the gateway's resources and the caller."""

    request: Request
    resources: Any
    principal: Principal

    @property
    def path_params(self) -> dict[str, Any]:
        return self.request.path_params

    @property
    def query_params(self) -> Any:
        return self.request.query_params

    async def json_object(self) -> dict[str, Any]:
        """The body as a JSON object (an empty body is ``{}``); anything else is invalid_input."""
        content_type = self.request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = await self.request.body()
        if not body.strip():
            return {}
        if content_type and content_type != "application/json" and not content_type.endswith("+json"):
            raise InvalidInput(f"unsupported Content-Type {content_type!r}; send application/json")
        try:
            value = json.loads(body, parse_constant=_no_constant)
        except RecursionError as exc:
            raise InvalidInput("the body is JSON nested too deeply") from exc
        except ValueError as exc:
            raise InvalidInput(f"the body is not valid JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise InvalidInput("the body must be a JSON object")
        if _MAYBE_UNSTORABLE.search(body):  # only an escape can put a NUL or a lone surrogate into JSON text
            _check_storable(value)
        return value

    def require_project(self, name: str = "project_id") -> None:
        """``/v2/{project_id}/...``: the project is the caller's organization; any other is not found."""
        if str(self.request.path_params.get(name, "")).strip().lower() != str(self.principal.org_id):  # UUIDs ignore case
            raise NotFound("no such project: the project is your organization's id (me { organizationId })")

    def query_int(self, name: str, default: int) -> int:
        """An integer query parameter (invalid_input when it is not one)."""
        raw = self.request.query_params.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise InvalidInput(f"query parameter {name} must be an integer") from None
        if not -QUERY_INT_MAX <= value <= QUERY_INT_MAX:
            raise InvalidInput(f"query parameter {name} is out of range (at most {QUERY_INT_MAX})")
        return value


Handler = Callable[[RestRequest], Awaitable[Any]]


# JSON text can hold a NUL or a lone UTF-16 surrogate only as a \u escape (raw control characters are refused by
# the parser, and the body is decoded as strict UTF-8): a body without one needs no walk.
_MAYBE_UNSTORABLE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
QUERY_INT_MAX = 2**31 - 1  # offsets and limits past this are no page anyone has; int64 columns never see them


def _check_storable(body: Any) -> None:
    """Every string (and key) of a JSON body must be text PostgreSQL can store: JSON may carry NUL (\\u0000) and
    lone surrogates (\\ud800), which would otherwise fail deep in a service as an internal error.

    The walk is iterative and keeps only a link to each value's parent: building each element's path as it goes
    would cost the square of the body (long keys over deep or wide nesting), so the path is spelled out only for
    the value refused."""
    stack: list[tuple[Any, tuple[Any, ...] | None]] = [(body, None)]
    while stack:
        value, trail = stack.pop()
        if isinstance(value, str):
            reason = unstorable_text(value)
            if reason:
                raise InvalidInput(f"{_path(trail) or 'a value'} {reason}")
        elif isinstance(value, dict):
            for key, item in value.items():
                reason = unstorable_text(key)
                if reason:
                    raise InvalidInput(f"a key in {_path(trail) or 'the body'} {reason}")
                stack.append((item, (trail, key)))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, (str, dict, list)):  # numbers, booleans and nulls are always storable
                    stack.append((item, (trail, index)))


def _path(trail: tuple[Any, ...] | None) -> str:
    """``config.labels[2]`` from the parent links; keys cut to 64 characters (a refusal need not echo a huge key)."""
    parts: list[str] = []
    while trail is not None:
        trail, step = trail
        parts.append(f"[{step}]" if isinstance(step, int) else "." + str(step)[:64])
    return "".join(reversed(parts)).lstrip(".")


def _no_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (Python's parser accepts them); nothing could answer them back as JSON either.
    raise ValueError(f"{name} is not a JSON value")


def api_error_response(exc: ApiError, shape: ErrorShape) -> JSONResponse:
    return error_response(HTTP_STATUS.get(exc.code, 500), exc.code, exc.message, shape=shape)


class RestEndpoint:
    """An ASGI app serving one path: ``{"GET": handler, "POST": handler, ...}``.

    Every method it does not list answers 405 as JSON with an ``Allow`` header, before anything else is
    checked. Bodies are read through the same streaming limit as GraphQL's JSON bodies
    (``ENGINESHED_MAX_BODY_BYTES``, ``BodyLimitMiddleware``), refused with 413; a route whose bodies are always
    small passes a lower ``body_limit``. A route that streams its body rather than parsing it whole (a media file
    straight to S3) passes a function of the settings instead, whose limit replaces max_body_bytes. Then the caller
    is authenticated. ``error_shape`` writes each error's body.
    """

    def __init__(self, handlers: dict[str, Handler], *, body_limit: int | Callable[[Settings], int] | None = None,
                 error_shape: ErrorShape = error_body) -> None:
        self.handlers = {method.upper(): handler for method, handler in handlers.items()}
        self.body_limit = body_limit
        self.error_shape = error_shape
        self._served = {
            method: BodyLimitMiddleware(functools.partial(self._serve, handler), limit=self._limit, shape=error_shape)
            for method, handler in self.handlers.items()
        }

    def _limit(self, _headers: Headers, settings: Settings) -> int:
        if self.body_limit is None:
            return settings.max_body_bytes
        if callable(self.body_limit):
            return self.body_limit(settings)
        return min(settings.max_body_bytes, self.body_limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"].upper()
        # HEAD: GET's headers (the server drops the body)
        served = self._served.get("GET" if method == "HEAD" else method)
        if served is None:
            allow = ", ".join(sorted({*self.handlers, *(("HEAD",) if "GET" in self.handlers else ())}))
            response = self._error(405, "not_allowed", f"{scope['method']} is not served here; use {allow}",
                                   headers={"Allow": allow})
            await response(scope, receive, send)
            return
        await served(scope, receive, send)

    async def _serve(self, handler: Handler, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await self._handle(handler, request, scope["app"].state.resources)
        except ClientDisconnect:
            return
        await response(scope, receive, send)

    async def _handle(self, handler: Handler, request: Request, resources: Any) -> Response:
        try:
            principal = await auth.authenticate(request)
        except auth.FAILURES as exc:
            return auth.refusal(exc, self.error_shape)
        try:
            result = await handler(RestRequest(request, resources, principal))
        except PayloadTooLarge:
            raise  # the body limit answers it, once the rest of the body is drained
        except ApiError as exc:
            return api_error_response(exc, self.error_shape)
        except CONNECTION_LOST:
            return self._error(503, ServiceUnavailable.code, DATABASE_UNAVAILABLE)
        except ClientDisconnect:
            raise
        except Exception as exc:
            refusal = unstorable(exc)
            if refusal is not None:  # a value PostgreSQL cannot store that no check caught: still the input's fault
                return api_error_response(refusal, self.error_shape)
            log.exception("unexpected error serving %s %s", request.method, request.url.path)
            return self._error(500, "internal_error", "An internal error occurred")
        if isinstance(result, Response):
            return result
        status = 200
        if isinstance(result, tuple):
            status, result = result
        if result is None and status == 204:
            return Response(status_code=204)
        return JSONResponse(result, status_code=status)

    def _error(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> JSONResponse:
        return error_response(status, code, message, headers=headers, shape=self.error_shape)
