"""Jobs and tasks. The tasks table is the queue: claim, lease, heartbeat and finish live here as named SQL."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from storage.queries.paging import fetch_page, fetch_pages_by_parent
from storage.rows import Job, Task

# NOTIFY channels. Payloads are IDs only: listeners re-read the rows they care about.
WAKE_CHANNEL = "engineshed_wake"  # payload: engine id with newly claimable work
EVENT_CHANNEL = "engineshed_event"  # payload: job id whose tasks changed
CANCEL_CHANNEL = "engineshed_cancel"  # payload: task id whose cancellation was requested

INSERT_JOB = """INSERT INTO jobs (id, org_id, name, cluster_id, status, library_id, created_by, modified_by, model_version_id,
    display_name, labels)
VALUES ($1, $2, $3, $4, 'queued', $5, $6, $6, $7, $8, $9) RETURNING *"""

SET_MODIFIED_BY = "UPDATE jobs SET modified_by = $3 WHERE org_id = $1 AND id = $2"

INSERT_TASK = """INSERT INTO tasks (id, org_id, job_id, engine_id, position, status, payload, max_attempts, queued_at, test_task,
                   trace_context)
VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, now(), $8, $9) RETURNING *"""

TRACE_CONTEXT = "SELECT trace_context FROM tasks WHERE id = $1"

QUEUE_STATS = """-- per engine: tasks waiting to be claimed, how long the oldest has waited, and tasks running (metrics scrape)
SELECT e.id AS engine_id,
    count(t.id) FILTER (WHERE t.status = 'queued') AS queued,
    coalesce(extract(epoch FROM now() - min(t.queued_at) FILTER (WHERE t.status = 'queued')), 0)::float8 AS oldest_seconds,
    count(t.id) FILTER (WHERE t.status = 'running') AS running
FROM engines e LEFT JOIN tasks t ON t.engine_id = e.id AND t.status IN ('queued', 'running')
GROUP BY e.id"""

INSERT_DONE_TASK = """-- a task with nothing left to do (the media adapter's): complete from the start
INSERT INTO tasks (id, org_id, job_id, engine_id, position, status, payload, max_attempts, queued_at, test_task,
                   output, progress, started_at, completed_at)
VALUES ($1, $2, $3, $4, $5, 'complete', $6, $7, now(), $8, $9, 1, now(), now()) RETURNING *"""

JOB_BY_ID = "SELECT * FROM jobs WHERE org_id = $1 AND id = $2"
JOBS_BY_IDS = "SELECT * FROM jobs WHERE org_id = $1 AND id = ANY($2::uuid[])"
TASK_BY_ID = "SELECT * FROM tasks WHERE org_id = $1 AND id = $2"
TASK_BY_ID_ANY_ORG = "SELECT * FROM tasks WHERE id = $1"
TASK_BY_ID_ANY_ORG_FOR_UPDATE = "SELECT * FROM tasks WHERE id = $1 FOR UPDATE"
TASKS_OF_JOB = "SELECT * FROM tasks WHERE job_id = $1 ORDER BY position, id"

JOB_COLUMNS = {"createdDateTime": "created_at", "modifiedDateTime": "modified_at", "displayName": "display_name"}

LIST_JOBS = """-- one page of an organization's jobs, newest first unless asked otherwise
SELECT j.*, count(*) OVER () AS total FROM jobs j
WHERE j.org_id = $1
  AND ($2::uuid IS NULL OR j.id = $2)
  AND ($3::text[] IS NULL OR j.status = ANY($3))
  AND ($4::text[] IS NULL OR EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = j.id AND t.engine_id = ANY($4)))
  AND ($5::uuid IS NULL OR j.library_id = $5)
  AND ($6::text IS NULL OR j.cluster_id = $6)
  AND ($7::timestamptz IS NULL OR j.{filter_column} >= $7)
  AND ($8::timestamptz IS NULL OR j.{filter_column} <= $8)
  AND ($9::jsonb IS NULL OR j.labels @> $9)
