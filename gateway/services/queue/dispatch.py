"""Claiming, leasing and finishing tasks: the same functions serve built-in workers and external engines.

A claim takes due tasks under a per-engine advisory lock, so an engine's ``concurrencyLimit`` holds across
every worker process and machine. A lease is renewed by heartbeats; a task whose worker died is claimed
again once its lease expires. Finishing checks the lease owner, so a worker that lost its lease cannot
overwrite the work of the one that took over.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import uuid4

from gateway.errors import InvalidInput, NotAllowed, NotFound
from gateway.resources import Resources
from gateway.services.access import tokens
from gateway.services.access.ids import parse_id
from gateway.services.access.principal import Principal
from gateway.services.training import lifecycle
from storage.queries import engines as engine_q
from storage.queries import jobs as q
from storage.queries import tokens as token_q
from storage.rows import Task

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 3600.0


class LeaseLost(Exception):
    """The task is no longer ours: its lease expired and another worker took it, or it was finished."""


async def claim(
    res: Resources,
    engine_id: str,
    *,
    owner: str,
    limit: int,
    lease_seconds: float,
    also: Callable[[Any, Task], Awaitable[None]] | None = None,
) -> list[Task]:
    """Lease up to ``limit`` due tasks; ``also`` runs for each inside the same transaction."""
    async with res.pool.acquire() as conn, conn.transaction():
        concurrency = await engine_q.concurrency_limit(conn, engine_id)
        if concurrency is None:
            return []
        claimed = await q.claim(
            conn, engine_id, limit=limit, owner=owner, lease_seconds=lease_seconds, concurrency_limit=concurrency
        )
        for task in claimed:
            # A task taken over from an expired lease: the previous claim's tokens stop working.
            await token_q.revoke_task_tokens(conn, task.id)
            await lifecycle.model_after_task(conn, task, "running", None)
            await q.refresh_job_status(conn, task.job_id)
            if also is not None:
                await also(conn, task)
    return claimed


async def heartbeat(
    res: Resources, task: Task, *, owner: str, lease_seconds: float, progress: float | None = None, message: str | None = None
) -> bool:
    """Renew the lease and record progress. Returns whether cancellation was requested."""
    if progress is not None:
        progress = min(1.0, max(0.0, float(progress)))
    async with res.pool.acquire() as conn:
        record = await q.heartbeat(conn, task.id, owner, lease_seconds, progress, message)
        if record is None:
            raise LeaseLost(f"task {task.id} is no longer leased to {owner}")
        await q.notify(conn, q.EVENT_CHANNEL, str(record["job_id"]))
    return bool(record["cancel_requested"])


async def complete_in(conn: Any, task: Task, *, owner: str, output: Any) -> bool:
    """Finish as complete inside the caller's transaction; False when the lease was lost."""
    done = await q.finish(conn, task.id, owner, "complete", output=output)
    if done is None:
        return False
    await token_q.revoke_task_tokens(conn, task.id)
    await q.refresh_job_status(conn, task.job_id)
    return True


async def complete(res: Resources, task: Task, *, owner: str, output: Any = None) -> None:
    async with res.pool.acquire() as conn, conn.transaction():
        if not await complete_in(conn, task, owner=owner, output=output):
            raise LeaseLost(f"task {task.id} is no longer leased to {owner}")
        await lifecycle.model_after_task_if_unfinished(conn, task, "complete")


async def fail(
    res: Resources, task: Task, *, owner: str, reason: str, message: str, retryable: bool, backoff_seconds: float
) -> Task:
    """Retry later while attempts remain and the error may pass; otherwise fail for good."""
    async with res.pool.acquire() as conn, conn.transaction():
        current = await q.task_by_id(conn, None, task.id, for_update=True)
        if current is None or current.lease_owner != owner or current.status != "running":
            raise LeaseLost(f"task {task.id} is no longer leased to {owner}")
        if retryable and current.attempts < current.max_attempts and not current.cancel_requested:
            delay = min(MAX_BACKOFF_SECONDS, backoff_seconds * (2 ** min(current.attempts - 1, 20)))
            done = await q.retry_later(conn, task.id, owner, delay, reason, message)
            await lifecycle.model_after_task(conn, done, "queued", None)
            await token_q.revoke_task_tokens(conn, task.id)
        elif current.cancel_requested:  # the engine stopped because it was asked to: the job was cancelled
            done = await q.finish(conn, task.id, owner, "cancelled")
            await lifecycle.model_after_task(conn, done, "failed", {"error": "the training job was cancelled"})
            await token_q.revoke_task_tokens(conn, task.id)
        else:
            done = await q.finish(conn, task.id, owner, "failed", failure_reason=reason, failure_message=message)
            await lifecycle.model_after_task(conn, done, "failed", {"error": message, "failureReason": reason})
            await token_q.revoke_task_tokens(conn, task.id)
        await q.refresh_job_status(conn, task.job_id)
    return done


async def cancelled(res: Resources, task: Task, *, owner: str) -> None:
    async with res.pool.acquire() as conn, conn.transaction():
        done = await q.finish(conn, task.id, owner, "cancelled")
        if done is None:
            raise LeaseLost(f"task {task.id} is no longer leased to {owner}")
        await lifecycle.model_after_task(conn, done, "failed", {"error": "the training job was cancelled"})
        await token_q.revoke_task_tokens(conn, task.id)
        await q.refresh_job_status(conn, task.job_id)


