"""Running one claimed task: the lease held by heartbeats, its handler called, the outcome recorded.

What a task does is its handler's (gateway.worker.handlers picks one by engine id); what happens around it is
the same for every task: heartbeats carry the handler's progress and bring back cancel requests, and every
way a handler can end is recorded on the task here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Protocol

from engines.interface import EngineConfigError, EngineError, NothingToTrain
from gateway import logs
from gateway.errors import ApiError, ServiceUnavailable
from gateway.observability import metrics, tracing
from gateway.resources import Resources
from gateway.services.queue import dispatch
from gateway.services.queue.dispatch import LeaseLost
from gateway.worker.errors import TRANSIENT
from storage.queries import jobs as job_q
from storage.rows import Task

log = logging.getLogger("engineshed.worker")


class Progress(Protocol):
    """What a running task's heartbeats report."""

    fraction: float
    message: str | None


# Runs one claimed task to its end and records its completion (dispatch.complete); failures are recorded by TaskRun.
Handler = Callable[["TaskRun"], Coroutine[Any, Any, None]]


class TaskRun:
    def __init__(self, res: Resources, owner: str, task: Task, handler: Handler) -> None:
        self.res = res
        self.task = task
        self.owner = owner
        self.handler = handler
        self.stop_reason: str | None = None  # 'cancelled' (the user asked), 'lost' (lease gone), 'shutdown'
        self.wake = asyncio.Event()  # set by a cancel NOTIFY: heartbeat now
        self.ctx: Progress | None = None  # set by the handler once it has progress to report
        self._engine_task: asyncio.Task[None] | None = None
        # How the attempt ended, for metrics and traces: complete, failed, retried, cancelled, released (handed
        # back at shutdown) or lost (the lease went to another worker); reason: the failure reason recorded.
        self.outcome = "lost"
        self.reason: str | None = None

    def log_context(self) -> contextlib.AbstractContextManager[None]:
        """Within it, log lines carry the task's job, task and organization IDs (gateway/logs.py)."""
        return logs.bound(job_id=self.task.job_id, task_id=self.task.id, organization_id=self.task.org_id)

    def interrupt(self, why: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = why
        if self._engine_task is not None and not self._engine_task.done():
            self._engine_task.cancel()

    async def run(self) -> None:
        started = time.perf_counter()
        payload = self.task.payload if isinstance(self.task.payload, dict) else {}
        with tracing.task_span(f"task {payload.get('mode') or 'run'}", await self._trace_parent(), {
            "engineshed.task_id": str(self.task.id), "engineshed.job_id": str(self.task.job_id),
            "engineshed.engine_id": self.task.engine_id, "engineshed.attempt": self.task.attempts,
        }) as span:
            try:
                await self._run()
            finally:
                metrics.task_done(self.task.engine_id, self.outcome, self.reason, time.perf_counter() - started)
                tracing.outcome(span, self.reason or self.outcome, ok=self.outcome == "complete")

    async def _trace_parent(self) -> str | None:
        """The trace context the task was queued with, when this process exports traces."""
        if not tracing.enabled():
            return None
        try:
            async with self.res.pool.acquire() as conn:
                return await job_q.trace_context(conn, self.task.id)
        except TRANSIENT:
            return None  # the trace starts here instead

    async def _run(self) -> None:
        beat = asyncio.create_task(self._heartbeats())
        try:
            self._engine_task = asyncio.create_task(self.handler(self))
            try:
                await self._engine_task
                self.outcome = "complete"
            except asyncio.CancelledError:
                if self.stop_reason is None:  # the worker itself is being cancelled
                    self.stop_reason = "shutdown"
                await self._stopped()
            except (EngineConfigError, NothingToTrain) as exc:
                await self._fail("invalid_data", str(exc), False)
            except EngineError as exc:
                await self._fail("other", str(exc), False)
            except ServiceUnavailable as exc:  # S3 away while storing the artifact: try again later
                log.warning("task %s: %s", self.task.id, exc.message)
                await self._fail("system_error", "a storage service was unavailable; the task is retried", True)
            except ApiError as exc:
                await self._fail("invalid_data", exc.message, False)
            except TRANSIENT as exc:
                # Clients read failure messages: the details (endpoints, SQL, paths) stay in the log.
                log.warning("task %s: transient failure: %r", self.task.id, exc)
                await self._fail("system_error", "a storage service was unavailable; the task is retried", True)
            except Exception:  # an engine bug: recorded on the task and the model, retried
                log.exception("task %s: engine %s raised", self.task.id, self.task.engine_id)
                await self._fail("internal_error", "the engine failed with an internal error; see the worker log", True)
        except LeaseLost:
            log.warning("task %s: lease lost; another worker owns it now", self.task.id)
        except TRANSIENT as exc:
            # Recording the outcome failed too (the database is away): the lease runs out and a worker claims
            # the task again, so there is nothing more to do here than say so.
            log.warning("task %s: its outcome could not be recorded (%r); it runs again once its lease expires", self.task.id, exc)
        finally:
            beat.cancel()
            try:
                await beat
            except (asyncio.CancelledError, Exception):
                pass

    async def _heartbeats(self) -> None:
        interval = self.res.settings.heartbeat_interval
        while True:
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=interval)
            except asyncio.TimeoutError:
                pass
            self.wake.clear()
            ctx = self.ctx
            try:
                cancel = await dispatch.heartbeat(
                    self.res, self.task, owner=self.owner, lease_seconds=self.res.settings.lease_seconds,
                    progress=ctx.fraction if ctx else None, message=ctx.message if ctx else None,
                )
            except LeaseLost:
                self.interrupt("lost")
                return
            except TRANSIENT as exc:  # keep working; the lease has slack for a missed beat or two
                log.warning("task %s: heartbeat failed: %r", self.task.id, exc)
                continue
            if cancel:
                self.interrupt("cancelled")
                return

    async def _stopped(self) -> None:
        log.info("task %s stopped: %s", self.task.id, self.stop_reason)
        self.outcome = {"cancelled": "cancelled", "shutdown": "released"}.get(self.stop_reason or "", "lost")
        with _stop_not_recorded():
            if self.stop_reason == "cancelled":
                await dispatch.cancelled(self.res, self.task, owner=self.owner)
            elif self.stop_reason == "shutdown":
                await dispatch.release(self.res, self.task, owner=self.owner)

    async def _fail(self, reason: str, message: str, retryable: bool) -> None:
        done = await dispatch.fail(
            self.res, self.task, owner=self.owner, reason=reason, message=message[:2000],
            retryable=retryable, backoff_seconds=self.res.settings.retry_backoff_seconds,
        )
        self.outcome, self.reason = ("failed" if done.status == "failed" else "retried"), reason
        log.info("task %s: %s (%s)", self.task.id, done.status, message[:200])


@contextlib.contextmanager
def _stop_not_recorded() -> Iterator[None]:
    """Suppress lease and connection errors while recording a stop: the reaper covers what fails here."""
    try:
        yield
    except (LeaseLost, *TRANSIENT) as exc:
        log.warning("could not record the stop of a task: %r", exc)