ORDER BY j.{order_column} {direction}, j.id {direction}
OFFSET $10 LIMIT $11"""

TASK_PAGES = """-- the same page of tasks for many jobs at once (the DataLoader's one query)
SELECT * FROM (
    SELECT t.*, row_number() OVER (PARTITION BY t.job_id ORDER BY t.position, t.id) AS rn,
           count(*) OVER (PARTITION BY t.job_id) AS total
    FROM tasks t WHERE t.org_id = $1 AND t.job_id = ANY($2::uuid[]) AND ($3::text[] IS NULL OR t.status = ANY($3))
      AND ($4::uuid IS NULL OR t.id = $4)
) ranked WHERE rn > $5 AND rn <= $5 + $6 ORDER BY job_id, rn"""

# A job's status follows from its tasks.
REFRESH_JOB_STATUS = """WITH s AS (
    SELECT CASE
        WHEN count(*) = 0 THEN 'complete'
        WHEN bool_or(status = 'running') THEN 'running'
        WHEN bool_and(status = 'pending') THEN 'pending'
        WHEN bool_and(status IN ('queued', 'pending')) THEN 'queued'
        WHEN bool_or(status IN ('queued', 'pending')) THEN 'running'
        WHEN bool_or(status = 'failed') THEN 'failed'
        WHEN bool_and(status = 'complete') THEN 'complete'
        ELSE 'cancelled' END AS status
    FROM tasks WHERE job_id = $1)
UPDATE jobs j SET status = s.status, modified_at = now() FROM s
WHERE j.id = $1 AND j.status IS DISTINCT FROM s.status RETURNING j.status"""

LOCK_JOB = "SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE"

CLAIM_LOCK = "SELECT pg_advisory_xact_lock(hashtext('engineshed-claim'), hashtext($1))"

CLAIM = """-- queued tasks that are due, and running ones whose lease ran out, up to the engine's fleet-wide limit;
-- rows another claimer holds are skipped. Callers hold CLAIM_LOCK for the engine so the count is exact.
WITH busy AS (
    SELECT count(*) AS n FROM tasks
    WHERE engine_id = $1 AND status = 'running' AND lease_expires_at >= now()
), picked AS (
    SELECT id FROM tasks
    WHERE engine_id = $1
      AND ((status = 'queued' AND run_after <= now())
           OR (status = 'running' AND lease_expires_at < now() AND attempts < max_attempts AND NOT cancel_requested))
    ORDER BY created_at, position, id
    LIMIT greatest(0, least($2, $5 - (SELECT n FROM busy)))
    FOR UPDATE SKIP LOCKED
)
UPDATE tasks t SET status = 'running', lease_owner = $3, lease_expires_at = now() + make_interval(secs => $4),
    attempts = t.attempts + 1, started_at = coalesce(t.started_at, now()), modified_at = now(),
    failure_reason = NULL, failure_message = NULL
FROM picked WHERE t.id = picked.id RETURNING t.*"""

HEARTBEAT = """-- renew the lease while we still own it; says whether cancellation was asked for
UPDATE tasks SET lease_expires_at = now() + make_interval(secs => $3),
    progress = coalesce($4, progress), progress_message = coalesce($5, progress_message), modified_at = now()
WHERE id = $1 AND lease_owner = $2 AND status = 'running'
RETURNING cancel_requested, job_id"""

FINISH = """-- a terminal state, only by the lease owner of a running task (a lost lease makes this a no-op)
UPDATE tasks SET status = $3, output = coalesce($4, output), failure_reason = $5, failure_message = $6,
    progress = CASE WHEN $3 = 'complete' THEN 1 ELSE progress END,
    completed_at = now(), lease_owner = NULL, lease_expires_at = NULL, modified_at = now()
WHERE id = $1 AND lease_owner = $2 AND status = 'running' RETURNING *"""

RETRY_LATER = """-- give the task back to the queue after a failed attempt
UPDATE tasks SET status = 'queued', run_after = now() + make_interval(secs => $3), failure_reason = $4,
    failure_message = $5, lease_owner = NULL, lease_expires_at = NULL, queued_at = now(), modified_at = now()
WHERE id = $1 AND lease_owner = $2 AND status = 'running' RETURNING *"""

REAP = """-- running tasks whose lease expired and that may not be tried again (attempts spent, or cancelled)
UPDATE tasks SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'failed' END,
    failure_reason = CASE WHEN cancel_requested THEN NULL ELSE 'heartbeat_timeout' END,
    failure_message = CASE WHEN cancel_requested THEN NULL
                           ELSE 'the worker running this task stopped answering, and no attempts are left' END,
    completed_at = now(), lease_owner = NULL, lease_expires_at = NULL, modified_at = now()
WHERE id IN (SELECT id FROM tasks WHERE status = 'running' AND lease_expires_at < now()
             AND (attempts >= max_attempts OR cancel_requested) FOR UPDATE SKIP LOCKED)
RETURNING *"""

CANCEL_QUEUED = """UPDATE tasks SET status = 'cancelled', completed_at = now(), lease_owner = NULL, modified_at = now()
WHERE job_id = $1 AND status IN ('queued', 'pending') RETURNING *"""

REQUEST_CANCEL_RUNNING = """UPDATE tasks SET cancel_requested = true, modified_at = now()
WHERE job_id = $1 AND status = 'running' RETURNING id"""

CANCEL_QUEUED_FOR_LIBRARY = """-- a library is being deleted: its waiting tasks will never find it
UPDATE tasks SET status = 'cancelled', completed_at = now(), failure_message = 'the library was deleted', modified_at = now()
WHERE org_id = $1 AND payload->>'libraryId' = $2::text AND status IN ('queued', 'pending') RETURNING *"""

REQUEST_CANCEL_RUNNING_FOR_LIBRARY = """UPDATE tasks SET cancel_requested = true, modified_at = now()
WHERE org_id = $1 AND payload->>'libraryId' = $2::text AND status = 'running' RETURNING id, job_id"""

RETRY_JOB = """UPDATE tasks SET status = 'queued', attempts = 0, run_after = now(), queued_at = now(),
    failure_reason = NULL, failure_message = NULL, cancel_requested = false, completed_at = NULL,
    started_at = NULL, progress = 0, output = NULL, modified_at = now()
WHERE job_id = $1 AND status IN ('failed', 'cancelled') RETURNING *"""

DELETE_JOB = "DELETE FROM jobs WHERE org_id = $1 AND id = $2"


async def insert_job(conn: asyncpg.Connection, **v: Any) -> Job:
    return Job.of(await conn.fetchrow(
        INSERT_JOB, v["id"], v["org_id"], v.get("name"), v.get("cluster_id"), v.get("library_id"), v.get("actor"),
        v.get("model_version_id"), v.get("display_name"), v.get("labels") or {},
    ))


async def set_modified_by(conn: asyncpg.Connection, org_id: UUID, job_id: UUID, actor: str | None) -> None:
    await conn.execute(SET_MODIFIED_BY, org_id, job_id, actor)


async def insert_task(conn: asyncpg.Connection, **v: Any) -> Task:
    """A queued task; with ``done_output``, one recorded complete with that output."""
    args = (v["id"], v["org_id"], v["job_id"], v["engine_id"], v["position"], v["payload"], v["max_attempts"], bool(v.get("test_task")))
    if v.get("done_output") is not None:
        return Task.of(await conn.fetchrow(INSERT_DONE_TASK, *args, v["done_output"]))
    return Task.of(await conn.fetchrow(INSERT_TASK, *args, v.get("trace_context")))


async def trace_context(conn: asyncpg.Connection, task_id: UUID) -> str | None:
    """The traceparent recorded when the task was queued (None: tracing was off)."""
    return await conn.fetchval(TRACE_CONTEXT, task_id)


async def queue_stats(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """(engine_id, queued, oldest_seconds, running) for every engine, zeros included."""
    return await conn.fetch(QUEUE_STATS)


async def jobs_by_ids(conn: asyncpg.Connection, org_id: UUID, job_ids: list[UUID]) -> list[Job]:
    return [Job.of(r) for r in await conn.fetch(JOBS_BY_IDS, org_id, job_ids)]


async def job_by_id(conn: asyncpg.Connection, org_id: UUID, job_id: UUID) -> Job | None:
    return Job.maybe(await conn.fetchrow(JOB_BY_ID, org_id, job_id))


async def task_by_id(conn: asyncpg.Connection, org_id: UUID | None, task_id: UUID, *, for_update: bool = False) -> Task | None:
    if org_id is None:
        return Task.maybe(await conn.fetchrow(TASK_BY_ID_ANY_ORG_FOR_UPDATE if for_update else TASK_BY_ID_ANY_ORG, task_id))
    return Task.maybe(await conn.fetchrow(TASK_BY_ID, org_id, task_id))


async def tasks_of_job(conn: asyncpg.Connection, job_id: UUID) -> list[Task]:
    return [Task.of(r) for r in await conn.fetch(TASKS_OF_JOB, job_id)]


async def page_jobs(
    conn: asyncpg.Connection,
    org_id: UUID,
    *,
    job_id: UUID | None,
    statuses: list[str] | None,
    engine_ids: list[str] | None,
    library_id: UUID | None,
    cluster_id: str | None,
    filter_field: str,
    from_time: Any,
    to_time: Any,
    order_field: str,
    descending: bool,
    offset: int,
    limit: int,
    labels: dict[str, str] | None = None,
) -> tuple[list[Job], int]:
    sql = LIST_JOBS.format(
        filter_column=JOB_COLUMNS[filter_field],
        order_column=JOB_COLUMNS[order_field],
        direction="DESC" if descending else "ASC",
    )
    args = (org_id, job_id, statuses, engine_ids, library_id, cluster_id, from_time, to_time, labels)
    records, total = await fetch_page(conn, sql, args, offset, limit)
    return [Job.of(r) for r in records], total


async def task_pages(
    conn: asyncpg.Connection, org_id: UUID, job_ids: list[UUID], statuses: tuple[str, ...] | None, offset: int, limit: int,
    task_id: UUID | None = None,
) -> tuple[dict[UUID, list[Task]], dict[UUID, int]]:
    filters = (list(statuses) if statuses else None, task_id)
    return await fetch_pages_by_parent(conn, TASK_PAGES, org_id, job_ids, filters, offset, limit, parent="job_id", row=Task.of)


async def refresh_job_status(conn: asyncpg.Connection, job_id: UUID) -> None:
    # Lock the job first, in its own statement: two transactions finishing sibling tasks then run the
    # refresh one after the other, and the second one's fresh snapshot sees the first one's task.
    await conn.execute(LOCK_JOB, job_id)
    await conn.execute(REFRESH_JOB_STATUS, job_id)
    await notify(conn, EVENT_CHANNEL, str(job_id))


async def notify(conn: asyncpg.Connection, channel: str, payload: str) -> None:
    await conn.execute("SELECT pg_notify($1, $2)", channel, payload)


async def claim(
    conn: asyncpg.Connection, engine_id: str, *, limit: int, owner: str, lease_seconds: float, concurrency_limit: int
) -> list[Task]:
    """Must run inside a transaction."""
    await conn.execute(CLAIM_LOCK, engine_id)
    return [Task.of(r) for r in await conn.fetch(CLAIM, engine_id, limit, owner, lease_seconds, concurrency_limit)]


async def heartbeat(
    conn: asyncpg.Connection, task_id: UUID, owner: str, lease_seconds: float, progress: float | None, message: str | None
) -> asyncpg.Record | None:
    return await conn.fetchrow(HEARTBEAT, task_id, owner, lease_seconds, progress, message)


async def finish(
    conn: asyncpg.Connection,
    task_id: UUID,
    owner: str,
    status: str,
    *,
    output: Any = None,
    failure_reason: str | None = None,
    failure_message: str | None = None,
) -> Task | None:
    return Task.maybe(await conn.fetchrow(FINISH, task_id, owner, status, output, failure_reason, failure_message))


async def retry_later(
    conn: asyncpg.Connection, task_id: UUID, owner: str, delay_seconds: float, reason: str, message: str
) -> Task | None:
    return Task.maybe(await conn.fetchrow(RETRY_LATER, task_id, owner, delay_seconds, reason, message))


async def reap(conn: asyncpg.Connection) -> list[Task]:
    return [Task.of(r) for r in await conn.fetch(REAP)]


async def cancel_queued(conn: asyncpg.Connection, job_id: UUID) -> list[Task]:
    return [Task.of(r) for r in await conn.fetch(CANCEL_QUEUED, job_id)]


async def request_cancel_running(conn: asyncpg.Connection, job_id: UUID) -> list[UUID]:
    return [r["id"] for r in await conn.fetch(REQUEST_CANCEL_RUNNING, job_id)]


async def retry_job(conn: asyncpg.Connection, job_id: UUID) -> list[Task]:
    return [Task.of(r) for r in await conn.fetch(RETRY_JOB, job_id)]


async def delete_job(conn: asyncpg.Connection, org_id: UUID, job_id: UUID) -> None:
    await conn.execute(DELETE_JOB, org_id, job_id)


RELEASE = """-- hand a task back untouched (the worker is shutting down): the attempt does not count
UPDATE tasks SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL, attempts = greatest(attempts - 1, 0),
    run_after = now(), queued_at = now(), modified_at = now()
WHERE id = $1 AND lease_owner = $2 AND status = 'running' RETURNING *"""


async def release(conn: asyncpg.Connection, task_id: UUID, owner: str) -> Task | None:
    return Task.maybe(await conn.fetchrow(RELEASE, task_id, owner))


async def cancel_for_library(conn: asyncpg.Connection, org_id: UUID, library_id: UUID) -> None:
    """Cancel the tasks that work on a library (it is being deleted): queued ones now, running ones by request."""
    jobs = {t.job_id for t in (Task.of(r) for r in await conn.fetch(CANCEL_QUEUED_FOR_LIBRARY, org_id, str(library_id)))}
    for record in await conn.fetch(REQUEST_CANCEL_RUNNING_FOR_LIBRARY, org_id, str(library_id)):
        jobs.add(record["job_id"])
        await notify(conn, CANCEL_CHANNEL, str(record["id"]))
    for job_id in jobs:
        await refresh_job_status(conn, job_id)
