"""Subscriptions fed by PostgreSQL NOTIFY, so an update made by any process reaches every gateway."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
from typing import Any

from graphql import GraphQLError

from gateway.errors import ApiError
from gateway.schema.context import Info
from gateway.schema.loaders import Loaders
from gateway.services.queue import jobs as job_service
from storage.queries import jobs as job_q
from storage.rows import Job, Task

POLL_SECONDS = 5.0  # also re-read now and then, in case a notification was missed (LISTEN reconnecting)


def _coded(stream: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    """Client errors keep their code over WebSocket too: the socket transport formats errors itself (not
    through the HTTP view), so the code travels in the GraphQLError's extensions."""

    @functools.wraps(stream)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        try:
            async for item in stream(*args, **kwargs):
                yield item
        except ApiError as exc:
            extensions: dict[str, Any] = {"code": exc.code}
            if exc.data:
                extensions["data"] = exc.data
            raise GraphQLError(exc.message, extensions=extensions, original_error=exc) from exc

    return wrapper


async def _changes(info: Info, job_id: Any) -> AsyncIterator[None]:
    hub = info.context.resources.events
    queue = hub.subscribe(str(job_id))
    try:
        yield None
        while True:
            try:
                await asyncio.wait_for(queue.get(), timeout=POLL_SECONDS)
            except asyncio.TimeoutError:
                pass
            while not queue.empty():  # coalesce bursts of progress updates
                queue.get_nowait()
            # One context serves the whole subscription: fresh loaders, or nested fields (Job.tasks)
            # would be answered from the first event's cache.
            info.context.loaders = Loaders(info.context)
            yield None
    finally:
        hub.unsubscribe(str(job_id), queue)


@_coded
async def job_updates(info: Info, job_id: Any) -> AsyncIterator[Job]:
    principal = await info.context.authenticate_connection()
    res = info.context.resources
    job = await job_service.get(res, principal, job_id)
    last = None
    async for _ in _changes(info, job.id):
        async with res.pool.acquire() as conn:
            current = await job_q.job_by_id(conn, principal.org_id, job.id)
            tasks = await job_q.tasks_of_job(conn, job.id)
        if current is None:
            return
        signature = (current.status, tuple((t.status, t.progress) for t in tasks))
        if signature != last:
            last = signature
            yield current
        if current.status in ("complete", "failed", "cancelled"):
            return


@_coded
async def task_updates(info: Info, job_id: Any) -> AsyncIterator[Task]:
    principal = await info.context.authenticate_connection()
    res = info.context.resources
    job = await job_service.get(res, principal, job_id)
    seen: dict[Any, tuple] = {}
    async for _ in _changes(info, job.id):
        async with res.pool.acquire() as conn:
            tasks = await job_q.tasks_of_job(conn, job.id)
        for task in tasks:
            signature = (task.status, task.progress, task.attempts)
            if seen.get(task.id) != signature:
                seen[task.id] = signature
                yield task
        if tasks and all(t.status in ("complete", "failed", "cancelled") for t in tasks):
            return
