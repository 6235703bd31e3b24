"""A bounded wait for a job to finish: ``job(id, waitSeconds)`` and the client's ``wait()``."""

from __future__ import annotations

import asyncio
import time

from gateway.errors import InvalidInput
from gateway.resources import Resources
from gateway.services.access.principal import Principal
from gateway.services.queue import jobs as job_service
from storage.rows import Job

MAX_WAIT_SECONDS = 60
WAIT_RECHECK_SECONDS = 5.0  # re-read now and then, in case a notification was missed (LISTEN reconnecting)
FINISHED = ("complete", "failed", "cancelled")


async def wait(res: Resources, principal: Principal, job_id: object, wait_seconds: int | None) -> Job:
    """The job once it is done, or as it is when ``wait_seconds`` (0-60) runs out.

    Woken by the job's NOTIFY events (the gateway's EventHub), so any process finishing it is seen at once;
    re-read every few seconds as well, in case a notification was lost while LISTEN reconnected.
    """
    seconds = 0 if wait_seconds is None else wait_seconds
    if not 0 <= seconds <= MAX_WAIT_SECONDS:
        raise InvalidInput(f"waitSeconds must be between 0 and {MAX_WAIT_SECONDS}")
    job = await job_service.get(res, principal, job_id)
    if seconds == 0 or job.status in FINISHED:
        return job
    hub = getattr(res, "events", None)
    deadline = time.monotonic() + seconds
    queue = hub.subscribe(str(job.id)) if hub is not None else None
    try:
        job = await job_service.get(res, principal, job.id)  # subscribed first: no finish slips between
        while job.status not in FINISHED:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                if queue is not None:
                    await asyncio.wait_for(queue.get(), timeout=min(left, WAIT_RECHECK_SECONDS))
                else:
                    await asyncio.sleep(min(left, WAIT_RECHECK_SECONDS))
            except asyncio.TimeoutError:
                pass
            job = await job_service.get(res, principal, job.id)
    finally:
        if queue is not None:
            hub.unsubscribe(str(job.id), queue)
    return job
