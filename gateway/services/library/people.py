"""People change: merging entities, moving an identifier to another entity, and "not this person".

* ``merge``: the sources' identifiers (their stored vectors are the identifiers', so they follow), the
  suggestions that named a source, the negatives against a source and the records of earlier merges move
  into the target; what each source was (name, description, jsondata) is kept as a record of the target
  (``Entity.aliases``, ``Entity.mergedEntities``); then the sources are deleted. One transaction.
* ``place``: one identifier into another entity of its library, or back among the unassigned.
* ``mark_not``: "identifier X is not entity E", kept as a negative (cannot-link). X's pending suggestions of
  E are rejected; when X is E's, it leaves E (unassigned, raw), because an identifier is never assigned to an
  entity it is marked not to be. Training never uses X as E's example, auto-tagging never suggests E for X,
  and a group merged into E leaves X out. Placing X into E later is a person changing their mind: the
  negative goes.

Entities and identifiers of another organization answer not_found exactly as made-up IDs do.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID, uuid4

import asyncpg

from gateway.errors import InvalidInput, NotFound
from gateway.resources import Resources
from gateway.services.access.ids import parse_id
from gateway.services.access.paging import Page, check_page
from gateway.services.access.principal import Principal
from storage.queries import entities as entity_q
from storage.queries import labeling as labeling_q
from storage.queries import people as q
from storage.queries import suggestions as suggestion_q
from storage.queries.people import Merge
from storage.rows import Entity, Identifier

MAX_MERGE = 100  # source entities per mergeEntities call


@dataclass(frozen=True, slots=True)
class Marked:
    """What markIdentifierNotEntity did: the identifier as it is now, the entity, and what changed."""

    identifier: Identifier
    entity: Entity
    unassigned: bool  # it was the entity's and left it
    rejected_suggestions: list[UUID]


def _entity_ids(values: list[object]) -> list[UUID]:
    if not values:
        raise InvalidInput("sourceIds must name at least one entity to merge")
    if len(values) > MAX_MERGE:
        raise InvalidInput(f"at most {MAX_MERGE} entities per mergeEntities call; merge in several calls")
    return list(dict.fromkeys(parse_id(v) for v in values))


async def _entity(conn: asyncpg.Connection, principal: Principal, entity_id: UUID) -> Entity:
    row = await entity_q.by_id(conn, principal.org_id, entity_id)
    if row is None:
        raise NotFound(data={"objectType": "entity"})
    principal.check_library(row.library_id)
    return row


async def merge(res: Resources, principal: Principal, target_id: object, source_ids: list[object]) -> Entity:
    """Merge the sources into the target (all of one library); the target as it is after."""
    principal.require_write()
    target = parse_id(target_id)
    sources = _entity_ids(source_ids)
    if target in sources:
        raise InvalidInput("the target is among sourceIds: an entity cannot be merged into itself")
    everyone = sorted([target, *sources])
    async with res.pool.acquire() as conn, conn.transaction():
        seen = {e.id: e for e in await entity_q.by_ids(conn, principal.org_id, everyone)}
        for eid in [target, *sources]:
            if eid not in seen:
                raise NotFound(data={"objectType": "entity"})
            principal.check_library(seen[eid].library_id)
        library = seen[target].library_id
        for eid in sources:
            if seen[eid].library_id != library:
                raise InvalidInput(
                    f"entity {eid} is in another library than the target {target}; only entities of one library merge"
                )
        # Identifiers before entities, each in id order (see storage/queries/people.py).
        await q.lock_identifiers_of(conn, principal.org_id, everyone)
        locked = await q.lock_entities(conn, principal.org_id, everyone)
        if len(locked) != len(everyone):  # one was deleted meanwhile
            raise NotFound(data={"objectType": "entity"})
        clash = await q.conflict(conn, principal.org_id, everyone)
        if clash is not None:
            raise InvalidInput(
                f"identifier {clash['identifier_id']} of entity {clash['holder']} is marked not entity "
                f"{clash['entity_id']}, and merging would make it that entity's; move the identifier to "
                f"the right entity first (updateEntityIdentifier entityId)"
            )
        counts = await q.identifier_counts(conn, principal.org_id, sources)
        row, _ = await q.merge(conn, principal.org_id, sources, target, counts, [uuid4() for _ in sources],
                               principal.actor)
    return row


async def _identifier(conn: asyncpg.Connection, principal: Principal, identifier_id: object) -> Identifier:
    row = await q.lock_identifier(conn, principal.org_id, parse_id(identifier_id))
    if row is None:
        raise NotFound(data={"objectType": "entityIdentifier"})
    principal.check_library(row.library_id)
    return row


async def place(conn: asyncpg.Connection, principal: Principal, identifier_id: object, entity_id: object | None) -> Identifier:
    """Move the identifier into ``entity_id`` of its own library, or unassign it (None), inside the caller's
    transaction. Its pending suggestions are decided by it (rejected); its negative for that entity goes."""
    row = await _identifier(conn, principal, identifier_id)
    target = None
    if entity_id is not None:
        entity = await _entity(conn, principal, parse_id(entity_id))
        if entity.library_id != row.library_id:
            raise InvalidInput(
                f"entity {entity.id} is in another library than identifier {row.id}; an identifier moves only "
                "within its library"
            )
        target = entity.id
    if target == row.entity_id:
        return row
    placed = await q.place(conn, principal.org_id, row.id, target)
    if target is not None:
        await q.delete_negative(conn, principal.org_id, row.id, target)
        await suggestion_q.supersede(conn, principal.org_id, [row.id], principal.actor)
    return placed


async def mark_not(
    res: Resources, principal: Principal, *, identifier_id: object | None, entity_id: object | None,
    suggestion_id: object | None,
) -> Marked:
    """Record "identifier is not entity": by the pair, or by a suggestion (its identifier and entity)."""
    principal.require_write()
    if suggestion_id is not None and (identifier_id is not None or entity_id is not None):
        raise InvalidInput("give suggestionId, or identifierId with entityId, not both")
    if suggestion_id is None and (identifier_id is None or entity_id is None):
        raise InvalidInput("give identifierId with entityId (a match), or suggestionId (a suggestion)")
    async with res.pool.acquire() as conn, conn.transaction():
        if suggestion_id is not None:
            found = await suggestion_q.by_ids(conn, principal.org_id, [parse_id(suggestion_id)])
            if not found:
                raise NotFound(data={"objectType": "suggestion"})
            principal.check_library(found[0].library_id)
            if found[0].entity_id is None:
                raise InvalidInput(
                    f"suggestion {found[0].id} names {found[0].label!r}, which is no entity of the library; "
                    "reject it with rejectSuggestions"
                )
            identifier_id, entity_id = found[0].identifier_id, found[0].entity_id
        row = await _identifier(conn, principal, identifier_id)
        entity = await _entity(conn, principal, parse_id(entity_id))
        if entity.library_id != row.library_id:
            raise InvalidInput(f"entity {entity.id} is in another library than identifier {row.id}")
        await q.insert_negative(conn, principal.org_id, row.id, entity.id, row.library_id, principal.actor)
        rejected = await q.reject_pending(conn, principal.org_id, row.id, entity.id, principal.actor)
        unassigned = row.entity_id == entity.id
        if unassigned:
            row = await q.place(conn, principal.org_id, row.id, None)
        elif rejected and row.entity_id is None:
            await labeling_q.back_to_raw(conn, principal.org_id, [row.id])
            row = await q.lock_identifier(conn, principal.org_id, row.id) or row
    return Marked(row, entity, unassigned, rejected)


async def unmark_not(res: Resources, principal: Principal, identifier_id: object, entity_id: object) -> Identifier:
    """Remove the negative "identifier is not entity" (nothing else changes); not_found when there is none."""
    principal.require_write()
    async with res.pool.acquire() as conn, conn.transaction():
        row = await _identifier(conn, principal, identifier_id)
        entity = await _entity(conn, principal, parse_id(entity_id))
        if not await q.delete_negative(conn, principal.org_id, row.id, entity.id):
            raise NotFound(f"identifier {row.id} is not marked not entity {entity.id}", data={"objectType": "negative"})
    return row


async def not_entities(res: Resources, principal: Principal, identifier_id: UUID) -> list[Entity]:
    async with res.pool.acquire() as conn:
        return await q.not_entities(conn, principal.org_id, identifier_id)


async def rejected_identifiers(
    res: Resources, principal: Principal, entity_id: UUID, offset: int | None, limit: int | None
) -> Page[Identifier]:
    offset, limit = check_page(offset, limit, res.settings.max_page_size)
    async with res.pool.acquire() as conn:
        rows, total = await q.rejected_identifiers(conn, principal.org_id, entity_id, offset, limit)
    return Page(rows, offset, limit, total)


async def merges_of(res: Resources, principal: Principal, entity_id: UUID) -> list[Merge]:
    async with res.pool.acquire() as conn:
        return await q.merges_of(conn, principal.org_id, entity_id)
