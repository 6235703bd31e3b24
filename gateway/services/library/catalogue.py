"""Library types and entity identifier types: the built-in catalogue, cached per process (only migrations
change it), and each organization's own types, read per request and changed by its admins."""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

from gateway.errors import InvalidInput, NotAllowed, NotFound
from gateway.resources import Resources
from gateway.services.access.principal import Principal
from gateway.services.library import entity_schema
from storage.queries import types as q
from storage.rows import IdentifierType, LibraryType

_TYPE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_LABEL = 256
MAX_TEXT = 4096
DATA_TYPES = ("image", "audio", "video", "text", "pdf")


async def builtin_identifier_types(res: Resources) -> list[IdentifierType]:
    cached = res.caches.builtin_types
    if "identifier_types" not in cached:
        async with res.pool.acquire() as conn:
            cached["identifier_types"] = await q.builtin_identifier_types(conn)
    return cached["identifier_types"]


async def builtin_library_types(res: Resources) -> list[LibraryType]:
    cached = res.caches.builtin_types
    if "library_types" not in cached:
        async with res.pool.acquire() as conn:
            cached["library_types"] = await q.builtin_library_types(conn)
    return cached["library_types"]


async def entity_schema_of(res: Resources, org_id: UUID, library_type_id: str) -> dict[str, Any]:
    """The entity JSON Schema of a library type the organization may use ({} for built-ins: any jsondata)."""
    for t in await builtin_library_types(res):
        if t.id == library_type_id:
            return t.entity_type_schema or {}
    async with res.pool.acquire() as conn:
        found = await q.library_types(conn, org_id, library_type_id)
    return (found[0].entity_type_schema or {}) if found else {}


async def identifier_types(res: Resources, org_id: UUID) -> list[IdentifierType]:
    """The built-in types and the organization's own, by ID."""
    builtins = await builtin_identifier_types(res)
    async with res.pool.acquire() as conn:
        own = await q.own_identifier_types(conn, org_id)
    return sorted([*builtins, *own], key=lambda t: t.id)


async def library_types(res: Resources, org_id: UUID) -> list[LibraryType]:
    builtins = await builtin_library_types(res)
    async with res.pool.acquire() as conn:
        own = await q.own_library_types(conn, org_id)
    return sorted([*builtins, *own], key=lambda t: t.id)


def _text(value: Any, what: str, *, required: bool, limit: int = MAX_LABEL) -> str | None:
    if value is None:
        if required:
            raise InvalidInput(f"{what} is required")
        return None
    text = str(value).strip()
    if required and not text:
        raise InvalidInput(f"{what} must not be empty")
    if len(text) > limit:
        raise InvalidInput(f"{what} must be at most {limit} characters")
    return text


