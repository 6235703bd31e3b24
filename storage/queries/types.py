"""The global catalogue of library types and entity identifier types."""

from __future__ import annotations

import asyncpg

from storage.rows import IdentifierType, LibraryType

IDENTIFIER_TYPES = "SELECT * FROM entity_identifier_types WHERE ($1::text IS NULL OR id = $1) ORDER BY id"
LIBRARY_TYPES = "SELECT * FROM library_types WHERE ($1::text IS NULL OR id = $1) ORDER BY id"


async def identifier_types(conn: asyncpg.Connection, type_id: str | None = None) -> list[IdentifierType]:
    return [IdentifierType.of(r) for r in await conn.fetch(IDENTIFIER_TYPES, type_id)]


async def library_types(conn: asyncpg.Connection, type_id: str | None = None) -> list[LibraryType]:
    return [LibraryType.of(r) for r in await conn.fetch(LIBRARY_TYPES, type_id)]
