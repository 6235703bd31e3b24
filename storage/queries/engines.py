"""Engines: installed ones (global) and external ones (per organization)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from storage.queries.paging import fetch_page, fetch_pages_by_parent
from storage.rows import Engine, Task

UPSERT_INSTALLED = """-- an engine installed in workers: refreshed at every start, visible to all organizations
INSERT INTO engines (id, org_id, name, category_id, identifier_type_ids, library_type_ids, modes, library_required,
                     concurrency_limit, builtin, version, config_schema, description)
VALUES ($1, NULL, $2, $3, $4, $5, $6, $7, $8, true, $9, $10, $11)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, category_id = EXCLUDED.category_id, description = EXCLUDED.description,
    identifier_type_ids = EXCLUDED.identifier_type_ids, library_type_ids = EXCLUDED.library_type_ids,
    modes = EXCLUDED.modes, library_required = EXCLUDED.library_required,
    concurrency_limit = EXCLUDED.concurrency_limit, version = EXCLUDED.version,
    config_schema = EXCLUDED.config_schema, builtin = true, modified_at = now()
WHERE engines.org_id IS NULL
RETURNING *"""

INSERT_EXTERNAL = """INSERT INTO engines (id, org_id, name, category_id, identifier_type_ids, library_type_ids, modes,
                     library_required, concurrency_limit, builtin, description, created_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, false, $10, $11) RETURNING *"""

VISIBLE = "(org_id IS NULL OR org_id = $1)"
BY_ID = f"SELECT * FROM engines WHERE {VISIBLE} AND id = $2"
BY_IDS = f"SELECT * FROM engines WHERE {VISIBLE} AND id = ANY($2::text[])"

# Installed engines run in engineshed workers; the rest elsewhere, claiming through the API (Engine.runtimeType).
RUNTIME_TYPE = "(CASE WHEN builtin THEN 'worker' ELSE 'external' END)"

# The filters of Query.engines and EngineCategory.engines, $3 to $11 (see EngineFilters.args).
FILTERS = f"""({VISIBLE}
  AND ($3::text IS NULL OR category_id = $3)
  AND ($4::boolean IS NULL OR library_required = $4)
  AND ($5::text IS NULL OR strpos(lower(name), lower($5)) > 0)
  AND (CASE WHEN $6::text[] IS NULL THEN state = 'active' ELSE state = ANY($6) END)
  AND (NOT coalesce($7::boolean, false) OR org_id = $1)
  AND ($8::text[] IS NULL OR lower(category_id) = ANY($8) OR lower(replace(category_id, '-', ' ')) = ANY($8))
  AND ($9::boolean IS NULL OR (library_required AND 'library-train' = ANY(modes)) = $9)
  AND ($10::text[] IS NULL OR {RUNTIME_TYPE} = ANY($10))
  AND ($11::boolean IS NULL OR builtin = $11))"""

# Sort keys a client may name, mapped to columns (never user text).
ORDER_COLUMNS = {"name": "name", "id": "id", "state": "state", "createdDateTime": "created_at", "modifiedDateTime": "modified_at"}
DEFAULT_ORDER = "builtin DESC, name, id"

LIST = f"""SELECT *, count(*) OVER () AS total FROM engines
WHERE ($2::text[] IS NULL OR id = ANY($2)) AND {FILTERS}
ORDER BY {{order}} OFFSET $12 LIMIT $13"""

CATEGORY_PAGES = f"""-- the same page of engines for many categories at once (EngineCategory.engines' DataLoader)
SELECT * FROM (
    SELECT *, row_number() OVER (PARTITION BY category_id ORDER BY {{order}}) AS rn,
           count(*) OVER (PARTITION BY category_id) AS total
    FROM engines WHERE category_id = ANY($2::text[]) AND {FILTERS}
) ranked WHERE rn > $12 AND rn <= $12 + $13 ORDER BY category_id, rn"""

TASK_COLUMNS = {"createdDateTime": "created_at", "modifiedDateTime": "modified_at"}

ENGINE_TASK_PAGES = """-- the same page of an organization's tasks for many engines at once (Engine.tasks' DataLoader)
SELECT * FROM (
    SELECT t.*, row_number() OVER (PARTITION BY t.engine_id ORDER BY t.created_at DESC, t.id DESC) AS rn,
           count(*) OVER (PARTITION BY t.engine_id) AS total
    FROM tasks t WHERE t.org_id = $1 AND t.engine_id = ANY($2::text[])
      AND ($3::text[] IS NULL OR t.status = ANY($3))
      AND ($4::uuid IS NULL OR t.id = $4)
      AND ($5::timestamptz IS NULL OR t.{column} >= $5)
      AND ($6::timestamptz IS NULL OR t.{column} <= $6)
) ranked WHERE rn > $7 AND rn <= $7 + $8 ORDER BY engine_id, rn"""

TASK_METRICS = """-- Engine.taskMetrics: an organization's tasks of these engines created in the window, by status
SELECT engine_id, status, count(*) AS n FROM tasks
WHERE org_id = $1 AND engine_id = ANY($2::text[]) AND created_at >= $3 AND created_at <= $4
GROUP BY engine_id, status"""

COMPATIBLE = """-- engines that take libraries of this type: their identifier types overlap the library type's
SELECT e.* FROM engines e JOIN library_types t ON t.id = $2
WHERE (e.org_id IS NULL OR e.org_id = $1) AND e.state = 'active' AND e.library_required
  AND 'library-train' = ANY(e.modes) AND e.identifier_type_ids && t.identifier_type_ids