def _type_id(value: Any) -> str:
    type_id = str(value or "")
    if not _TYPE_ID.match(type_id):
        raise InvalidInput("id must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return type_id


def _taken(kind: str, type_id: str, builtin: bool) -> InvalidInput:
    if builtin:
        return InvalidInput(f"{type_id!r} is a built-in {kind} type; choose another id")
    # One namespace across organizations (as for engine IDs): say no more than "taken".
    return InvalidInput(f"the {kind} type id {type_id!r} is not available; choose another")


def _refuse_builtin(kind: str, type_id: str, builtins: list[Any]) -> None:
    if any(t.id == type_id for t in builtins):
        raise NotAllowed(f"{type_id!r} is a built-in {kind} type and cannot be changed")


# ---- entity identifier types ----


async def create_identifier_type(res: Resources, principal: Principal, data: dict[str, Any]) -> IdentifierType:
    principal.require_write()
    type_id = _type_id(data.get("id"))
    values = {
        "id": type_id,
        "label": _text(data.get("label"), "label", required=True),
        "label_plural": _text(data.get("label_plural"), "labelPlural", required=True),
        "description": _text(data.get("description"), "description", required=False, limit=MAX_TEXT),
        "icon_class": _text(data.get("icon_class"), "iconClass", required=False),
        "data_type": data.get("data_type"),
    }
    if values["data_type"] not in DATA_TYPES:
        raise InvalidInput(f"dataType must be one of {', '.join(DATA_TYPES)}")
    builtins = await builtin_identifier_types(res)
    async with res.pool.acquire() as conn:
        row = await q.insert_identifier_type(conn, principal.org_id, **values)
    if row is None:
        raise _taken("entity identifier", type_id, any(t.id == type_id for t in builtins))
    return row


async def update_identifier_type(res: Resources, principal: Principal, type_id: str, changes: dict[str, Any]) -> IdentifierType:
    principal.require_write()
    type_id = str(type_id)
    _refuse_builtin("entity identifier", type_id, await builtin_identifier_types(res))
    clean: dict[str, Any] = {}
    # label, labelPlural and dataType always have a value: null leaves them as they are.
    for key, what in (("label", "label"), ("label_plural", "labelPlural")):
        if changes.get(key) is not None:
            clean[key] = _text(changes[key], what, required=True)
    for key, what, limit in (("description", "description", MAX_TEXT), ("icon_class", "iconClass", MAX_LABEL)):
        if key in changes:
            clean[key] = _text(changes[key], what, required=False, limit=limit)
    if changes.get("data_type") is not None:
        if changes["data_type"] not in DATA_TYPES:
            raise InvalidInput(f"dataType must be one of {', '.join(DATA_TYPES)}")
        clean["data_type"] = changes["data_type"]
    async with res.pool.acquire() as conn, conn.transaction():
        current = await q.identifier_types(conn, principal.org_id, type_id)
        if not current or current[0].org_id != principal.org_id:
            raise NotFound()
        if clean.get("data_type", current[0].data_type) != current[0].data_type and await q.identifier_type_in_use(conn, type_id):
            raise InvalidInput(f"identifiers of type {type_id!r} exist: its dataType cannot change")
        row = await q.update_identifier_type(conn, principal.org_id, type_id, clean)
    if row is None:
        raise NotFound()
    return row


# ---- library types ----


def _entity_type(value: Any, *, partial: bool) -> dict[str, Any]:
    value = value or {}
    out: dict[str, Any] = {}
    for key, wire in (("entity_type_name", "name"), ("entity_type_name_plural", "namePlural")):
        if value.get(wire) is not None or not partial:
            out[key] = _text(value.get(wire), f"entityType.{wire}", required=True)
    if value.get("schema") is not None or not partial:
        if value.get("schema") is None:
            raise InvalidInput("entityType.schema is required ({} accepts any jsondata)")
        out["entity_type_schema"] = entity_schema.check_schema(value["schema"])
    return out


async def _check_identifier_types(res: Resources, principal: Principal, ids: list[Any]) -> list[str]:
    wanted = list(dict.fromkeys(str(i) for i in ids))
    known = {t.id for t in await identifier_types(res, principal.org_id)}
    unknown = [i for i in wanted if i not in known]
    if unknown:
        raise InvalidInput(f"unknown entityIdentifierTypeIds: {', '.join(unknown)}")
    return wanted


async def create_library_type(res: Resources, principal: Principal, data: dict[str, Any]) -> LibraryType:
    principal.require_write()
    type_id = _type_id(data.get("id"))
    values = {
        "id": type_id,
        "label": _text(data.get("label"), "label", required=True),
        "icon_class": _text(data.get("icon_class"), "iconClass", required=False),
        "identifier_type_ids": await _check_identifier_types(res, principal, data.get("identifier_type_ids") or []),
        **_entity_type(data.get("entity_type"), partial=False),
    }
    builtins = await builtin_library_types(res)
    async with res.pool.acquire() as conn:
        row = await q.insert_library_type(conn, principal.org_id, **values)
    if row is None:
        raise _taken("library", type_id, any(t.id == type_id for t in builtins))
    return row


async def update_library_type(res: Resources, principal: Principal, type_id: str, changes: dict[str, Any]) -> LibraryType:
    """label is required (UpdateLibraryType's input requires it); the other fields change only when sent."""
    principal.require_write()
    type_id = str(type_id)
    _refuse_builtin("library", type_id, await builtin_library_types(res))
    clean: dict[str, Any] = {"label": _text(changes.get("label"), "label", required=True)}
    if "icon_class" in changes:
        clean["icon_class"] = _text(changes["icon_class"], "iconClass", required=False)
    if changes.get("identifier_type_ids") is not None:
        clean["identifier_type_ids"] = await _check_identifier_types(res, principal, changes["identifier_type_ids"])
    if changes.get("entity_type") is not None:
        clean.update(_entity_type(changes["entity_type"], partial=True))
    async with res.pool.acquire() as conn, conn.transaction():
        current = await q.library_types(conn, principal.org_id, type_id)
        if not current or current[0].org_id != principal.org_id:
            raise NotFound()
        if "identifier_type_ids" in clean:
            dropped = (await q.types_used_by_libraries_of_type(conn, principal.org_id, type_id)) - set(clean["identifier_type_ids"])
            if dropped:
                raise InvalidInput(
                    f"libraries of type {type_id!r} hold identifiers of type {', '.join(sorted(dropped))}: "
                    "entityIdentifierTypeIds must keep them"
                )
        if "entity_type_schema" in clean:
            for entity in await q.entity_jsondata_of_type(conn, principal.org_id, type_id):
                problem = entity_schema.violation(clean["entity_type_schema"], entity["jsondata"])
                if problem:
                    raise InvalidInput(f"entity {entity['name']!r} ({entity['id']}) would not satisfy the new schema: {problem}")
        row = await q.update_library_type(conn, principal.org_id, type_id, clean)
    if row is None:
        raise NotFound()
    return row
