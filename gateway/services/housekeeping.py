"""Periodic upkeep every gateway and worker process runs: safe to run in many processes at once.

Reaps running tasks whose lease expired with no attempts left (so deployments with only external
engines do not keep dead tasks `running`), deletes S3 objects whose rows are gone, and those of direct uploads that
never became identifiers (gateway/services/ingest/direct.py).
"""

from __future__ import annotations

import asyncio
import logging

from gateway.resources import Resources
from gateway.services import blob_cleanup
from gateway.services.ingest import direct as direct_uploads
from gateway.services.queue import dispatch

log = logging.getLogger("engineshed.housekeeping")

INTERVAL_SECONDS = 5.0


async def run_once(res: Resources) -> None:
    try:
        for task in await dispatch.reap(res):
            log.warning("task %s ended %s: its worker stopped answering", task.id, task.status)
    except Exception as exc:  # the database away: next round
        log.warning("reaping deferred: %r", exc)
    try:
        await blob_cleanup.sweep(res)
    except Exception as exc:  # S3 away: next round
        log.warning("blob sweep deferred: %r", exc)
    try:
        await direct_uploads.sweep(res)
    except Exception as exc:  # noqa: BLE001 - the database or S3 away: next round
        log.warning("sweep of unregistered direct uploads deferred: %r", exc)


async def run_forever(res: Resources, interval: float = INTERVAL_SECONDS) -> None:
    while True:
        await run_once(res)
        await asyncio.sleep(interval)
