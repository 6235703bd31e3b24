"""Library types and entity identifier types: the built-in catalogue (org_id NULL) and each organization's own."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from storage.rows import IdentifierType, LibraryType

VISIBLE = "(org_id IS NULL OR org_id = $1)"

IDENTIFIER_TYPES = f"SELECT * FROM entity_identifier_types WHERE {VISIBLE} AND ($2::text IS NULL OR id = $2) ORDER BY id"
LIBRARY_TYPES = f"SELECT * FROM library_types WHERE {VISIBLE} AND ($2::text IS NULL OR id = $2) ORDER BY id"
BUILTIN_IDENTIFIER_TYPES = "SELECT * FROM entity_identifier_types WHERE org_id IS NULL ORDER BY id"
BUILTIN_LIBRARY_TYPES = "SELECT * FROM library_types WHERE org_id IS NULL ORDER BY id"
OWN_IDENTIFIER_TYPES = "SELECT * FROM entity_identifier_types WHERE org_id = $1 ORDER BY id"
OWN_LIBRARY_TYPES = "SELECT * FROM library_types WHERE org_id = $1 ORDER BY id"
# The worker reads a library's type by ID once the library (and so the organization) is known.
LIBRARY_TYPE_BY_ID = "SELECT * FROM library_types WHERE id = $1"

INSERT_IDENTIFIER_TYPE = """INSERT INTO entity_identifier_types (id, org_id, label, label_plural, description, data_type, icon_class)
VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING RETURNING *"""

UPDATE_IDENTIFIER_TYPE = """-- only an organization's own row; built-ins (org_id NULL) never match
UPDATE entity_identifier_types SET
    label = coalesce($3, label),
    label_plural = coalesce($4, label_plural),
    description = CASE WHEN $5 THEN $6 ELSE description END,
    data_type = coalesce($7, data_type),
    icon_class = CASE WHEN $8 THEN $9 ELSE icon_class END
WHERE org_id = $1 AND id = $2 RETURNING *"""

INSERT_LIBRARY_TYPE = """INSERT INTO library_types (id, org_id, label, entity_type_name, entity_type_name_plural,
                           identifier_type_ids, icon_class, entity_type_schema)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING RETURNING *"""

UPDATE_LIBRARY_TYPE = """-- only an organization's own row; built-ins (org_id NULL) never match
UPDATE library_types SET
    label = $3,
    icon_class = CASE WHEN $4 THEN $5 ELSE icon_class END,
    identifier_type_ids = coalesce($6, identifier_type_ids),
    entity_type_name = coalesce($7, entity_type_name),
    entity_type_name_plural = coalesce($8, entity_type_name_plural),
    entity_type_schema = coalesce($9, entity_type_schema)
