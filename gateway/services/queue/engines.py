"""Engine records: installed engines registered at start-up, external ones created by organizations."""

from __future__ import annotations

import inspect
import logging
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from gateway.errors import InvalidInput, NotFound
from gateway.resources import Resources
from gateway.services.access.ids import try_parse_ids
from gateway.services.access.paging import Page, check_page
from gateway.services.access.principal import Principal
from storage.queries import engines as q
from storage.queries import types as type_q
from storage.rows import Engine, Task

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


def summary_of(engine: Any) -> str | None:
    """An installed engine's description: the first paragraph of its class docstring."""
    doc = inspect.getdoc(type(engine))
    return " ".join(doc.split("\n\n")[0].split()) if doc else None


async def register_installed(res: Resources) -> None:
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
                description=summary_of(engine),
            )
            if row is None:
                log.error("engine id %s is taken by an organization's external engine; not registered", info.id)


async def get(res: Resources, principal: Principal, engine_id: str) -> Engine:
    async with res.pool.acquire() as conn:
        row = await q.by_id(conn, principal.org_id, str(engine_id))
    if row is None:
        raise NotFound()
    return row


# What the reference schema says of engines that has one answer for every engine here.
MODE = "Batch"  # every task reads its whole input (a library, or the media of a run) and answers once
ENGINE_TYPE = "Cognition"  # engines here recognize; none ingests or aggregates
BUILTIN_DEPLOYMENT_MODEL = "MostlyNetworkIsolated"  # installed engines send nothing out; URL fetches come in
METRICS_WINDOW = timedelta(days=7)  # the longest taskMetrics range


def engine_filters(
    *,
    category_id: str | None = None,
    library_required: bool | None = None,
    name: str | None = None,
    category: str | None = None,
    states: list[str] | None = None,
    owned: bool | None = None,
    creates_tdo: bool | None = None,
    filter: dict[str, Any] | None = None,
) -> q.EngineFilters | None:
    """Query.engines' arguments (and an EngineFilter) as storage filters; None when nothing can match."""
    f = filter or {}
    if creates_tdo:  # no engine here creates a media object
        return None
    if f.get("mode") is not None and MODE not in f["mode"]:
        return None
    if f.get("type") is not None and ENGINE_TYPE not in f["type"]:
        return None
    builtin = None
    if f.get("deployment_model") is not None:
        if f["deployment_model"] != BUILTIN_DEPLOYMENT_MODEL:
            return None
        builtin = True
    categories = [c for c in (f.get("category") or []) if c is not None]
    if category is not None:
        categories.append(category)
    return q.EngineFilters(
        category_id=category_id,
        library_required=library_required,
        name=name,
        states=tuple(states) if states is not None else None,
        owned=owned,
        categories=tuple(categories) if categories else None,  # an empty list filters nothing out
        trainable=f.get("trainable_via_api"),
        runtime_types=tuple(f["runtime_type"]) if f.get("runtime_type") is not None else None,
        builtin=builtin,
    )


async def list_page(
    res: Resources,
    principal: Principal,
    *,
    ids: list[str] | None,
    filters: q.EngineFilters | None,
    order: list[tuple[str, bool]] | None = None,
    offset: int | None,
    limit: int | None,
) -> Page[Engine]:
    offset, limit = check_page(offset, limit, res.settings.max_page_size)
    if filters is None:
        return Page([], offset, limit, 0)
    async with res.pool.acquire() as conn:
        rows, total = await q.page(conn, principal.org_id, ids=ids, filters=filters, order=order or (), offset=offset, limit=limit)
    return Page(rows, offset, limit, total)


async def category_pages(
    res: Resources,
    principal: Principal,
    category_ids: list[str],
    *,
    filters: q.EngineFilters | None,
    order: list[tuple[str, bool]],
    offset: int | None,
    limit: int | None,
) -> dict[str, Page[Engine]]:
    """The same page of engines for several categories, in one query (EngineCategory.engines' DataLoader)."""
    offset, limit = check_page(offset, limit, res.settings.max_page_size)
    if filters is None:
        return {c: Page([], offset, limit, 0) for c in category_ids}
    async with res.pool.acquire() as conn:
        pages, totals = await q.pages_for_categories(
            conn, principal.org_id, category_ids, filters=filters, order=order, offset=offset, limit=limit
        )
    return {c: Page(pages[c], offset, limit, totals[c]) for c in category_ids}


