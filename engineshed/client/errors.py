"""The API's errors as exceptions: one class per error code (``extensions.code``), so callers catch what they mean.

``except NotFoundError`` reads better than comparing strings, and a code the client does not know yet still
arrives as :class:`ApiError` with its ``code`` set.
"""

from __future__ import annotations

from typing import Any


class EngineshedError(Exception):
    """Base of everything the client raises on purpose."""


class ApiError(EngineshedError):
    """An error the API answered. ``code`` is its error code, ``data`` its ``extensions.data`` (if any),
    ``path`` the field that failed and ``status`` the HTTP status."""

    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, data: dict[str, Any] | None = None,
                 path: list[Any] | None = None, status: int | None = None, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.data = data or {}
        self.path = path
        self.status = status
        self.errors = errors or []

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class NotFoundError(ApiError):
    """``not_found``: no such object visible to the token's organization (another organization's IDs answer alike)."""

    code = "not_found"


class NotAllowedError(ApiError):
    """``not_allowed``: the token's scope does not allow the operation, or the object's state does not."""

    code = "not_allowed"


class InvalidInputError(ApiError):
    """``invalid_input``: the request is malformed or a value is refused; the message says which."""

    code = "invalid_input"


class AuthenticationError(ApiError):
    """``authentication_error``: no token, or one the server does not know (revoked, mistyped, another server's)."""

    code = "authentication_error"


class CapacityExceededError(ApiError):
    """``capacity_exceeded``: a quota or limit was reached."""

    code = "capacity_exceeded"


class ServiceUnavailableError(ApiError):
    """``service_unavailable``: a backing service is down; the client retried with backoff before raising it."""

    code = "service_unavailable"


class ServiceFailureError(ApiError):
    """``service_failure``: a backing service failed the request."""

    code = "service_failure"


class NotImplementedApiError(ApiError):
    """``not_implemented``: the server does not offer this operation (an older server than the client expects)."""

    code = "not_implemented"


class InternalError(ApiError):
    """``internal_error``: the server failed unexpectedly (its log has the details)."""

    code = "internal_error"


class ConnectionFailed(EngineshedError):
    """The server could not be reached (after the retries idempotent calls get)."""


class StorageRefused(EngineshedError):
    """Object storage refused a direct upload (a PUT to a writable URL): expired, or not reachable as signed.
    ``status`` is its HTTP status."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


ERROR_CLASSES: dict[str, type[ApiError]] = {
    cls.code: cls
    for cls in (NotFoundError, NotAllowedError, InvalidInputError, AuthenticationError, CapacityExceededError,
                ServiceUnavailableError, ServiceFailureError, NotImplementedApiError, InternalError)
}


def error_from(entry: dict[str, Any], *, status: int | None = None, errors: list[dict[str, Any]] | None = None) -> ApiError:
    """The exception for one GraphQL error entry (``{message, extensions: {code, data}, path}``)."""
    extensions = entry.get("extensions") or {}
    code = extensions.get("code") or entry.get("name") or ("authentication_error" if status == 401 else "internal_error")
    cls = ERROR_CLASSES.get(code, ApiError)
    return cls(str(entry.get("message") or code), code=code, data=extensions.get("data"), path=entry.get("path"),
               status=status, errors=errors)
