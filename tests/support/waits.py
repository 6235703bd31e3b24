"""Waiting in tests: poll until the thing is so, up to a deadline, never a fixed sleep.

A wait returns as soon as its condition holds; past the deadline it fails with what it waited for, the last value
it saw and, where a worker process was given, the end of that worker's log: the reason is usually there.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from tests.conftest import Org, Process
    from tests.graphql_client import GraphQLClient
    from tests.support.db import Database

T = TypeVar("T")

FINISHED = ("complete", "failed", "cancelled")  # a job's or a task's final statuses
TRAINED = ("complete", "failed")  # a model's final train statuses
LOG_TAIL = 4000

TASK_FIELDS = """id status engineId payload output progress progressMessage attempts
    failureReason failureMessage queuedDateTime startedDateTime completedDateTime duration"""
JOB_FIELDS = f"id status createdDateTime modifiedDateTime tasks {{ count records {{ {TASK_FIELDS} }} }}"
MODEL_FIELDS = (
    "id engineId libraryId libraryVersion trainJobId trainStatus jsondata accuracy dataUrl contentType modifiedDateTime"
)


def wait_for(
    check: Callable[[], T], *, timeout: float = 60, interval: float = 0.2, what: str = "condition",
    worker: Process | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy, and return that; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    log = f"\nworker log:\n{worker.output()[-LOG_TAIL:]}" if worker is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}{log}")


def wait_status(
    read: Callable[[], dict[str, Any]], statuses: str | Sequence[str], *, what: str, key: str = "status",
    timeout: float = 90, interval: float = 0.2, worker: Process | None = None,
) -> dict[str, Any]:
    """Poll ``read`` until its ``key`` is one of ``statuses``; return what it read then."""
    wanted = (statuses,) if isinstance(statuses, str) else tuple(statuses)
    seen: list[dict[str, Any]] = []

    def check() -> dict[str, Any] | None:
        seen[:] = [read()]
        return seen[0] if seen[0][key] in wanted else None

    try:
        return wait_for(check, timeout=timeout, interval=interval, what=f"{what} to be {'/'.join(wanted)}", worker=worker)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nlast read: {seen}") from None


def wait_job(
    org: Org, job_id: str, statuses: str | Sequence[str] = FINISHED, *, fields: str = JOB_FIELDS, timeout: float = 120,
    worker: Process | None = None, client: GraphQLClient | None = None,
) -> dict[str, Any]:
    """The job (``fields`` of it, read over GraphQL) once its status is one of ``statuses``."""
    query = f"query($id: ID!) {{ job(id: $id) {{ {fields} }} }}"
    return wait_status(
        lambda: (client or org.client).query(query, id=job_id).ok()["job"], statuses,
        what=f"job {job_id}", timeout=timeout, worker=worker,
    )


def wait_task(
    org: Org, job_id: str, statuses: str | Sequence[str] = FINISHED, *, fields: str = TASK_FIELDS, timeout: float = 90,
    worker: Process | None = None,
) -> dict[str, Any]:
    """The one task of the job (read over GraphQL) once its status is one of ``statuses``."""
    query = f"query($id: ID!) {{ job(id: $id) {{ tasks {{ records {{ {fields} }} }} }} }}"

    def read() -> dict[str, Any]:
        (task,) = org.client.query(query, id=job_id).ok()["job"]["tasks"]["records"]
        return task

    return wait_status(read, statuses, what=f"the task of job {job_id}", timeout=timeout, worker=worker)


def wait_model(
    org: Org, model_id: str, statuses: str | Sequence[str] = TRAINED, *, fields: str = MODEL_FIELDS,
    timeout: float = 120, worker: Process | None = None,
) -> dict[str, Any]:
    """The model (read over GraphQL) once its trainStatus is one of ``statuses``."""
    query = f"query($id: ID!) {{ libraryEngineModel(id: $id) {{ {fields} }} }}"
    return wait_status(
        lambda: org.client.query(query, id=model_id).ok()["libraryEngineModel"], statuses, key="trainStatus",
        what=f"model {model_id}", timeout=timeout, worker=worker,
    )


def wait_job_finished(db: Database, job_id: str, timeout: float = 120) -> str:
    """The job's final status, read from the database (for tests that break the gateway on purpose)."""

    def status() -> str | None:
        value: str = db.fetchval("SELECT status FROM jobs WHERE id = $1", uuid.UUID(job_id))
        return value if value in FINISHED else None

    return wait_for(status, timeout=timeout, what=f"job {job_id} to finish")


def wait_task_row(
    db: Database, task_id: str, check: Callable[[Any], bool], what: str, timeout: float = 90, interval: float = 0.05,
) -> Any:
    """The task's database row once ``check`` holds for it."""
    seen: list[Any] = []

    def look() -> Any:
        row = db.fetch("SELECT * FROM tasks WHERE id = $1", uuid.UUID(task_id))[0]
        seen[:] = [dict(row)]
        return row if check(row) else None

    try:
        return wait_for(look, timeout=timeout, interval=interval, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the task was {seen}") from None


def wait_worker_ready(process: Process, timeout: float = 60) -> None:
    """Until the worker says it is ready; fails at once, with its log, if it exits first."""

    def ready() -> bool:
        assert process.alive(), "the worker exited:\n" + process.output()[-LOG_TAIL:]
        return " ready with engines" in process.output()

    wait_for(ready, timeout=timeout, interval=0.1, what="the worker to be ready")
