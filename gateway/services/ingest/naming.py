"""An identifier's unique name: what it defaults to, and what it may hold."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from gateway.errors import InvalidInput


def default_unique_name(filename: str | None, url: str | None) -> str | None:
    """What uniqueName defaults to: the uploaded file's name, else the last segment of the URL's path."""
    name = filename or (unquote(urlsplit(url).path.rsplit("/", 1)[-1]) if url else None)
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ord(ch) >= 32 and ord(ch) != 127).strip()[:255]
    return name or None


def check_unique_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("uniqueName must not be empty")
    if len(name) > 512:
        raise InvalidInput("uniqueName is at most 512 characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise InvalidInput("uniqueName must not contain control characters")
    return name