ORDER BY e.id"""

CONCURRENCY_LIMIT = "SELECT concurrency_limit FROM engines WHERE id = $1"


async def upsert_installed(conn: asyncpg.Connection, **v: Any) -> Engine | None:
    return Engine.maybe(
        await conn.fetchrow(
            UPSERT_INSTALLED,
            v["id"],
            v["name"],
            v["category_id"],
            list(v["identifier_type_ids"]),
            list(v["library_type_ids"]),
            list(v["modes"]),
            v["library_required"],
            v["concurrency_limit"],
            v["version"],
            v["config_schema"],
            v.get("description"),
        )
    )


async def insert_external(conn: asyncpg.Connection, org_id: UUID, **v: Any) -> Engine:
    return Engine.of(
        await conn.fetchrow(
            INSERT_EXTERNAL,
            v["id"],
            org_id,
            v["name"],
            v["category_id"],
            list(v["identifier_type_ids"]),
            list(v["library_type_ids"]),
            list(v["modes"]),
            v["library_required"],
            v["concurrency_limit"],
            v.get("description"),
            v.get("actor"),
        )
    )


async def by_id(conn: asyncpg.Connection, org_id: UUID, engine_id: str) -> Engine | None:
    return Engine.maybe(await conn.fetchrow(BY_ID, org_id, engine_id))


async def by_ids(conn: asyncpg.Connection, org_id: UUID, ids: list[str]) -> list[Engine]:
    return [Engine.of(r) for r in await conn.fetch(BY_IDS, org_id, ids)]


@dataclass(frozen=True, slots=True)
class EngineFilters:
    """What Query.engines and EngineCategory.engines filter on; None: no filter (states None: active only)."""

    category_id: str | None = None
    library_required: bool | None = None
    name: str | None = None
    states: tuple[str, ...] | None = None
    owned: bool | None = None
    categories: tuple[str, ...] | None = None  # names or IDs, any case
    trainable: bool | None = None
    runtime_types: tuple[str, ...] | None = None
    builtin: bool | None = None

    def args(self) -> tuple[Any, ...]:
        lowered = [c.lower() for c in self.categories] if self.categories is not None else None
        return (
            self.category_id, self.library_required, self.name, list(self.states) if self.states is not None else None,
            self.owned, lowered, self.trainable, list(self.runtime_types) if self.runtime_types is not None else None,
            self.builtin,
        )


def order_sql(order: Sequence[tuple[str, bool]]) -> str:
    """ORDER BY terms from (field, descending) pairs; fields without a column here keep the default order."""
    terms = [f"{ORDER_COLUMNS[f]} {'DESC' if d else 'ASC'}" for f, d in order if f in ORDER_COLUMNS]
    return ", ".join([*terms, DEFAULT_ORDER])


async def page(
    conn: asyncpg.Connection,
    org_id: UUID,
    *,
    ids: list[str] | None,
    filters: EngineFilters,
    order: Sequence[tuple[str, bool]] = (),
    offset: int,
    limit: int,
) -> tuple[list[Engine], int]:
    records, total = await fetch_page(conn, LIST.format(order=order_sql(order)), (org_id, ids, *filters.args()), offset, limit)
    return [Engine.of(r) for r in records], total


async def pages_for_categories(
    conn: asyncpg.Connection,
    org_id: UUID,
    category_ids: list[str],
    *,
    filters: EngineFilters,
    order: Sequence[tuple[str, bool]],
    offset: int,
    limit: int,
) -> tuple[dict[str, list[Engine]], dict[str, int]]:
    sql = CATEGORY_PAGES.format(order=order_sql(order))
    return await fetch_pages_by_parent(
        conn, sql, org_id, category_ids, filters.args(), offset, limit, parent="category_id", row=Engine.of  # type: ignore[arg-type]
    )


async def task_pages(
    conn: asyncpg.Connection,
    org_id: UUID,
    engine_ids: list[str],
    *,
    statuses: list[str] | None,
    task_id: UUID | None,
    date_field: str,
    from_time: Any,
    to_time: Any,
    offset: int,
    limit: int,
) -> tuple[dict[str, list[Task]], dict[str, int]]:
    sql = ENGINE_TASK_PAGES.format(column=TASK_COLUMNS[date_field])
    filters = (statuses, task_id, from_time, to_time)
    return await fetch_pages_by_parent(conn, sql, org_id, engine_ids, filters, offset, limit, parent="engine_id", row=Task.of)  # type: ignore[arg-type]


async def task_metrics(conn: asyncpg.Connection, org_id: UUID, engine_ids: list[str], from_time: Any, to_time: Any) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {e: {} for e in engine_ids}
    for r in await conn.fetch(TASK_METRICS, org_id, engine_ids, from_time, to_time):
        out[r["engine_id"]][r["status"]] = r["n"]
    return out


async def compatible(conn: asyncpg.Connection, org_id: UUID, library_type_id: str) -> list[Engine]:
    return [Engine.of(r) for r in await conn.fetch(COMPATIBLE, org_id, library_type_id)]


async def concurrency_limit(conn: asyncpg.Connection, engine_id: str) -> int | None:
    return await conn.fetchval(CONCURRENCY_LIMIT, engine_id)
