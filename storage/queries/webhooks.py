"""Webhooks and the outbox of their deliveries (rows written by the triggers of migration 0017)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from storage.queries.paging import fetch_page
from storage.rows import Row

WAKE_CHANNEL = "engineshed_webhooks"  # the triggers NOTIFY it when they queue a delivery


@dataclass(frozen=True, slots=True)
class Webhook(Row):
    """A webhook as its organization's admins see it: never the secret."""

    id: UUID
    url: str
    events: list[str]
    description: str | None
    enabled: bool
    disabled_reason: str | None
    created_at: datetime
    modified_at: datetime
    # The newest delivery, whatever its status (all None before the first event).
    last_delivery_id: UUID | None
    last_event: str | None
    last_delivery_status: str | None
    last_delivery_attempts: int | None
    last_status_code: int | None
    last_error: str | None
    last_attempt_at: datetime | None
    last_delivered_at: datetime | None  # the newest 2xx answer of any delivery


@dataclass(frozen=True, slots=True)
class Delivery(Row):
    id: UUID
    org_id: UUID
    webhook_id: UUID
    event: str
    data: Any
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    last_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ClaimedDelivery(Row):
    """A delivery a sender holds a lease on, with what sending it needs."""

    id: UUID
    org_id: UUID
    webhook_id: UUID
    event: str
    data: Any
    attempts: int
    created_at: datetime
    url: str
    secret: str


WEBHOOK_COLUMNS = """w.id, w.url, w.events, w.description, w.enabled, w.disabled_reason, w.created_at, w.modified_at,
    ld.id AS last_delivery_id, ld.event AS last_event, ld.status AS last_delivery_status,
    ld.attempts AS last_delivery_attempts, ld.last_status_code, ld.last_error, ld.last_attempt_at,
    (SELECT max(d.delivered_at) FROM webhook_deliveries d WHERE d.webhook_id = w.id) AS last_delivered_at"""

# Follows the webhooks' FROM (aliased w): the newest delivery of each.
LAST_DELIVERY = """LEFT JOIN LATERAL (
    SELECT d.id, d.event, d.status, d.attempts, d.last_status_code, d.last_error, d.last_attempt_at
    FROM webhook_deliveries d WHERE d.webhook_id = w.id ORDER BY d.created_at DESC, d.id DESC LIMIT 1
) ld ON true"""

DELIVERY_COLUMNS = """id, org_id, webhook_id, event, data, status, attempts, next_attempt_at, last_status_code, last_error,
    last_attempt_at, delivered_at, created_at"""

COUNT_FOR_ORG = "SELECT count(*) FROM webhooks WHERE org_id = $1"

# Serializes creations of one organization, so concurrent createWebhook calls cannot pass the cap together.
LOCK_ORG = "SELECT pg_advisory_xact_lock(hashtextextended('webhooks:' || $1::uuid::text, 0))"

INSERT = f"""WITH w AS (
    INSERT INTO webhooks (id, org_id, url, events, description, secret, created_by)
    VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *
)
SELECT {WEBHOOK_COLUMNS} FROM w {LAST_DELIVERY}"""

BY_ID = f"SELECT {WEBHOOK_COLUMNS} FROM webhooks w {LAST_DELIVERY} WHERE w.org_id = $1 AND w.id = $2"

LIST = f"""SELECT {WEBHOOK_COLUMNS}, count(*) OVER () AS total FROM webhooks w {LAST_DELIVERY}
WHERE w.org_id = $1 ORDER BY w.created_at, w.id OFFSET $2 LIMIT $3"""

# Each field changes only when its flag is set; enabling again clears why it was disabled.
UPDATE = f"""WITH w AS (
    UPDATE webhooks SET
        url = CASE WHEN $3 THEN $4 ELSE url END,
        events = CASE WHEN $5 THEN $6 ELSE events END,
        description = CASE WHEN $7 THEN $8 ELSE description END,
        enabled = CASE WHEN $9 THEN $10 ELSE enabled END,
        disabled_reason = CASE WHEN $9 THEN NULL ELSE disabled_reason END,
        modified_at = now()
    WHERE org_id = $1 AND id = $2 RETURNING *
)
SELECT {WEBHOOK_COLUMNS} FROM w {LAST_DELIVERY}"""

SET_SECRET = f"""WITH w AS (
    UPDATE webhooks SET secret = $3, modified_at = now() WHERE org_id = $1 AND id = $2 RETURNING *
)
SELECT {WEBHOOK_COLUMNS} FROM w {LAST_DELIVERY}"""

DELETE = "DELETE FROM webhooks WHERE org_id = $1 AND id = $2 RETURNING id"

DELIVERY = f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE org_id = $1 AND id = $2"

DELIVERIES = f"""SELECT {DELIVERY_COLUMNS}, count(*) OVER () AS total FROM webhook_deliveries
WHERE org_id = $1 AND webhook_id = $2 AND ($3::text[] IS NULL OR status = ANY($3))
ORDER BY created_at DESC, id DESC OFFSET $4 LIMIT $5"""

# Sent again from the start: the same ID (receivers that saw it already may skip it), a fresh count of attempts.
REDELIVER = f"""UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = now(),
    lease_owner = NULL, lease_expires_at = NULL
WHERE org_id = $1 AND id = $2 RETURNING {DELIVERY_COLUMNS}"""

