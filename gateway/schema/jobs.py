"""Job and Task types, the createJob input, and the types external engines see when claiming."""

from __future__ import annotations

import json
from typing import Optional

import strawberry

from gateway.schema.context import Info
from gateway.schema.engine_models import Engine
from gateway.schema.enums import JobDateTimeField, JobOrderField, OrderDirection, TaskStatus
from gateway.schema.paging import page_fields
from gateway.schema.scalars import DateTime, JSONData
from gateway.schema.job_fields import NO_SUCH_TASK, TaskReferenceFields
from gateway.schema.trainings import JobTrainingFields
from gateway.services.ids import try_parse_ids
from gateway.services.paging import check_page
from storage import rows


@strawberry.type
class TaskLog:
    uri: Optional[str]
    text: Optional[str]
    jsondata: Optional[JSONData]


@strawberry.type
class Task(TaskReferenceFields):
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
        from datetime import datetime, timezone

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


@strawberry.type
class TaskList:
    offset: int
    limit: int
    count: int
    total_count: int
    records: list[Task]


@strawberry.type
class Job(JobTrainingFields):
    id: strawberry.ID
    name: Optional[str]
    status: TaskStatus
    cluster_id: Optional[strawberry.ID]
    target_id: Optional[strawberry.ID]
    library_id: Optional[strawberry.ID]
    created_date_time: DateTime
    modified_date_time: DateTime
    created_by: Optional[str] = strawberry.field(description="The ID of the API token that created it.")
    modified_by: Optional[str] = strawberry.field(description="The ID of the API token that created, cancelled or retried it last.")
    _row: strawberry.Private[rows.Job]

    @strawberry.field
    async def tasks(
        self,
        info: Info,
        status: Optional[list[TaskStatus]] = None,
        offset: Optional[int] = 0,
        limit: Optional[int] = 30,
        id: Optional[strawberry.ID] = None,
        target_id: Optional[list[Optional[strawberry.ID]]] = None,
        has_source_asset: Optional[bool] = None,
    ) -> TaskList:
        offset, limit = check_page(offset, limit, info.context.resources.settings.max_page_size)
        statuses = tuple(sorted(s.value for s in status)) if status else None
        task_id = None
        if id is not None:
            parsed = try_parse_ids([id])
            task_id = parsed[0] if parsed else NO_SUCH_TASK
        if target_id is not None or has_source_asset:
            # Tasks here have no target media object and no source asset: such a filter matches none.
            task_id = NO_SUCH_TASK
        page = await info.context.loaders.task_page.load((self._row.id, statuses, task_id, offset, limit))
        return TaskList(**page_fields(page, [Task.from_row(r) for r in page.records]))

    @strawberry.field(description="Here each organization is its own application: the organization's ID.")
    def application_id(self) -> strawberry.ID:
        return strawberry.ID(str(self._row.org_id))

    @classmethod
    def from_row(cls, row: rows.Job) -> Job:
        return cls(
            id=strawberry.ID(str(row.id)),
            name=row.name,
            status=TaskStatus(row.status),
            cluster_id=strawberry.ID(row.cluster_id) if row.cluster_id else None,
            target_id=None,
            library_id=strawberry.ID(str(row.library_id)) if row.library_id else None,
            created_date_time=row.created_at,
            modified_date_time=row.modified_at,
            created_by=row.created_by,
            modified_by=row.modified_by,
            _row=row,
        )


@strawberry.type
class JobList:
    offset: int
    limit: int
    count: int
    total_count: int
    records: list[Job]


@strawberry.type
class EngineResult:
    """A task's output, as upstream's engineResults lists them (no media objects here: tdoId is null)."""

    job_id: strawberry.ID
    task_id: strawberry.ID
    engine_id: strawberry.ID
    tdo_id: Optional[strawberry.ID]
    asset_id: Optional[strawberry.ID]
    jsondata: Optional[JSONData]


@strawberry.type
class EngineResultList:
    offset: int
    limit: int
    count: int
    total_count: int
    records: list[EngineResult]


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


# ---- inputs ----


@strawberry.input
class CreateTask:
    engine_id: Optional[strawberry.ID] = None
    payload: Optional[JSONData] = None
    payload_string: Optional[str] = None
    task_type: Optional[str] = None
    is_clone: Optional[bool] = None
    build_id: Optional[str] = None
    test_task: Optional[bool] = None


@strawberry.input
class SetTDOSourceData:
    task_id: Optional[strawberry.ID] = None
    schedule_id: Optional[strawberry.ID] = None


@strawberry.input(name="CreateTDOInJob")
class CreateTDOInJob:
    start_date_time: Optional[DateTime] = None
    stop_date_time: Optional[DateTime] = None
    status: Optional[str] = None
    name: Optional[str] = None
    description: Optional[str] = None
    is_public: Optional[bool] = None
    parent_folder_id: Optional[strawberry.ID] = None
    source_data: Optional[SetTDOSourceData] = None
    details: Optional[JSONData] = None
    add_to_index: Optional[bool] = None
    thumbnail_url: Optional[str] = None
    preview_url: Optional[str] = None
    source_image_url: Optional[str] = None
    url: Optional[str] = None


@strawberry.input
class CreateJob:
    tasks: Optional[list[CreateTask]] = None
    name: Optional[str] = None
    status: Optional[str] = None
    target_id: Optional[strawberry.ID] = None
    target: Optional[CreateTDOInJob] = None
    cluster_id: Optional[strawberry.ID] = None
    retries: Optional[int] = 0
    scheduled_job_id: Optional[strawberry.ID] = None
    job_template_id: Optional[strawberry.ID] = None
    skip_decider: Optional[bool] = None
    job_config: Optional[JSONData] = None
    display_name: Optional[str] = None
    labels: Optional[JSONData] = strawberry.field(default=None, description="User labels, string to string (Vertex's rules).")


@strawberry.input
class JobDateTimeFilter:
    field: JobDateTimeField
    from_date_time: Optional[DateTime] = None
    to_date_time: Optional[DateTime] = None


@strawberry.input
class JobSortField:
    field: JobOrderField
    direction: Optional[OrderDirection] = OrderDirection.desc
