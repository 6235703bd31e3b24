"""Model trials as a worker's work: ``model_versions`` is its own small queue of ``validating`` versions, claimed
with ``FOR UPDATE SKIP LOCKED`` like tasks, so trials never appear among a user's jobs. The trial itself runs in
a bounded child process (gateway.services.models.trial)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from uuid import UUID

from gateway.resources import Resources
from gateway.services.models import registry
from gateway.services.models.trial import (
    LEASE_SLACK_SECONDS,
    MAX_TRIAL_ATTEMPTS,
    run_trial,
)
from storage.queries import models as q

log = logging.getLogger(__name__)


async def claim(res: Resources, owner: str) -> UUID | None:
    """Lease the oldest validating version nobody holds; one whose workers kept dying fails here."""
    lease = res.settings.model_trial_seconds + LEASE_SLACK_SECONDS
    async with res.pool.acquire() as conn, conn.transaction():
        record = await q.claim_trial(conn, owner, lease)
        if record is None:
            return None
        if record["trial_attempts"] > MAX_TRIAL_ATTEMPTS:
            await q.finish_trial(
                conn, record["id"], owner, status="failed", throughput=None, batch=None, provider=None, validation={},
                error=f"trial inference did not finish in {MAX_TRIAL_ATTEMPTS} attempts (its worker stopped each time)",
            )
            return None
    return record["id"]


async def run_claimed(res: Resources, version_id: UUID, owner: str) -> None:
    """Run the trial of a leased version and record the outcome, if the lease is still ours."""
    async with res.pool.acquire() as conn:
        version = await q.version_by_id(conn, version_id)
    if version is None or version.status != "validating":
        return
    data = await registry.model_bytes(res, version)
    result = await run_trial(res.settings, data, version.manifest, version.application)
    async with res.pool.acquire() as conn:
        finished = await q.finish_trial(
            conn, version_id, owner, status="ready" if result.ok else "failed", error=result.error,
            throughput=result.throughput, batch=result.batch, provider=result.provider, validation=result.details,
        )
    log.info("model %s trial: %s%s", version.ref, "ready" if result.ok else "failed",
             "" if result.ok else f" ({result.error})")
    if not finished:
        log.warning("model %s: trial lease lost before its result was recorded", version.ref)


class Trials:
    """A worker's model trials, beside its tasks: one at a time, since each runs a model in a child process."""

    def __init__(self, res: Resources, owner: str, on_done: Callable[[], None]) -> None:
        self.res = res
        self.owner = owner
        self._on_done = on_done  # a trial's end frees a slot: the worker claims again
        self.running: set[asyncio.Task[None]] = set()

    async def claim_one(self) -> int:
        """Start the oldest trial nobody holds, unless one runs here already; how many started (0 or 1)."""
        if self.running:
            return 0
        version_id = await claim(self.res, self.owner)
        if version_id is None:
            return 0
        trial = asyncio.create_task(self._run(version_id))
        self.running.add(trial)
        trial.add_done_callback(self.running.discard)
        return 1

    def cancel(self) -> None:
        """Kill the running trial's child; its lease expires and another worker runs the trial again."""
        for trial in self.running:
            trial.cancel()

    async def _run(self, version_id: UUID) -> None:
        try:
            await run_claimed(self.res, version_id, self.owner)
        except asyncio.CancelledError:
            raise
        except Exception:  # its lease runs out and another worker tries again
            log.exception("model trial of version %s failed to run", version_id)
        finally:
            self._on_done()
