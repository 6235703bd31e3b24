"""Registering webhooks: create, list, update, delete, rotate the secret; their deliveries, and sending one again.

Everything here is for admin tokens: a webhook's URL may carry the receiver's own credentials, and
deliveries carry the organization's events. Another organization's IDs answer not_found.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

from gateway.errors import CapacityExceeded, InvalidInput, NotFound, unstorable_text
from gateway.resources import Resources
from gateway.services.access.ids import parse_id
from gateway.services.access.paging import Page, check_page
from gateway.services.access.principal import Principal
from gateway.services.ingest.remote_files import FetchRefused, check_destination
from storage.queries import webhooks as q
from storage.queries.webhooks import Delivery, Webhook

# What a webhook may subscribe to; each is the `type` of the deliveries it receives.
EVENTS = (
    "job_complete", "job_failed", "job_cancelled",
    "training_complete", "training_failed",
    "model_version_ready", "model_version_failed",
)
DELIVERY_STATUSES = ("pending", "delivered", "failed")
URL_MAX = 2048
DESCRIPTION_MAX = 500
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


async def check_url(res: Resources, url: object) -> str:
    """An http(s) URL whose host resolves only to addresses the outbound rules allow (checked again at each
    delivery, since DNS may change); invalid_input says why not."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidInput("url must be an http or https URL")
    url = url.strip()
    if len(url) > URL_MAX:
        raise InvalidInput(f"url must be at most {URL_MAX} characters")
    if unstorable_text(url) or any(ord(c) < 0x21 for c in url):
        raise InvalidInput("url contains spaces or control characters")
    try:
        parts = urlsplit(url)
        _ = parts.port  # a port that is not a number, or out of range, raises here
    except ValueError as exc:
        raise InvalidInput(f"url is not a valid URL: {exc}") from exc
    if parts.fragment:
        raise InvalidInput("url must not have a #fragment (it is never sent)")
    try:
        await check_destination(url, res.fetch_policy)
    except FetchRefused as exc:
        raise InvalidInput(f"url: {exc}", data={"reason": exc.reason}) from exc
    return url


def check_events(events: object) -> list[str]:
    if not isinstance(events, (list, tuple)) or not events:
        raise InvalidInput(f"events must name at least one of {', '.join(EVENTS)}")
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        raise InvalidInput(f"unknown event {str(unknown[0])[:60]!r}: events are {', '.join(EVENTS)}")
    return sorted(set(events), key=EVENTS.index)


def check_description(description: object) -> str | None:
    if description is None:
        return None
    if not isinstance(description, str):
        raise InvalidInput("description must be text")
    description = description.strip()
    if len(description) > DESCRIPTION_MAX:
        raise InvalidInput(f"description must be at most {DESCRIPTION_MAX} characters")
    why = unstorable_text(description)
    if why:
        raise InvalidInput(f"description {why}")
    return description or None


async def create(
    res: Resources, principal: Principal, *, url: object, events: object, description: object = None
) -> tuple[str, Webhook]:
    """A new webhook of the caller's organization; the secret is returned here and never again."""
    principal.require_admin()
    chosen = check_events(events)
    text = check_description(description)
    checked = await check_url(res, url)
    secret = new_secret()
    cap = res.settings.webhook_max_per_org
    async with res.pool.acquire() as conn, conn.transaction():
        await q.lock_org(conn, principal.org_id)
        if await q.count_for_org(conn, principal.org_id) >= cap:
            raise CapacityExceeded(f"an organization may register at most {cap} webhooks; delete one first")
        row = await q.insert(conn, org_id=principal.org_id, url=checked, events=chosen, description=text, secret=secret,
                             created_by=principal.actor)
    return secret, row


async def get(res: Resources, principal: Principal, webhook_id: object) -> Webhook:
    principal.require_admin()
    wid = parse_id(webhook_id)
    async with res.pool.acquire() as conn:
        row = await q.by_id(conn, principal.org_id, wid)
    if row is None:
        raise NotFound()
    return row


