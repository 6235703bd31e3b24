"""Library rules: tenancy, validation, publish, all-or-nothing deletes."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import asyncpg

from gateway.errors import InvalidInput, NotFound
from gateway.resources import Resources
from gateway.services import blob_cleanup
from gateway.services.access.ids import parse_id
from gateway.services.access.paging import Page, check_page
from gateway.services.access.principal import Principal
from storage.queries import entities as entity_q
from storage.queries import jobs as job_q
from storage.queries import libraries as q
from storage.queries import types as type_q
from storage.rows import Library

MAX_NAME = 1024


def clean_name(value: str | None, what: str) -> str:
    name = (value or "").strip()
    if not name:
        raise InvalidInput(f"{what} name must not be empty")
    if len(name) > MAX_NAME:
        raise InvalidInput(f"{what} name must be at most {MAX_NAME} characters")
    return name


async def _check_type(conn: asyncpg.Connection, org_id: UUID, type_id: str) -> None:
    if not await type_q.library_types(conn, org_id, type_id):
        raise InvalidInput(f"unknown libraryTypeId {type_id!r}")


async def _check_entities_fit(res: Resources, conn: asyncpg.Connection, principal: Principal, lid: UUID, type_id: str) -> None:
    """A library moving to a type whose entity schema one of its entities fails is refused, naming the entity."""
    from gateway.services.library import catalogue, entity_schema

    schema = await catalogue.entity_schema_of(res, principal.org_id, type_id)
    if not schema:
        return
    for entity in await entity_q.jsondata_of_library(conn, principal.org_id, lid):
        problem = entity_schema.violation(schema, entity["jsondata"])
        if problem:
            raise InvalidInput(f"entity {entity['name']!r} ({entity['id']}) does not satisfy the entity schema of {type_id!r}: {problem}")


async def get(res: Resources, principal: Principal, library_id: object) -> Library:
    lid = parse_id(library_id)
    principal.check_library(lid)
    async with res.pool.acquire() as conn:
        row = await q.by_id(conn, principal.org_id, lid)
    if row is None:
        raise NotFound()
    return row


async def create(res: Resources, principal: Principal, data: dict[str, Any]) -> Library:
    principal.require_write()
    name = clean_name(data.get("name"), "library")
    for key in ("organization_id", "application_id"):
        # Each organization is its own application here; another organization's ID names nothing to create in.
        if data.get(key) is not None and parse_id(data[key]) != principal.org_id:
            raise NotFound(data={"objectType": "organization"})
    type_id = data.get("library_type_id")
    if not type_id:
        raise InvalidInput("libraryTypeId is required")
    async with res.pool.acquire() as conn:
        await _check_type(conn, principal.org_id, type_id)
        return await q.insert(
            conn,
            id=uuid4(),
            org_id=principal.org_id,
            name=name,
            description=data.get("description"),
            library_type_id=type_id,
            cover_image_url=data.get("cover_image_url"),
            actor=principal.actor,
        )


async def update(res: Resources, principal: Principal, library_id: object, changes: dict[str, Any]) -> Library:
    principal.require_write()
    lid = parse_id(library_id)
    if "name" in changes:
        changes["name"] = clean_name(changes["name"], "library")
    async with res.pool.acquire() as conn, conn.transaction():
        if changes.get("library_type_id"):
            await _check_type(conn, principal.org_id, changes["library_type_id"])
            await _check_entities_fit(res, conn, principal, lid, changes["library_type_id"])
        row = await q.update(conn, principal.org_id, lid, {**changes, "actor": principal.actor})
    if row is None:
        raise NotFound()
    return row


async def delete(res: Resources, principal: Principal, library_id: object) -> UUID:
    """Removes the library, its entities, identifiers, engine models and their S3 objects."""
    principal.require_write()
    lid = parse_id(library_id)
    async with res.pool.acquire() as conn, conn.transaction():
        if await q.by_id(conn, principal.org_id, lid, for_update=True) is None:
            raise NotFound()
        keys = await q.storage_keys(conn, lid)
        await blob_cleanup.schedule(conn, keys)
        await job_q.cancel_for_library(conn, principal.org_id, lid)
        await q.delete(conn, principal.org_id, lid)
    await blob_cleanup.delete_now(res, keys)
    return lid


async def list_page(
    res: Resources,
    principal: Principal,
    *,
    library_id: object | None,
    name: str | None,
    type_id: str | None,
    identifier_type_ids: list[str] | None,
    order_by: str,
    descending: bool,
    offset: int | None,
    limit: int | None,
) -> Page[Library]:
    offset, limit = check_page(offset, limit, res.settings.max_page_size)
    lid = parse_id(library_id) if library_id is not None else None
    if principal.is_task:
        # A task token sees its task's library only (and none when the task has no library).
        wanted = principal.library_id
        if wanted is None or lid not in (None, wanted):
            return Page([], offset, limit, 0)
        lid = wanted
    async with res.pool.acquire() as conn:
        rows, total = await q.page(
            conn,
            principal.org_id,
            library_id=lid,
            name=name,
            type_id=type_id,
            identifier_type_ids=identifier_type_ids,
            order_by=order_by,
            descending=descending,
            offset=offset,
            limit=limit,
        )
    return Page(rows, offset, limit, total)