CLAIM = """-- due deliveries of enabled webhooks, and those whose sender's lease ran out; rows another sender holds are
-- skipped. An attempt is counted when it is claimed, so a sender that dies mid-request still uses one up.
WITH picked AS (
    SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
    WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND w.enabled
      AND (d.lease_expires_at IS NULL OR d.lease_expires_at < now())
    ORDER BY d.next_attempt_at, d.id LIMIT $2 FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_deliveries d SET lease_owner = $1, lease_expires_at = now() + make_interval(secs => $3),
    attempts = d.attempts + 1, last_attempt_at = now()
FROM picked, webhooks w
WHERE d.id = picked.id AND w.id = d.webhook_id
RETURNING d.id, d.org_id, d.webhook_id, d.event, d.data, d.attempts, d.created_at, w.url, w.secret"""

# Every finish is a no-op unless this sender still holds the lease (another may have taken the row over).
FINISH = """UPDATE webhook_deliveries SET status = $3, last_status_code = $4, last_error = $5,
    delivered_at = CASE WHEN $3 = 'delivered' THEN now() ELSE delivered_at END,
    next_attempt_at = now() + make_interval(secs => $6), lease_owner = NULL, lease_expires_at = NULL
WHERE id = $1 AND lease_owner = $2 AND status = 'pending' RETURNING id"""

DISABLE = """UPDATE webhooks SET enabled = false, disabled_reason = $2, modified_at = now() WHERE id = $1"""

PRUNE = """DELETE FROM webhook_deliveries WHERE id IN (
    SELECT id FROM webhook_deliveries WHERE status <> 'pending' AND created_at < now() - make_interval(days => $1)
    LIMIT 1000)"""


async def count_for_org(conn: asyncpg.Connection, org_id: UUID) -> int:
    return await conn.fetchval(COUNT_FOR_ORG, org_id)


async def lock_org(conn: asyncpg.Connection, org_id: UUID) -> None:
    await conn.execute(LOCK_ORG, org_id)


async def insert(
    conn: asyncpg.Connection, *, org_id: UUID, url: str, events: list[str], description: str | None, secret: str,
    created_by: str | None,
) -> Webhook:
    return Webhook.of(await conn.fetchrow(INSERT, uuid4(), org_id, url, events, description, secret, created_by))


async def by_id(conn: asyncpg.Connection, org_id: UUID, webhook_id: UUID) -> Webhook | None:
    return Webhook.maybe(await conn.fetchrow(BY_ID, org_id, webhook_id))


async def page(conn: asyncpg.Connection, org_id: UUID, *, offset: int, limit: int) -> tuple[list[Webhook], int]:
    records, total = await fetch_page(conn, LIST, (org_id,), offset, limit)
    return [Webhook.of(r) for r in records], total


async def update(conn: asyncpg.Connection, org_id: UUID, webhook_id: UUID, changes: dict[str, Any]) -> Webhook | None:
    """``changes``: the fields to set (url, events, description, enabled); the others stay."""
    args: list[Any] = [org_id, webhook_id]
    for name in ("url", "events", "description", "enabled"):
        args += [name in changes, changes.get(name)]
    return Webhook.maybe(await conn.fetchrow(UPDATE, *args))


async def set_secret(conn: asyncpg.Connection, org_id: UUID, webhook_id: UUID, secret: str) -> Webhook | None:
    return Webhook.maybe(await conn.fetchrow(SET_SECRET, org_id, webhook_id, secret))


async def delete(conn: asyncpg.Connection, org_id: UUID, webhook_id: UUID) -> bool:
    return await conn.fetchval(DELETE, org_id, webhook_id) is not None


async def delivery(conn: asyncpg.Connection, org_id: UUID, delivery_id: UUID) -> Delivery | None:
    return Delivery.maybe(await conn.fetchrow(DELIVERY, org_id, delivery_id))


async def deliveries(
    conn: asyncpg.Connection, org_id: UUID, webhook_id: UUID, statuses: list[str] | None, *, offset: int, limit: int
) -> tuple[list[Delivery], int]:
    records, total = await fetch_page(conn, DELIVERIES, (org_id, webhook_id, statuses), offset, limit)
    return [Delivery.of(r) for r in records], total


async def redeliver(conn: asyncpg.Connection, org_id: UUID, delivery_id: UUID) -> Delivery | None:
    row = Delivery.maybe(await conn.fetchrow(REDELIVER, org_id, delivery_id))
    if row is not None:
        await conn.execute("SELECT pg_notify($1, '')", WAKE_CHANNEL)
    return row


async def claim(conn: asyncpg.Connection, *, owner: str, limit: int, lease_seconds: float) -> list[ClaimedDelivery]:
    return [ClaimedDelivery.of(r) for r in await conn.fetch(CLAIM, owner, limit, lease_seconds)]


async def finish(
    conn: asyncpg.Connection, delivery_id: UUID, *, owner: str, status: str, status_code: int | None, error: str | None,
    retry_in: float = 0.0,
) -> bool:
    return await conn.fetchval(FINISH, delivery_id, owner, status, status_code, error, retry_in) is not None


async def disable(conn: asyncpg.Connection, webhook_id: UUID, reason: str) -> None:
    await conn.execute(DISABLE, webhook_id, reason)


async def prune(conn: asyncpg.Connection, days: int) -> int:
    result = await conn.execute(PRUNE, days)
    return int(result.split()[-1])