async def list_page(res: Resources, principal: Principal, *, offset: int | None, limit: int | None) -> Page[Webhook]:
    """The organization's webhooks, oldest first, each with its newest delivery's outcome."""
    principal.require_admin()
    offset, limit = check_page(offset, limit, res.settings.max_page_size)
    async with res.pool.acquire() as conn:
        records, total = await q.page(conn, principal.org_id, offset=offset, limit=limit)
    return Page(records, offset, limit, total)


async def update(res: Resources, principal: Principal, webhook_id: object, changes: dict[str, Any]) -> Webhook:
    """Change url, events, description or enabled (the fields in ``changes``); enabling clears why it was
    disabled, and deliveries waiting for it are sent."""
    principal.require_admin()
    wid = parse_id(webhook_id)
    checked: dict[str, Any] = {}
    if "events" in changes:
        checked["events"] = check_events(changes["events"])
    if "description" in changes:
        checked["description"] = check_description(changes["description"])
    if "enabled" in changes:
        if not isinstance(changes["enabled"], bool):
            raise InvalidInput("enabled must be true or false")
        checked["enabled"] = changes["enabled"]
    async with res.pool.acquire() as conn:
        if await q.by_id(conn, principal.org_id, wid) is None:
            raise NotFound()  # before the URL check: another organization's ID learns nothing from its answer
    if "url" in changes:
        checked["url"] = await check_url(res, changes["url"])
    async with res.pool.acquire() as conn:
        row = await q.update(conn, principal.org_id, wid, checked)
        if checked.get("enabled"):
            await conn.execute("SELECT pg_notify($1, '')", q.WAKE_CHANNEL)
    if row is None:
        raise NotFound()
    return row


async def delete(res: Resources, principal: Principal, webhook_id: object) -> str:
    """Delete a webhook and its deliveries (those waiting are never sent)."""
    principal.require_admin()
    wid = parse_id(webhook_id)
    async with res.pool.acquire() as conn:
        if not await q.delete(conn, principal.org_id, wid):
            raise NotFound()
    return str(wid)


async def rotate_secret(res: Resources, principal: Principal, webhook_id: object) -> tuple[str, Webhook]:
    """A new secret, used from the next attempt on; the old one signs nothing more."""
    principal.require_admin()
    wid = parse_id(webhook_id)
    secret = new_secret()
    async with res.pool.acquire() as conn:
        row = await q.set_secret(conn, principal.org_id, wid, secret)
    if row is None:
        raise NotFound()
    return secret, row


async def deliveries(
    res: Resources, principal: Principal, webhook_id: object, *, statuses: list[str] | None, offset: int | None,
    limit: int | None,
) -> Page[Delivery]:
    """A webhook's deliveries, newest first."""
    principal.require_admin()
    wid = parse_id(webhook_id)
    offset, limit = check_page(offset, limit, res.settings.max_page_size)
    if statuses is not None:
        unknown = [s for s in statuses if s not in DELIVERY_STATUSES]
        if unknown:
            raise InvalidInput(f"unknown delivery status {str(unknown[0])[:40]!r}: {', '.join(DELIVERY_STATUSES)}")
    async with res.pool.acquire() as conn:
        if await q.by_id(conn, principal.org_id, wid) is None:
            raise NotFound()
        records, total = await q.deliveries(conn, principal.org_id, wid, statuses or None, offset=offset, limit=limit)
    return Page(records, offset, limit, total)


async def redeliver(res: Resources, principal: Principal, delivery_id: object) -> Delivery:
    """Send a delivery again from its first attempt, whatever became of it (same ID, same body)."""
    principal.require_admin()
    did = parse_id(delivery_id)
    async with res.pool.acquire() as conn:
        row = await q.redeliver(conn, principal.org_id, did)
    if row is None:
        raise NotFound()
    return row
