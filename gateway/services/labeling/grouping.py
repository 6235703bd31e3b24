"""Auto-grouping's results: a job's groups, their members and representative, and turning a group into an
entity (``createEntityFromGroup``) or merging it into one (``mergeGroupIntoEntity``).

Only the members still unassigned move: one a person placed elsewhere since the grouping stays where it is, and
one a person marked not the entity (markIdentifierNotEntity) stays unassigned.
Moving is one transaction; the members' pending suggestions are rejected with it (a person decided).
"""

from __future__ import annotations

from uuid import UUID, uuid4

import asyncpg

from gateway.errors import InvalidInput, NotFound
from gateway.resources import Resources
from gateway.services.access.ids import parse_id
from gateway.services.access.paging import Page, check_page
from gateway.services.access.principal import Principal
from gateway.services.library.entities import check_schema
from gateway.services.library.libraries import clean_name
from storage.queries import entities as entity_q
from storage.queries import jobs as job_q
from storage.queries import labeling as labeling_q
from storage.queries import libraries as library_q
from storage.queries import suggestions as q
from storage.queries.suggestions import Group
from storage.rows import Entity, Identifier


async def groups(res: Resources, principal: Principal, job_id: object, offset: int | None, limit: int | None) -> Page[Group]:
    offset, limit = check_page(offset, limit, res.settings.max_page_size)
    jid = parse_id(job_id)
    if principal.is_task:
        raise NotFound()
    async with res.pool.acquire() as conn:
        if await job_q.job_by_id(conn, principal.org_id, jid) is None:
            raise NotFound(data={"objectType": "job"})
        rows, total = await q.group_page(conn, principal.org_id, jid, offset, limit)
    return Page(rows, offset, limit, total)


async def members(res: Resources, principal: Principal, group: Group, offset: int | None, limit: int | None) -> Page[Identifier]:
    offset, limit = check_page(offset, limit, res.settings.max_page_size)
    async with res.pool.acquire() as conn:
        records, total = await q.group_members(conn, principal.org_id, group.id, offset, limit)
    return Page([Identifier.of(r) for r in records], offset, limit, total)


async def representative(res: Resources, principal: Principal, group: Group) -> Identifier | None:
    if group.representative_id is None:
        return None
    from storage.queries import identifiers as identifier_q

    async with res.pool.acquire() as conn:
        return await identifier_q.by_id(conn, principal.org_id, group.representative_id)


async def _group(conn: asyncpg.Connection, principal: Principal, group_id: object) -> Group:
    row = await q.group_by_id(conn, principal.org_id, parse_id(group_id))
    if row is None:
        raise NotFound(data={"objectType": "identifierGroup"})
    return row


async def _move(conn: asyncpg.Connection, principal: Principal, group: Group, entity_id: UUID) -> None:
    # A member a person marked not this entity (markIdentifierNotEntity) stays unassigned.
    ids = await q.unassigned_members(conn, principal.org_id, group.id, entity_id)
    if not ids:
        raise InvalidInput(
            f"every member of group {group.id} has been assigned or deleted since it was grouped, or is marked not entity {entity_id}"
        )
    await labeling_q.assign(conn, principal.org_id, ids, entity_id)
    await q.supersede(conn, principal.org_id, ids, principal.actor)


async def create_entity(res: Resources, principal: Principal, group_id: object, name: str) -> Entity:
    """A new entity named ``name`` in the group's library, holding the group's unassigned members."""
    principal.require_write()
    name = clean_name(name, "entity")
    async with res.pool.acquire() as conn, conn.transaction():
        group = await _group(conn, principal, group_id)
        library = await library_q.by_id(conn, principal.org_id, group.library_id)
        if library is None:
            raise NotFound(data={"objectType": "library"})
        await check_schema(res, principal, library.library_type_id, {})
        try:
            async with conn.transaction():
                entity = await entity_q.insert(
                    conn, id=uuid4(), org_id=principal.org_id, library_id=library.id, name=name, description=None,
                    jsondata={}, profile_image_url=None, is_published=False, actor=principal.actor,
                )
        except asyncpg.UniqueViolationError:
            raise InvalidInput(
                f"an entity named {name!r} already exists in this library; use mergeGroupIntoEntity to add the group to it"
            ) from None
        await _move(conn, principal, group, entity.id)
    return entity


async def merge(res: Resources, principal: Principal, group_id: object, entity_id: object) -> Entity:
    """Move the group's unassigned members into an existing entity of the same library."""
    principal.require_write()
    eid = parse_id(entity_id)
    async with res.pool.acquire() as conn, conn.transaction():
        group = await _group(conn, principal, group_id)
        entity = await entity_q.by_id(conn, principal.org_id, eid)
        if entity is None:
            raise NotFound(data={"objectType": "entity"})
        if entity.library_id != group.library_id:
            raise InvalidInput(f"entity {eid} is in another library than group {group.id}")
        await _move(conn, principal, group, entity.id)
    return entity