async def categories(
    res: Resources, principal: Principal, *, category_id: str | None, name: str | None, engine_type: str | None = None
) -> list[list[Engine]]:
    """Active engines visible to the caller grouped by category (a category is described by its engines).
    Every category here is of engine type Cognition: another type matches none."""
    if engine_type is not None and engine_type.lower() != ENGINE_TYPE.lower():
        return []
    async with res.pool.acquire() as conn:
        rows, _ = await q.page(conn, principal.org_id, ids=None, filters=q.EngineFilters(category_id=category_id),
                               offset=0, limit=10_000)
    grouped: dict[str, list[Engine]] = {}
    for row in rows:
        grouped.setdefault(row.category_id, []).append(row)
    wanted = (name or "").lower()
    return [
        engines for key, engines in sorted(grouped.items())
        if not wanted or wanted in key.replace("-", " ").lower()
    ]


async def task_pages(
    res: Resources,
    principal: Principal,
    engine_ids: list[str],
    *,
    statuses: list[str] | None,
    task_id: object | None,
    date_field: str,
    from_time: datetime | None,
    to_time: datetime | None,
    has_source_asset: bool | None,
    offset: int | None,
    limit: int | None,
) -> dict[str, Page[Task]]:
    """Engine.tasks: the caller's organization's tasks of each engine, newest first. A task token sees its own task only."""
    offset, limit = check_page(offset, limit, res.settings.max_page_size)
    empty = {e: Page([], offset, limit, 0) for e in engine_ids}
    if has_source_asset:  # tasks here read libraries and URLs, never a stored source asset
        return empty
    tid = None
    if task_id is not None:
        parsed = try_parse_ids([task_id])
        if not parsed:
            return empty
        tid = parsed[0]
    if principal.is_task:
        if tid not in (None, principal.task_id):
            return empty
        tid = principal.task_id
    async with res.pool.acquire() as conn:
        pages, totals = await q.task_pages(
            conn, principal.org_id, engine_ids, statuses=statuses, task_id=tid, date_field=date_field,
            from_time=from_time, to_time=to_time, offset=offset, limit=limit,
        )
    return {e: Page(pages[e], offset, limit, totals[e]) for e in engine_ids}


def metrics_window(from_time: datetime | None, to_time: datetime | None) -> tuple[datetime, datetime]:
    """Engine.taskMetrics' range: at most seven days; the last seven days by default."""
    end = to_time or ((from_time + METRICS_WINDOW) if from_time else datetime.now(timezone.utc))
    start = from_time or (end - METRICS_WINDOW)
    if start > end:
        raise InvalidInput("taskMetrics: fromDateTime must not be after toDateTime")
    if end - start > METRICS_WINDOW:
        raise InvalidInput("taskMetrics: the range may be at most 7 days")
    return start, end


async def task_metrics(res: Resources, principal: Principal, engine_ids: list[str], start: datetime, end: datetime) -> dict[str, dict[str, int]]:
    """Counts of the caller's organization's tasks per engine and status, created in the window."""
    if principal.is_task:  # a task token reads its own task, not its organization's workload
        return {e: {} for e in engine_ids}
    async with res.pool.acquire() as conn:
        return await q.task_metrics(conn, principal.org_id, engine_ids, start, end)


async def create_external(res: Resources, principal: Principal, data: dict[str, Any]) -> Engine:
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
    description = data.get("description")
    if description is not None and len(description) > 4096:
        raise InvalidInput("description must be at most 4096 characters")
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
                description=description,
                actor=principal.actor,
            )
        except asyncpg.UniqueViolationError:
            # Engine ids are one namespace across organizations: say no more than "taken".
            raise InvalidInput(f"the engine id {engine_id!r} is not available; choose another") from None
