"""Putting work on the queue: a job, its tasks and the notifications that wake workers and subscribers, in the
caller's transaction. Every kind of job (createJob, trainings, labeling, embeddings) is enqueued here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from gateway.observability import tracing
from storage.queries import jobs as q
from storage.rows import Job


@dataclass(frozen=True, slots=True)
class NewTask:
    engine_id: str
    payload: dict[str, Any]
    test_task: bool = False
    # A task with nothing to run (a media adapter) is recorded complete with this output.
    completed_output: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class NewJob:
    org_id: UUID
    name: str | None
    actor: str | None
    max_attempts: int
    library_id: UUID | None = None
    # The registered model version the job's payloads pin: deleteModelVersion refuses while the job exists.
    model_version_id: UUID | None = None
    cluster_id: str | None = None
    display_name: str | None = None
    labels: Mapping[str, str] | None = None


async def enqueue(conn: asyncpg.Connection, job: NewJob, tasks: Sequence[NewTask]) -> Job:
    """Insert the job and its tasks in order, then wake the workers of each engine and tell subscribers.

    Each task keeps the trace context of the request that queued it, so its worker continues that trace."""
    trace_context = tracing.traceparent()
    row = await q.insert_job(
        conn, id=uuid4(), org_id=job.org_id, name=job.name, cluster_id=job.cluster_id, library_id=job.library_id,
        actor=job.actor, model_version_id=job.model_version_id, display_name=job.display_name,
        labels=dict(job.labels or {}),
    )
    for position, task in enumerate(tasks):
        await q.insert_task(
            conn, id=uuid4(), org_id=job.org_id, job_id=row.id, engine_id=task.engine_id, position=position,
            payload=task.payload, max_attempts=job.max_attempts, test_task=task.test_task,
            done_output=task.completed_output, trace_context=trace_context,
        )
    if any(task.completed_output is not None for task in tasks):
        await q.refresh_job_status(conn, row.id)
    for engine_id in sorted({task.engine_id for task in tasks if task.completed_output is None}):
        await q.notify(conn, q.WAKE_CHANNEL, engine_id)
    await q.notify(conn, q.EVENT_CHANNEL, str(row.id))
    return row
