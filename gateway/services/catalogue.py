"""The global type catalogue (seeded by migrations), cached per process: it never changes at run time."""

from __future__ import annotations

from typing import Any

from storage.queries import types as q
from storage.rows import IdentifierType, LibraryType

_cache: dict[str, Any] = {}


async def identifier_types(res: Any) -> list[IdentifierType]:
    if "identifier_types" not in _cache:
        async with res.pool.acquire() as conn:
            _cache["identifier_types"] = await q.identifier_types(conn)
    return _cache["identifier_types"]


async def library_types(res: Any) -> list[LibraryType]:
    if "library_types" not in _cache:
        async with res.pool.acquire() as conn:
            _cache["library_types"] = await q.library_types(conn)
    return _cache["library_types"]
