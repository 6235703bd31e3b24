"""The one error every package check raises."""

from __future__ import annotations

from gateway.errors import InvalidInput


class PackageError(InvalidInput):
    """The package was refused; the message says why. ``reason`` names the check for clients and tests."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message, data={"reason": reason})
        self.reason = reason
