"""Engine records: installed engines registered at start-up, external ones created by organizations."""

from __future__ import annotations

import logging
import re
from typing import Any

from gateway.errors import InvalidInput, NotFound
from gateway.services.paging import Page, check_page
from gateway.services.principal import Principal
from storage.queries import engines as q
from storage.queries import types as type_q
from storage.rows import Engine

log = logging.getLogger(__name__)

_ENGINE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MODES = ("library-train", "library-run")
RESERVED_PREFIX = "engineshed-"  # built-in engines; an organization taking one would block its registration


def config_schema(info: Any) -> list[dict[str, Any]]:
    return [
        {
            "name": o.name,
            "type": o.type.__name__,
            "default": o.default,
            "description": o.description,
            "minimum": o.minimum,
            "maximum": o.maximum,
            "choices": list(o.choices) if o.choices else None,
        }
        for o in info.config
    ]


async def register_installed(res: Any) -> None:
    """Upsert an Engine record for every engine installed in this process."""
    async with res.pool.acquire() as conn:
        for engine in res.engines.values():
            info = engine.info
            row = await q.upsert_installed(
                conn,
                id=info.id,
                name=info.name,
                category_id=info.category_id,
                identifier_type_ids=info.identifier_type_ids,
                library_type_ids=info.library_type_ids,
                modes=info.modes,
                library_required=info.library_required,
                concurrency_limit=info.concurrency_limit,
                version=info.version,
                config_schema=config_schema(info),
            )
            if row is None:
                log.error("engine id %s is taken by an organization's external engine; not registered", info.id)


async def get(res: Any, principal: Principal, engine_id: str) -> Engine:
    async with res.pool.acquire() as conn:
        row = await q.by_id(conn, principal.org_id, str(engine_id))
    if row is None:
        raise NotFound()
    return row


async def list_page(
    res: Any,
    principal: Principal,
    *,
    ids: list[str] | None,
    category_id: str | None,
    library_required: bool | None,
    name: str | None,
    offset: int | None,
    limit: int | None,
) -> Page[Engine]:
    offset, limit = check_page(offset, limit, res.settings.max_page_size)
    async with res.pool.acquire() as conn:
        rows, total = await q.page(
            conn, principal.org_id, ids=ids, category_id=category_id, library_required=library_required,
            name=name, offset=offset, limit=limit,
        )
    return Page(rows, offset, limit, total)


async def categories(res: Any, principal: Principal, *, category_id: str | None, name: str | None) -> list[list[Engine]]:
    """Engines visible to the caller grouped by category (a category is described by its engines)."""
    async with res.pool.acquire() as conn:
        rows, _ = await q.page(
            conn, principal.org_id, ids=None, category_id=category_id, library_required=None, name=None,
            offset=0, limit=10_000,
        )
    grouped: dict[str, list[Engine]] = {}
    for row in rows:
        grouped.setdefault(row.category_id, []).append(row)
    wanted = (name or "").lower()
    return [
        engines for key, engines in sorted(grouped.items())
        if not wanted or wanted in key.replace("-", " ").lower()
    ]


async def create_external(res: Any, principal: Principal, data: dict[str, Any]) -> Engine:
    """An engine that runs elsewhere and claims its tasks through GraphQL with an engine token."""
    principal.require_admin()
    engine_id = str(data.get("id") or "")
    if not _ENGINE_ID.match(engine_id):
        raise InvalidInput("engine id must be 1-128 letters, digits, '.', '_' or '-'")
    if engine_id.lower().startswith(RESERVED_PREFIX) or engine_id in res.engines:
        raise InvalidInput(f"the engine id {engine_id!r} is reserved for installed engines")
    modes = list(data.get("modes") or ["library-train"])
    if any(m not in MODES for m in modes):
        raise InvalidInput(f"modes must be among {', '.join(MODES)}")
    types = list(data.get("identifier_type_ids") or [])
    if not types:
        raise InvalidInput("identifierTypeIds must name at least one identifier type")
    limit = int(data.get("concurrency_limit") or 2)
    if not 1 <= limit <= 10_000:
        raise InvalidInput("concurrencyLimit must be between 1 and 10000")
    import asyncpg

    async with res.pool.acquire() as conn:
        known = {t.id for t in await type_q.identifier_types(conn, principal.org_id)}
        unknown = [t for t in types if t not in known]
        if unknown:
            raise InvalidInput(f"unknown identifier types: {', '.join(unknown)}")
        try:
            return await q.insert_external(
                conn,
                principal.org_id,
                id=engine_id,
                name=str(data.get("name") or engine_id),
                category_id=str(data.get("category_id") or "custom"),
                identifier_type_ids=types,
                library_type_ids=list(data.get("library_type_ids") or []),
                modes=modes,
                library_required=bool(data.get("library_required", True)),
                concurrency_limit=limit,
            )
        except asyncpg.UniqueViolationError:
            # Engine ids are one namespace across organizations: say no more than "taken".
            raise InvalidInput(f"the engine id {engine_id!r} is not available; choose another") from None