async def reap(res: Resources) -> list[Task]:
    """End running tasks whose lease expired and that may not run again."""
    async with res.pool.acquire() as conn, conn.transaction():
        reaped = await q.reap(conn)
        for task in reaped:
            if task.status == "cancelled":
                await lifecycle.model_after_task(conn, task, "failed", {"error": "the training job was cancelled"})
            else:
                await lifecycle.model_after_task(
                    conn, task, "failed", {"error": task.failure_message, "failureReason": task.failure_reason}
                )
            await token_q.revoke_task_tokens(conn, task.id)
            await q.refresh_job_status(conn, task.job_id)
    return reaped


# ---- external engines, through GraphQL with an engine token ----


def _claim_owner(principal: Principal) -> str:
    # One owner per claim, so a token issued for an earlier claim of the same task cannot act for a later one.
    return f"external:{principal.token_id}:{uuid4().hex[:12]}"


async def claim_external(res: Resources, principal: Principal, engine_id: str, limit: int) -> list[tuple[Task, str]]:
    if principal.scope != "engine" or principal.engine_id != engine_id:
        raise NotAllowed("claiming tasks needs an engine token for that engine")
    if not 1 <= limit <= 100:
        raise InvalidInput("limit must be between 1 and 100")
    async with res.pool.acquire() as conn:
        engine = await engine_q.by_id(conn, principal.org_id, engine_id)
    if engine is None:
        raise NotFound()
    if engine.org_id != principal.org_id:
        # Built-in engines' queues hold every organization's tasks, and their workers run them.
        raise NotAllowed(f"{engine_id} is a built-in engine; engine tokens claim their organization's external engines")
    owner = _claim_owner(principal)
    issued: dict[Any, str] = {}

    async def issue_token(conn: Any, task: Task) -> None:
        # Valid while this claim holds the task (authenticate checks that); the expiry only bounds a leak.
        expires = datetime.now(timezone.utc) + timedelta(days=1)
        issued[task.id] = await tokens.create_task_token(
            conn, org_id=task.org_id, task_id=task.id, engine_id=engine_id, expires_at=expires, lease_owner=owner
        )

    claimed = await claim(res, engine_id, owner=owner, limit=limit, lease_seconds=res.settings.lease_seconds, also=issue_token)
    return [(task, issued[task.id]) for task in claimed]


async def _external_task(res: Resources, principal: Principal, task_id: object) -> Task:
    tid = parse_id(task_id)
    if principal.scope not in ("engine", "task"):
        raise NotAllowed("only the engine that claimed a task may report on it")
    async with res.pool.acquire() as conn:
        task = await q.task_by_id(conn, principal.org_id, tid)
    if task is None or (principal.scope == "task" and principal.task_id != tid) or task.engine_id != principal.engine_id:
        raise NotFound()
    return task


def _lease_refusal(task: Task, consequence: str) -> NotAllowed:
    """Why a report on ``task`` is refused: it is already over (the state read just before the report), or the
    claim it was made under is gone (another claim took it, or it went back to the queue)."""
    if task.status in ("complete", "failed", "cancelled"):
        return NotAllowed(f"task {task.id} is already {task.status}; {consequence}")
    return NotAllowed(f"the lease on task {task.id} was lost (it was claimed again or went back to the queue); {consequence}")


def _external_owner(principal: Principal, task: Task) -> str:
    """The claim a report acts for: the task token's own, or the engine token's current claim of the task."""
    if principal.scope == "task":
        return principal.lease_owner or ""
    if task.lease_owner and task.lease_owner.startswith(f"external:{principal.token_id}:"):
        return task.lease_owner
    return ""


async def heartbeat_external(res: Resources, principal: Principal, task_id: object, progress: float | None, message: str | None) -> tuple[Task, bool]:
    task = await _external_task(res, principal, task_id)
    if progress is not None and not 0.0 <= progress <= 1.0:
        raise InvalidInput("progress must be between 0 and 1")
    try:
        cancel = await heartbeat(
            res, task, owner=_external_owner(principal, task), lease_seconds=res.settings.lease_seconds,
            progress=progress, message=message,
        )
    except LeaseLost as exc:
        raise _lease_refusal(task, "stop working on it") from exc
    return task, cancel


async def complete_external(res: Resources, principal: Principal, task_id: object, output: Any) -> None:
    task = await _external_task(res, principal, task_id)
    try:
        await complete(res, task, owner=_external_owner(principal, task), output=output)
    except LeaseLost as exc:
        raise _lease_refusal(task, "this result was not recorded") from exc


async def fail_external(res: Resources, principal: Principal, task_id: object, reason: str | None, message: str | None, retry: bool) -> Task:
    task = await _external_task(res, principal, task_id)
    try:
        return await fail(
            res, task, owner=_external_owner(principal, task), reason=reason or "other", message=message or "the engine failed",
            retryable=retry, backoff_seconds=res.settings.retry_backoff_seconds,
        )
    except LeaseLost as exc:
        raise _lease_refusal(task, "this failure was not recorded") from exc



async def release(res: Resources, task: Task, *, owner: str) -> Task | None:
    """Give a task back to the queue at once (graceful shutdown), so another worker need not wait for the lease;
    the attempt does not count. None when ``owner`` no longer held it."""
    async with res.pool.acquire() as conn, conn.transaction():
        done = await q.release(conn, task.id, owner)
        if done is not None:
            await token_q.revoke_task_tokens(conn, task.id)
            await lifecycle.model_after_task(conn, done, "queued", None)
            await q.notify(conn, q.WAKE_CHANNEL, task.engine_id)
            await q.refresh_job_status(conn, task.job_id)
        return done


async def release_external(res: Resources, principal: Principal, task_id: object) -> Task:
    """An external engine hands its claim back untouched (it is stopping): the task is claimable again at once."""
    task = await _external_task(res, principal, task_id)
    done = await release(res, task, owner=_external_owner(principal, task))
    if done is None:
        raise _lease_refusal(task, "it was not released")
    return done
