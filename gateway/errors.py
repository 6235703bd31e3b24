"""Errors that reach clients, one class per error code of the API.

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


class NotImplementedApi(ApiError):
    code = "not_implemented"
    default_message = "This operation is not implemented"


def unstorable(exc: BaseException) -> InvalidInput | None:
    """The client's fault behind a PostgreSQL ``DataError`` (a NUL character, a number past int64), as the
    invalid_input it should have been; None for any other exception. Inputs are checked before they reach SQL
    where that is cheap; this is the net for what a check missed, so it never becomes an internal error."""
    import asyncpg
    from asyncpg.exceptions import _base

    # Only what a client's value causes: characters PostgreSQL cannot hold and numbers past a column's range,
    # refused by PostgreSQL itself or by asyncpg while encoding an argument. Any other data error (a division by
    # zero, a bad cast, a wrong Python type handed to a query) is a bug of ours: None, so it stays an
    # internal_error and is logged with its stack trace.
    if isinstance(exc, (asyncpg.CharacterNotInRepertoireError, asyncpg.UntranslatableCharacterError)):
        return InvalidInput("a value contains characters that cannot be stored (such as NUL)")
    if isinstance(exc, asyncpg.NumericValueOutOfRangeError):
        return InvalidInput("a number is out of range")
    if isinstance(exc, (asyncpg.DataError, _base.DataError)):  # asyncpg raises either while encoding an argument
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, UnicodeEncodeError) or "codec can't encode" in str(exc):
            return InvalidInput("a value contains characters that cannot be stored (such as NUL)")
        if isinstance(cause, OverflowError) or "out of int" in str(exc) or "out of range" in str(exc):
            return InvalidInput("a number is out of range")
    return None


def unstorable_text(value: str) -> str | None:
    """Why PostgreSQL cannot store the text (a NUL, or a lone UTF-16 surrogate from a JSON ``\\ud800``), or None."""
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (not a Unicode character)"
    return None
