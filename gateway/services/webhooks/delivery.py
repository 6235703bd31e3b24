"""Sending webhook deliveries: claim the due ones, POST each signed, record what happened.

Safe in many processes at once: a delivery is claimed with a lease (FOR UPDATE SKIP LOCKED), and its outcome
is written only while that lease is still held. Each try obeys the outbound rules again (the host's addresses
are resolved and checked before every try, and the request goes to the address that was checked); redirects
are not followed; of an answer only the status and a few hundred bytes of an error body are read.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC

import httpx

from gateway.resources import Resources
from gateway.services.ingest.remote_files import (
    FetchRefused,
    check_destination,
    pinned_request,
)
from storage.queries import webhooks as q
from storage.queries.webhooks import ClaimedDelivery

log = logging.getLogger("engineshed.webhooks")

SIGNATURE_HEADER = "X-Engineshed-Signature"
TIMESTAMP_HEADER = "X-Engineshed-Timestamp"
EVENT_HEADER = "X-Engineshed-Event"
DELIVERY_HEADER = "X-Engineshed-Delivery"
BACKOFF_CAP_SECONDS = 3600.0
ERROR_BODY_BYTES = 300  # of a failed answer's body, kept as part of last_error
ERROR_MAX = 1000


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # delivered | pending (tried again later) | failed
    status_code: int | None
    error: str | None
    disable: str | None = None  # why the webhook itself is disabled (410 Gone)


def body_of(delivery: ClaimedDelivery) -> bytes:
    """The JSON body: the same bytes on every try of one delivery."""
    created = delivery.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    data = json.loads(delivery.data) if isinstance(delivery.data, str) else delivery.data
    document = {"id": str(delivery.id), "type": delivery.event, "createdAt": created,
                "organizationId": str(delivery.org_id), "data": data}
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=`` and the hex HMAC-SHA256, keyed by the secret, of the timestamp, a dot and the body. The timestamp
    is signed too, so a receiver that refuses old timestamps also refuses a captured request played again."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return "sha256=" + digest


def backoff_seconds(base: float, attempts: int) -> float:
    """The wait after the ``attempts``-th failed try: base, doubling, at most an hour, each scaled by a random
    factor in [0.5, 1) so many receivers failing together are not all retried at the same moment."""
    delay = min(BACKOFF_CAP_SECONDS, base * (2 ** max(0, attempts - 1)))
    return delay * (0.5 + random.random() / 2)


def headers_for(delivery: ClaimedDelivery, body: bytes, now: float | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() if now is None else now))
    return {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(delivery.secret, timestamp, body),
        EVENT_HEADER: delivery.event,
        DELIVERY_HEADER: str(delivery.id),
    }


async def send(res: Resources, delivery: ClaimedDelivery) -> Outcome:
    """One try: check the destination, POST, judge the answer."""
    timeout = res.settings.webhook_timeout_seconds
    try:
        addresses = await check_destination(delivery.url, res.fetch_policy)
    except FetchRefused as exc:
        if exc.reason == "url_not_allowed":  # the address rules, not a passing failure: trying again cannot help
            return Outcome("failed", None, f"refused: {exc}")
        return Outcome("pending", None, str(exc))
    body = body_of(delivery)
    pinned = pinned_request(res.http, delivery.url, addresses[0])
    request = res.http.build_request(
        "POST", pinned.url, content=body, headers={**headers_for(delivery, body), "Host": pinned.headers["Host"]},
        extensions=pinned.extensions, timeout=httpx.Timeout(timeout),
    )
    try:
        response = await asyncio.wait_for(res.http.send(request, stream=True, follow_redirects=False), timeout)
    except (TimeoutError, httpx.TimeoutException):
        return Outcome("pending", None, f"no answer within {timeout:g} s")
    except httpx.HTTPError as exc:
        return Outcome("pending", None, f"the request failed: {exc.__class__.__name__} {str(exc)[:200]}".strip())
    try:
        return await _judge(response, timeout)
    finally:
        await response.aclose()


async def _judge(response: httpx.Response, timeout: float) -> Outcome:
    code = response.status_code
    if 200 <= code < 300:
        return Outcome("delivered", code, None)
    if response.is_redirect:
        return Outcome("pending", code, f"HTTP {code}: redirects are not followed (register the final URL)")
    error = f"HTTP {code}"
    snippet = await _start_of_body(response, timeout)
    if snippet:
        error += f": {snippet}"
    if code == 410:
        return Outcome("failed", code, error, disable="the receiver answered 410 Gone")
    return Outcome("pending", code, error)


async def _start_of_body(response: httpx.Response, timeout: float) -> str:
    kept = bytearray()
    try:
        async with asyncio.timeout(min(timeout, 5.0)):
            async for chunk in response.aiter_bytes():
                kept += chunk
                if len(kept) >= ERROR_BODY_BYTES:
                    break
    except (TimeoutError, httpx.HTTPError):
        pass
    return kept[:ERROR_BODY_BYTES].decode("utf-8", "replace").strip()


async def deliver_due(res: Resources, owner: str, limit: int = 16) -> int:
    """Claim up to ``limit`` due deliveries and try each once, side by side; returns how many were tried."""
    lease = res.settings.webhook_timeout_seconds * 2 + 30  # outlives one try, whatever the answer does
    async with res.pool.acquire() as conn:
        claimed = await q.claim(conn, owner=owner, limit=limit, lease_seconds=lease)
    if claimed:
        await asyncio.gather(*(_deliver(res, owner, d) for d in claimed))
    return len(claimed)


async def _deliver(res: Resources, owner: str, delivery: ClaimedDelivery) -> None:
    try:
        outcome = await send(res, delivery)
    except Exception as exc:  # a bug of ours must not stop the others; the try counts and is retried
        log.exception("webhook delivery %s failed unexpectedly", delivery.id)
        outcome = Outcome("pending", None, f"internal error: {exc.__class__.__name__}")
    max_attempts = max(1, res.settings.webhook_max_attempts)
    retry_in = 0.0
    if outcome.status == "pending":
        if delivery.attempts >= max_attempts:
            outcome = Outcome("failed", outcome.status_code, f"{outcome.error} (gave up after {delivery.attempts} tries)")
        else:
            retry_in = backoff_seconds(res.settings.webhook_backoff_seconds, delivery.attempts)
    error = outcome.error[:ERROR_MAX] if outcome.error else None
    async with res.pool.acquire() as conn, conn.transaction():
        kept = await q.finish(conn, delivery.id, owner=owner, status=outcome.status, status_code=outcome.status_code,
                              error=error, retry_in=retry_in)
        if kept and outcome.disable:
            await q.disable(conn, delivery.webhook_id, outcome.disable)
    level = logging.INFO if outcome.status == "delivered" else logging.WARNING
    log.log(level, "webhook delivery %s (%s, try %d) to webhook %s: %s%s", delivery.id, delivery.event,
            delivery.attempts, delivery.webhook_id, outcome.status, f" ({error})" if error else "")

