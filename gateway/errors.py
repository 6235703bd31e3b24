"""Errors that reach clients, one class per upstream error code.

The class decides the code; the schema copies it into ``extensions.code`` and ``name``. Anything that is
not an ``ApiError`` is masked as ``internal_error`` and logged with its stack trace on the server only.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """Base of every error a client may see."""

    code = "internal_error"
    http_status = 200
    default_message = "An internal error occurred"

    def __init__(self, message: str | None = None, *, data: dict[str, Any] | None = None) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.data = data or {}


class NotFound(ApiError):
    code = "not_found"
    default_message = "The requested object was not found"


class NotAllowed(ApiError):
    code = "not_allowed"
    default_message = "The token does not allow this operation"


class InvalidInput(ApiError):
    code = "invalid_input"
    default_message = "The input is not valid"


class PayloadTooLarge(InvalidInput):
    http_status = 413
    default_message = "The request body is larger than the upload limit"


class AuthenticationError(ApiError):
    code = "authentication_error"
    http_status = 401
    default_message = "A valid bearer token is required"


class CapacityExceeded(ApiError):
    code = "capacity_exceeded"
    default_message = "A capacity limit was exceeded"


class ServiceUnavailable(ApiError):
    code = "service_unavailable"
    default_message = "A backing service is unavailable; try again shortly"


class ServiceFailure(ApiError):
    code = "service_failure"
    default_message = "A backing service failed"


class NotImplementedApi(ApiError):
    code = "not_implemented"
    default_message = "This operation is not implemented"