WHERE org_id = $1 AND id = $2 RETURNING *"""

IDENTIFIER_TYPE_IN_USE = "SELECT EXISTS (SELECT 1 FROM entity_identifiers WHERE identifier_type_id = $1)"

TYPES_USED_BY_LIBRARIES_OF_TYPE = """-- identifier types that identifiers in libraries of this type already have
SELECT DISTINCT i.identifier_type_id FROM entity_identifiers i JOIN libraries l ON l.id = i.library_id
WHERE l.org_id = $1 AND l.library_type_id = $2"""

ENTITY_JSONDATA_OF_TYPE = """-- the entities whose jsondata a new schema must still accept
SELECT e.id, e.name, e.jsondata FROM entities e JOIN libraries l ON l.id = e.library_id
WHERE l.org_id = $1 AND l.library_type_id = $2"""


async def identifier_types(conn: asyncpg.Connection, org_id: UUID, type_id: str | None = None) -> list[IdentifierType]:
    return [IdentifierType.of(r) for r in await conn.fetch(IDENTIFIER_TYPES, org_id, type_id)]


async def library_types(conn: asyncpg.Connection, org_id: UUID, type_id: str | None = None) -> list[LibraryType]:
    return [LibraryType.of(r) for r in await conn.fetch(LIBRARY_TYPES, org_id, type_id)]


async def builtin_identifier_types(conn: asyncpg.Connection) -> list[IdentifierType]:
    return [IdentifierType.of(r) for r in await conn.fetch(BUILTIN_IDENTIFIER_TYPES)]


async def builtin_library_types(conn: asyncpg.Connection) -> list[LibraryType]:
    return [LibraryType.of(r) for r in await conn.fetch(BUILTIN_LIBRARY_TYPES)]


async def own_identifier_types(conn: asyncpg.Connection, org_id: UUID) -> list[IdentifierType]:
    return [IdentifierType.of(r) for r in await conn.fetch(OWN_IDENTIFIER_TYPES, org_id)]


async def own_library_types(conn: asyncpg.Connection, org_id: UUID) -> list[LibraryType]:
    return [LibraryType.of(r) for r in await conn.fetch(OWN_LIBRARY_TYPES, org_id)]


async def library_type_by_id(conn: asyncpg.Connection, type_id: str) -> LibraryType | None:
    return LibraryType.maybe(await conn.fetchrow(LIBRARY_TYPE_BY_ID, type_id))


async def insert_identifier_type(conn: asyncpg.Connection, org_id: UUID, **v: Any) -> IdentifierType | None:
    """None when the ID is taken (by a built-in or any organization's type)."""
    return IdentifierType.maybe(
        await conn.fetchrow(
            INSERT_IDENTIFIER_TYPE, v["id"], org_id, v["label"], v["label_plural"], v["description"], v["data_type"],
            v["icon_class"],
        )
    )


async def update_identifier_type(conn: asyncpg.Connection, org_id: UUID, type_id: str, changes: dict[str, Any]) -> IdentifierType | None:
    return IdentifierType.maybe(
        await conn.fetchrow(
            UPDATE_IDENTIFIER_TYPE, org_id, type_id, changes.get("label"), changes.get("label_plural"),
            "description" in changes, changes.get("description"), changes.get("data_type"),
            "icon_class" in changes, changes.get("icon_class"),
        )
    )


async def insert_library_type(conn: asyncpg.Connection, org_id: UUID, **v: Any) -> LibraryType | None:
    """None when the ID is taken (by a built-in or any organization's type)."""
    return LibraryType.maybe(
        await conn.fetchrow(
            INSERT_LIBRARY_TYPE, v["id"], org_id, v["label"], v["entity_type_name"], v["entity_type_name_plural"],
            list(v["identifier_type_ids"]), v["icon_class"], v["entity_type_schema"],
        )
    )


async def update_library_type(conn: asyncpg.Connection, org_id: UUID, type_id: str, changes: dict[str, Any]) -> LibraryType | None:
    ids = changes.get("identifier_type_ids")
    return LibraryType.maybe(
        await conn.fetchrow(
            UPDATE_LIBRARY_TYPE, org_id, type_id, changes["label"], "icon_class" in changes, changes.get("icon_class"),
            list(ids) if ids is not None else None, changes.get("entity_type_name"),
            changes.get("entity_type_name_plural"), changes.get("entity_type_schema"),
        )
    )


async def identifier_type_in_use(conn: asyncpg.Connection, type_id: str) -> bool:
    return bool(await conn.fetchval(IDENTIFIER_TYPE_IN_USE, type_id))


async def types_used_by_libraries_of_type(conn: asyncpg.Connection, org_id: UUID, library_type_id: str) -> set[str]:
    return {r["identifier_type_id"] for r in await conn.fetch(TYPES_USED_BY_LIBRARIES_OF_TYPE, org_id, library_type_id)}


async def entity_jsondata_of_type(conn: asyncpg.Connection, org_id: UUID, library_type_id: str) -> list[asyncpg.Record]:
    return list(await conn.fetch(ENTITY_JSONDATA_OF_TYPE, org_id, library_type_id))
