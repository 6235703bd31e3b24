"""Entity rules: names unique in a library, tenancy, deletes that take their S3 objects along."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from gateway.errors import InvalidInput, NotFound
from gateway.resources import Resources
from gateway.services import blob_cleanup
from gateway.services.access.ids import parse_id, try_parse_ids
from gateway.services.access.paging import Page, check_page
from gateway.services.access.principal import Principal
from gateway.services.library.libraries import clean_name
from storage.queries import entities as q
from storage.queries import libraries as library_q
from storage.rows import Entity

MAX_JSONDATA_BYTES = 1024 * 1024


def check_jsondata(value: Any) -> Any:
    if value is None:
        return {}
    if isinstance(value, str):
        # Clients sometimes send JSON encoded as a string; accept it when it is an object.
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise InvalidInput(f"jsondata is not valid JSON: {exc.msg}") from exc
    return _check_size(value)


def _check_size(value: Any) -> Any:
    if len(json.dumps(value)) > MAX_JSONDATA_BYTES:
        raise InvalidInput(f"jsondata must be at most {MAX_JSONDATA_BYTES} bytes")
    return value


def jsondata_of(data: dict[str, Any], *, partial: bool = False) -> Any:
    """jsondata or jsonstring (a JSON text), not both, as the API's inputs take them. With partial, a
    missing pair is the UNSET marker `...` (leave the stored value)."""
    sent_data, sent_string = "jsondata" in data, data.get("jsonstring") is not None
    if sent_data and sent_string and data["jsondata"] is not None:
        raise InvalidInput("send jsondata or jsonstring, not both")
    if sent_string:
        text = data["jsonstring"]
        if len(text) > MAX_JSONDATA_BYTES:
            raise InvalidInput(f"jsonstring must be at most {MAX_JSONDATA_BYTES} bytes")
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise InvalidInput(f"jsonstring is not valid JSON: {exc.msg}") from exc
        return _check_size({} if value is None else value)
    if sent_data:
        return check_jsondata(data["jsondata"])
    return ... if partial else {}


async def _check_schema(res: Resources, principal: Principal, library_type_id: str, jsondata: Any) -> None:
    from gateway.services.library import catalogue, entity_schema

    schema = await catalogue.entity_schema_of(res, principal.org_id, library_type_id)
    entity_schema.check_jsondata(schema, jsondata, library_type_id)


check_schema = _check_schema  # for the services that create entities themselves (suggestions, grouping)


def _duplicate(exc: asyncpg.UniqueViolationError, name: str) -> InvalidInput:
    return InvalidInput(f"an entity named {name!r} already exists in this library")


async def get(res: Resources, principal: Principal, entity_id: object) -> Entity:
    eid = parse_id(entity_id)
    async with res.pool.acquire() as conn:
        row = await q.by_id(conn, principal.org_id, eid)
    if row is None:
        raise NotFound()
    principal.check_library(row.library_id)
    return row


async def create(res: Resources, principal: Principal, data: dict[str, Any]) -> Entity:
    principal.require_write()
    name = clean_name(data.get("name"), "entity")
    if not data.get("library_id"):
        raise InvalidInput("libraryId is required")
    lid = parse_id(data["library_id"])
    jsondata = jsondata_of(data)
    async with res.pool.acquire() as conn:
        library = await library_q.by_id(conn, principal.org_id, lid)
        if library is None:
            raise NotFound(data={"objectType": "library"})
        await _check_schema(res, principal, library.library_type_id, jsondata)
        try:
            return await q.insert(
                conn,
                id=uuid4(),
                org_id=principal.org_id,
                library_id=lid,
                name=name,
                description=data.get("description"),
                jsondata=jsondata,
                profile_image_url=data.get("profile_image_url"),
                is_published=bool(data.get("is_published") or False),
                actor=principal.actor,
            )
        except asyncpg.UniqueViolationError as exc:
            raise _duplicate(exc, name) from None


async def update(res: Resources, principal: Principal, entity_id: object, changes: dict[str, Any]) -> Entity:
    principal.require_write()
    eid = parse_id(entity_id)
    if "name" in changes:
        changes["name"] = clean_name(changes["name"], "entity")
    jsondata = jsondata_of(changes, partial=True)
    changes.pop("jsonstring", None)
    changes.pop("jsondata", None)
    async with res.pool.acquire() as conn:
        if jsondata is not ...:
            changes["jsondata"] = jsondata
            entity = await q.by_id(conn, principal.org_id, eid)
            library = await library_q.by_id(conn, principal.org_id, entity.library_id) if entity else None
            if library is None:
                raise NotFound()
            await _check_schema(res, principal, library.library_type_id, jsondata)
        try:
            row = await q.update(conn, principal.org_id, eid, {**changes, "actor": principal.actor})
        except asyncpg.UniqueViolationError as exc:
            raise _duplicate(exc, changes.get("name", "")) from None
    if row is None:
        raise NotFound()
    return row


async def delete(res: Resources, principal: Principal, entity_id: object) -> UUID:
    principal.require_write()
    eid = parse_id(entity_id)
    async with res.pool.acquire() as conn, conn.transaction():
        keys = await q.storage_keys(conn, eid)
        await blob_cleanup.schedule(conn, keys)
        if not await q.delete(conn, principal.org_id, eid):
            raise NotFound()
    await blob_cleanup.delete_now(res, keys)
    return eid


async def list_page(
    res: Resources,
    principal: Principal,
    *,
    library_ids: list[object] | None,
    ids: list[object] | None,
    is_published: bool | None,
    name: str | None,
    identifier_type_id: str | None,
    order_by: str,
    descending: bool,
    offset: int | None,
    limit: int | None,
) -> Page[Entity]:
    offset, limit = check_page(offset, limit, res.settings.max_page_size)
    if library_ids is None and ids is None:
        raise InvalidInput("entities needs libraryIds or ids")
    lib_ids = try_parse_ids(library_ids) if library_ids is not None else None
    if principal.is_task:
        lib_ids = [i for i in (lib_ids or [principal.library_id]) if i == principal.library_id]
    async with res.pool.acquire() as conn:
        rows, total = await q.page(
            conn,
            principal.org_id,
            library_ids=lib_ids,
            ids=try_parse_ids(ids) if ids is not None else None,
            is_published=is_published,
            name=name,
            identifier_type_id=identifier_type_id,
            order_by=order_by,
            descending=descending,
            offset=offset,
            limit=limit,
        )
    return Page(rows, offset, limit, total)


async def library_pages(
    res: Resources,
    principal: Principal,
    library_ids: list[UUID],
    *,
    ids: list[object] | None,
    is_published: bool | None,
    name: str | None,
    identifier_type_id: str | None,
    order_by: str,
    descending: bool,
    offset: int | None,
    limit: int | None,
) -> dict[UUID, Page[Entity]]:
    """The same page of entities for several libraries, in one query (Library.entities' DataLoader)."""
    offset, limit = check_page(offset, limit, res.settings.max_page_size)
    visible = [i for i in library_ids if not principal.is_task or i == principal.library_id]
    pages: dict[UUID, Page[Entity]] = {i: Page([], offset, limit, 0) for i in library_ids}
    if not visible:
        return pages
    async with res.pool.acquire() as conn:
        rows, totals = await q.pages_for_libraries(
            conn, principal.org_id, visible, ids=try_parse_ids(ids) if ids is not None else None,
            is_published=is_published, name=name, identifier_type_id=identifier_type_id,
            order_by=order_by, descending=descending, offset=offset, limit=limit,
        )
    pages.update({i: Page(rows[i], offset, limit, totals[i]) for i in visible})
    return pages
