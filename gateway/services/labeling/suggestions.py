"""Suggestions and unassigned identifiers: reading them, and a person's accepting or rejecting them in bulk.

The annotation type moves raw (no entity) → machine (a model suggested one) → human (a person placed or
confirmed it). Accepting moves the identifier into the suggested entity, creating that entity in the
identifier's library when a classifier label has none there yet; rejecting leaves it unassigned (raw again
once no pending suggestion is left). Each call is one transaction: all of it happens, or none.
"""

from __future__ import annotations

from uuid import UUID, uuid4

import asyncpg

from gateway.errors import InvalidInput, NotFound
from gateway.resources import Resources
from gateway.services.access.ids import parse_id, try_parse_ids
from gateway.services.access.paging import Page, check_page
from gateway.services.access.principal import Principal
from gateway.services.library.entities import check_schema
from gateway.services.library.libraries import clean_name
from gateway.services.selection import IdentifierSelection
from storage.queries import entities as entity_q
from storage.queries import labeling as labeling_q
from storage.queries import libraries as library_q
from storage.queries import suggestions as q
from storage.queries.suggestions import Suggestion
from storage.rows import Identifier

STATUSES = ("pending", "accepted", "rejected")
MAX_IDS = 1000  # per accept/reject call


async def unassigned(
    res: Resources, principal: Principal, library_id: object, selection: IdentifierSelection, *, hard: bool | None,
    offset: int | None, limit: int | None,
) -> Page[Identifier]:
    """A library's unassigned identifiers; with ``hard`` true the hardest (least margin) come first."""
    offset, limit = check_page(offset, limit, res.settings.max_page_size)
    lid = parse_id(library_id)
    principal.check_library(lid)
    async with res.pool.acquire() as conn:
        if await library_q.by_id(conn, principal.org_id, lid) is None:
            raise NotFound(data={"objectType": "library"})
        rows, total = await labeling_q.unassigned_page(
            conn, principal.org_id, lid, hard=hard, conditions=selection.conditions("i", 4),
            order="hardness" if hard else "created", offset=offset, limit=limit,
        )
    return Page(rows, offset, limit, total)


def _maybe_id(value: object | None) -> UUID | None:
    """A filter's ID: a malformed one matches nothing (the nil UUID), like a made-up one."""
    if value is None:
        return None
    parsed = try_parse_ids([value])
    return parsed[0] if parsed else UUID(int=0)


async def list_page(
    res: Resources, principal: Principal, *, job_id: object | None, identifier_id: object | None, library_id: object | None,
    status: str | None, offset: int | None, limit: int | None,
) -> Page[Suggestion]:
    offset, limit = check_page(offset, limit, res.settings.max_page_size)
    if job_id is None and identifier_id is None and library_id is None:
        raise InvalidInput("give jobId, identifierId or libraryId")
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}")
    if principal.is_task:
        raise NotFound()
    async with res.pool.acquire() as conn:
        rows, total = await q.page(
            conn, principal.org_id, job_id=_maybe_id(job_id), identifier_id=_maybe_id(identifier_id),
            library_id=_maybe_id(library_id), status=status, offset=offset, limit=limit,
        )
    return Page(rows, offset, limit, total)


def _ids(ids: list[object]) -> list[UUID]:
    if not ids:
        raise InvalidInput("ids must name at least one suggestion")
    if len(ids) > MAX_IDS:
        raise InvalidInput(f"at most {MAX_IDS} suggestions per call")
    return list(dict.fromkeys(parse_id(i) for i in ids))


async def _locked_pending(conn: asyncpg.Connection, principal: Principal, ids: list[UUID]) -> list[Suggestion]:
    """The suggestions, locked with their identifiers (identifiers first, as grouping's moves take them, so the
    two never wait on each other in opposite orders); not_found or invalid_input unless all are pending."""
    seen = await q.by_ids(conn, principal.org_id, ids)
    await labeling_q.lock(conn, principal.org_id, sorted({r.identifier_id for r in seen}))
    rows = await q.lock_by_ids(conn, principal.org_id, ids)
    found = {r.id for r in rows}
    missing = [str(i) for i in ids if i not in found]
    if missing:
        # The same answer for another organization's suggestion as for a made-up one.
        raise NotFound(data={"objectType": "suggestion", "id": missing[0]})
    decided = [r for r in rows if r.status != "pending"]
    if decided:
        raise InvalidInput(f"suggestion {decided[0].id} is {decided[0].status} already; only pending ones can be decided")
    return rows


async def entity_for(res: Resources, conn: asyncpg.Connection, principal: Principal, library_id: UUID, name: str) -> UUID:
    """The library's entity of that name, created (in a savepoint) when there is none; concurrent creators
    of the same name meet on the unique constraint and both use the one that won."""
    existing = await q.entity_by_name(conn, principal.org_id, library_id, name)
    if existing is not None:
        return existing
    library = await library_q.by_id(conn, principal.org_id, library_id)
    if library is None:
        raise NotFound(data={"objectType": "library"})
    await check_schema(res, principal, library.library_type_id, {})
    try:
        async with conn.transaction():
            entity = await entity_q.insert(
                conn, id=uuid4(), org_id=principal.org_id, library_id=library_id, name=clean_name(name, "entity"),
                description=None, jsondata={}, profile_image_url=None, is_published=False, actor=principal.actor,
            )
        return entity.id
    except asyncpg.UniqueViolationError:
        found = await q.entity_by_name(conn, principal.org_id, library_id, name)
        if found is None:
            raise
        return found


async def accept(res: Resources, principal: Principal, ids: list[object]) -> list[Suggestion]:
    """Move each suggestion's identifier into its entity (annotation type human), all or none."""
    principal.require_write()
    wanted = _ids(ids)
    async with res.pool.acquire() as conn, conn.transaction():
        rows = await _locked_pending(conn, principal, wanted)
        identifiers = [r.identifier_id for r in rows]
        if len(set(identifiers)) != len(identifiers):
            raise InvalidInput("two of the suggestions are for the same identifier; accept one of them")
        by_entity: dict[UUID, list[UUID]] = {}
        for row in rows:
            entity_id = row.entity_id
            if entity_id is None:
                entity_id = await entity_for(res, conn, principal, row.library_id, row.label)
                await q.set_entity(conn, principal.org_id, row.id, entity_id)
            by_entity.setdefault(entity_id, []).append(row.identifier_id)
        for entity_id, members in by_entity.items():
            await labeling_q.assign(conn, principal.org_id, members, entity_id)
        done = await q.set_status(conn, principal.org_id, wanted, "accepted", principal.actor)
        await q.supersede(conn, principal.org_id, identifiers, principal.actor)
    return _in_order(done, wanted)


async def reject(res: Resources, principal: Principal, ids: list[object]) -> list[Suggestion]:
    """Mark the suggestions rejected; their identifiers stay where they are."""
    principal.require_write()
    wanted = _ids(ids)
    async with res.pool.acquire() as conn, conn.transaction():
        rows = await _locked_pending(conn, principal, wanted)
        done = await q.set_status(conn, principal.org_id, wanted, "rejected", principal.actor)
        await labeling_q.back_to_raw(conn, principal.org_id, list({r.identifier_id for r in rows}))
    return _in_order(done, wanted)


def _in_order(rows: list[Suggestion], ids: list[UUID]) -> list[Suggestion]:
    by_id = {r.id: r for r in rows}
    return [by_id[i] for i in ids if i in by_id]
