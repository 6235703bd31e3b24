"""The worker's webhook sender: sends due deliveries, beside the tasks.

Woken by the NOTIFY the delivery triggers send, and polls as the fallback (retries come due without one).
Every worker runs one; a delivery is sent by whichever claims it first. Old finished deliveries are pruned.
"""

from __future__ import annotations

import asyncio
import logging
import time

from gateway.resources import Resources
from gateway.services.webhooks import delivery
from gateway.worker.errors import TRANSIENT
from storage.db import connection_name, listen
from storage.queries import webhooks as q

log = logging.getLogger("engineshed.webhooks")

RETENTION_DAYS = 30  # finished deliveries older than this are deleted
PRUNE_SECONDS = 600.0


class WebhookSender:
    def __init__(self, res: Resources, owner: str) -> None:
        self.res = res
        self.owner = owner
        self.wake = asyncio.Event()

    def on_notify(self, _channel: str, _payload: str) -> None:
        self.wake.set()

    async def loop(self, stopping: asyncio.Event) -> None:
        """Send until ``stopping`` is set; a try in progress then finishes (or its lease runs out)."""
        settings = self.res.settings
        async with listen(settings.database_url, [q.WAKE_CHANNEL], self.on_notify,
                          application_name=connection_name("worker")):
            last_prune = 0.0
            while not stopping.is_set():
                tried = 0
                try:
                    if time.monotonic() - last_prune > PRUNE_SECONDS:
                        last_prune = time.monotonic()
                        async with self.res.pool.acquire() as conn:
                            await q.prune(conn, RETENTION_DAYS)
                    tried = await delivery.deliver_due(self.res, self.owner)
                except TRANSIENT as exc:
                    log.warning("database unavailable, webhook deliveries wait: %r", exc)
                except Exception:  # one bad round must not end the sender
                    log.exception("webhook round failed")
                if tried:
                    continue  # more may be due
                woken = asyncio.ensure_future(self.wake.wait())
                stop = asyncio.ensure_future(stopping.wait())
                await asyncio.wait({woken, stop}, timeout=settings.poll_seconds, return_when=asyncio.FIRST_COMPLETED)
                woken.cancel()
                stop.cancel()
                self.wake.clear()
