"""Task: one engine's part of a job, and what external engines do with one (claim, heartbeat, complete, fail).
Tasks here form no trees (no parent, child or standby tasks) and have no target media object, which the
reference schema's fields say plainly."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Annotated, Optional
from urllib.parse import unquote, urlsplit

import strawberry

from gateway.schema import media
from gateway.schema.common import Paginated, lazy_class
from gateway.schema.context import Info
from gateway.schema.engine_platform import Build
from gateway.schema.engines import Engine
from gateway.schema.enums import TaskStatus
from gateway.schema.scalars import DateTime, JSONData
from gateway.services.queue import dispatch
from gateway.services.queue import jobs as job_service
from storage import rows

if TYPE_CHECKING:
    from gateway.schema.jobs import Job

JobRef = Annotated["Job", strawberry.lazy("gateway.schema.jobs")]


@strawberry.type(description=(
    "A media object (TDO). There are none here: a job's and a task's target are always null, and the type carries "
    "only its own values, none of the objects the reference schema links to it."))
class TemporalDataObject:
    id: strawberry.ID
    created_date_time: Optional[DateTime]
    modified_date_time: Optional[DateTime]
    created_by: Optional[str]
    modified_by: Optional[str]
    description: Optional[str]
    name: Optional[str]
    media_id: Optional[strawberry.ID]
    thumbnail_url: Optional[str]
    source_image_url: Optional[str]
    jsondata: Optional[JSONData]
    start_date_time: DateTime
    stop_date_time: DateTime
    source: Optional[str]
    application_id: strawberry.ID
    status: Optional[str]


@strawberry.type
class TaskLog:
    uri: Optional[str]
    text: Optional[str]
    jsondata: Optional[JSONData]


# A task's computed fields come first in the published schema. Strawberry lists a method resolver after every
# annotated field, so these are declared as annotated fields with a resolver, ahead of the stored ones.


async def _job(root: Task, info: Info) -> Optional[JobRef]:
    row = await info.context.loaders.job.load(root._row.job_id)
    return lazy_class(JobRef).from_row(row) if row else None


async def _created_by(root: Task, info: Info) -> Optional[str]:
    row = await info.context.loaders.job.load(root._row.job_id)
    return row.created_by if row else None


async def _modified_by(root: Task, info: Info) -> Optional[str]:
    row = await info.context.loaders.job.load(root._row.job_id)
    return row.modified_by if row else None


async def _name(root: Task, info: Info) -> Optional[str]:
    row = await info.context.loaders.engine.load(root._row.engine_id)
    return row.name if row else None


def media_file_name(payload: object) -> Optional[str]:
    """The file name in the http(s) URL of the one media a task reads (a run's `url`, or `urls` of one); null for
    a task of several media or none (a training reads a library)."""
    if not isinstance(payload, dict):
        return None
    urls = payload.get("urls") or ([payload["url"]] if payload.get("url") else [])
    if len(urls) != 1 or not isinstance(urls[0], str):
        return None
    parts = urlsplit(urls[0])
    if parts.scheme.lower() not in ("http", "https"):
        return None
    return PurePosixPath(unquote(parts.path)).name or None


@strawberry.type
class Task:
    job: Optional[JobRef] = strawberry.field(resolver=_job)
    created_by: Optional[str] = strawberry.field(resolver=_created_by, description="The ID of the API token that created its job.")
    application_id: str = strawberry.field(
        resolver=lambda root: str(root._row.org_id),
        description="Here each organization is its own application: the organization's ID.")
    test_task: bool = strawberry.field(resolver=lambda root: root._row.test_task, description="As createJob's CreateTask.testTask set it.")
    is_clone: bool = strawberry.field(resolver=lambda: False, description="Always false: there is no target media object to clone.")
    target_id: Optional[strawberry.ID] = strawberry.field(
        resolver=lambda: None, description="Always null: tasks here have no target media object (TDO).")
    parent_task_id: Optional[strawberry.ID] = strawberry.field(resolver=lambda: None, description="Always null: tasks here form no trees.")
    parent_task: Optional[Task] = strawberry.field(resolver=lambda: None, description="Always null: tasks here form no trees.")
    child_task_ids: list[strawberry.ID] = strawberry.field(resolver=lambda: [], description="Always empty: tasks here form no trees.")
    child_tasks: list[Task] = strawberry.field(resolver=lambda: [], description="Always empty: tasks here form no trees.")
    name: Optional[str] = strawberry.field(resolver=_name, description="Its engine's name.")
    description: Optional[str] = strawberry.field(
        resolver=lambda: None, description="Always null: a task is described by its engine and payload, not by text of its own.")
    modified_by: Optional[str] = strawberry.field(
        resolver=_modified_by, description="As its job's: the ID of the API token that created, cancelled or retried it last.")
    runtime_payload: Optional[JSONData] = strawberry.field(
        resolver=lambda root: root._row.payload,
        description=("The payload the engine runs with, as `payload`: stored as validated, with its mode, model and media "
                     "URL filled in."))
    target: Optional[TemporalDataObject] = strawberry.field(
        resolver=lambda: None, description="Always null: tasks here have no target media object (TDO).")
    source_asset_id: Optional[strawberry.ID] = strawberry.field(
        resolver=lambda: None, description="Always null: there are no assets; a run's media is a URL in its payload.")
    media_file_name: Optional[str] = strawberry.field(
        resolver=lambda root: media_file_name(root._row.payload),
        description="The file name of the media a run task reads (from its URL); null for trainings and runs of several media.")
    media_length_sec: Optional[int] = strawberry.field(
        resolver=lambda: None, description="Always null: media is read from its URL as the task runs, and its length is not recorded.")
    media_storage_bytes: Optional[int] = strawberry.field(
        resolver=lambda: None, description="Always null: the media a run reads is not stored here.")
    engine_configuration_id: Optional[strawberry.ID] = strawberry.field(
        resolver=lambda: None, description="Always null: no engine configurations are stored; a task's configuration is its payload's config.")
    execution_location_id: Optional[strawberry.ID] = strawberry.field(
        resolver=lambda: None, description="Always null: tasks run in engineshed workers or external engines, not at execution locations.")
    template_id: Optional[strawberry.ID] = strawberry.field(
        resolver=lambda: None, description="Always null: tasks are created by createJob or publishLibrary, never from a template.")
    build_id: Optional[strawberry.ID] = strawberry.field(
        resolver=lambda: None, description="Always null: engines here have no builds.")
    build: Optional[Build] = strawberry.field(resolver=lambda: None, description="Always null: engines here have no builds.")
    id: strawberry.ID
    job_id: strawberry.ID
    engine_id: strawberry.ID
    status: TaskStatus
    order: int
    payload: JSONData
    task_payload: JSONData
    output: Optional[JSONData]
    task_output: Optional[JSONData]
    payload_string: Optional[str]
    output_string: Optional[str]
    progress: float
    progress_message: Optional[str]
    attempts: int
    failure_reason: Optional[str]
    failure_message: Optional[str]
    created_date_time: DateTime
    modified_date_time: DateTime
    queued_date_time: Optional[DateTime]
    started_date_time: Optional[DateTime]
    completed_date_time: Optional[DateTime]
    _row: strawberry.Private[rows.Task]

    @strawberry.field(description="Seconds from start to completion (or until now while running).")
    def duration(self) -> Optional[float]:
        if self._row.started_at is None:
            return None
        end = self._row.completed_at or datetime.now(timezone.utc)
        return round((end - self._row.started_at).total_seconds(), 3)

    @strawberry.field
    async def engine(self, info: Info) -> Optional[Engine]:
        row = await info.context.loaders.engine.load(self._row.engine_id)
        return Engine.from_row(row) if row else None

    @strawberry.field
    def log(self) -> TaskLog:
        text = self._row.failure_message or self._row.progress_message
        return TaskLog(uri=None, text=text, jsondata={"attempts": self._row.attempts, "progress": self._row.progress})

    @strawberry.field(description=media.SEGMENTS_DESCRIPTION)
    async def segments(self, info: Info, kind: Optional[media.MediaSegmentKind] = None, offset: Optional[int] = 0,
                       limit: Optional[int] = 30) -> media.MediaSegmentList:
        return await media.task_segments(self, info, kind, offset, limit)

    @classmethod
    def from_row(cls, row: rows.Task) -> Task:
        return cls(
            id=strawberry.ID(str(row.id)),
            job_id=strawberry.ID(str(row.job_id)),
            engine_id=strawberry.ID(row.engine_id),
            status=TaskStatus(row.status),
            order=row.position,
            payload=row.payload,
            task_payload=row.payload,
            output=row.output,
            task_output=row.output,
            payload_string=json.dumps(row.payload),
            output_string=json.dumps(row.output) if row.output is not None else None,
            progress=row.progress,
            progress_message=row.progress_message,
            attempts=row.attempts,
            failure_reason=row.failure_reason,
            failure_message=row.failure_message,
            created_date_time=row.created_at,
            modified_date_time=row.modified_at,
            queued_date_time=row.queued_at,
            started_date_time=row.started_at,
            completed_date_time=row.completed_at,
            _row=row,
        )


@strawberry.type(name="TaskList")
class TaskList(Paginated[Task]):
    pass


@strawberry.type
class ClaimedTask:
    """A task leased to an external engine, with a token limited to its library and model."""

    task: Task
    token: str
    lease_expires_date_time: Optional[DateTime]


@strawberry.type
class TaskHeartbeat:
    task: Task
    cancel_requested: bool


@strawberry.type
class TaskQuery:
    @strawberry.field
    async def task(self, info: Info, id: strawberry.ID) -> Optional[Task]:
        return Task.from_row(await job_service.get_task(info.context.resources, info.context.principal, id))


@strawberry.type
class TaskMutation:
    @strawberry.mutation(description="External engines: lease up to `limit` queued tasks (engine token).")
    async def claim_tasks(self, info: Info, engine_id: strawberry.ID, limit: Optional[int] = 1) -> list[ClaimedTask]:
        claimed = await dispatch.claim_external(info.context.resources, info.context.principal, str(engine_id), limit or 1)
        return [ClaimedTask(task=Task.from_row(task), token=token, lease_expires_date_time=task.lease_expires_at)
                for task, token in claimed]

    @strawberry.mutation(description="External engines: renew the lease and report progress (0-1).")
    async def heartbeat_task(
        self, info: Info, id: strawberry.ID, progress: Optional[float] = None, message: Optional[str] = None
    ) -> TaskHeartbeat:
        task, cancel = await dispatch.heartbeat_external(info.context.resources, info.context.principal, id, progress, message)
        fresh = await job_service.get_task(info.context.resources, info.context.principal, task.id)
        return TaskHeartbeat(task=Task.from_row(fresh), cancel_requested=cancel)

    @strawberry.mutation(description="External engines: finish a claimed task successfully.")
    async def complete_task(self, info: Info, id: strawberry.ID, output: Optional[JSONData] = None) -> Task:
        await dispatch.complete_external(info.context.resources, info.context.principal, id, output)
        return Task.from_row(await job_service.get_task(info.context.resources, info.context.principal, id, finished_by_token=True))

    @strawberry.mutation(description="External engines: hand a claimed task back untouched (the engine is stopping): it is "
                                     "claimable again at once and the attempt does not count.")
    async def release_task(self, info: Info, id: strawberry.ID) -> Task:
        task = await dispatch.release_external(info.context.resources, info.context.principal, id)
        return Task.from_row(task)

    @strawberry.mutation(description="External engines: fail a claimed task (retried later when `retry` and attempts remain).")
    async def fail_task(
        self,
        info: Info,
        id: strawberry.ID,
        failure_reason: Optional[str] = None,
        failure_message: Optional[str] = None,
        retry: Optional[bool] = False,
    ) -> Task:
        task = await dispatch.fail_external(info.context.resources, info.context.principal, id, failure_reason, failure_message, bool(retry))
        return Task.from_row(task)
