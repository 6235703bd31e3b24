"""Parsing client-supplied IDs."""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from gateway.errors import NotFound


def parse_id(value: object) -> UUID:
    """A UUID, or not_found: a malformed ID names no object, and saying more would not help an attacker."""
    try:
        return UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        raise NotFound() from None


def try_parse_ids(values: Iterable[object]) -> list[UUID]:
    """For filters: malformed IDs simply match nothing."""
    out = []
    for v in values:
        try:
            out.append(UUID(str(v)))
        except (ValueError, TypeError, AttributeError):
            continue
    return out
