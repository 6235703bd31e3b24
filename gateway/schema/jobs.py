"""Job: tasks run together, with what they say about it (progress, error, the model a training produced), the
createJob input, the queries that list jobs and their results, and the subscriptions that follow one."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Annotated, Optional

import strawberry

from gateway.errors import InvalidInput
from gateway.schema import media
from gateway.schema.caller import OrganizationStatus
from gateway.schema.common import NO_SUCH_ID, DeletePayload, Paginated
from gateway.schema.context import Info
from gateway.schema.engine_models import LibraryEngineModel
from gateway.schema.enums import (
    JobDateTimeField,
    JobOrderField,
    JobStatusFilter,
    OrderDirection,
    TaskStatus,
)
from gateway.schema.events import job_updates, task_updates
from gateway.schema.scalars import DateTime, JSONData
from gateway.schema.tasks import Task, TaskList, TemporalDataObject
from gateway.services.access.ids import try_parse_ids
from gateway.services.access.paging import Page, check_page
from gateway.services.queue import job_wait
from gateway.services.queue import jobs as job_service
from storage import rows

FINISHED = ("complete", "failed", "cancelled")


# A job's computed fields (what its tasks say about it) come first in the published schema. Strawberry lists a method resolver after every
# annotated field, so these are declared as annotated fields with a resolver, ahead of the stored ones.


async def _progress(root: Job, info: Info) -> float:
    summary = await info.context.loaders.job_summary.load(root._row.id)
    if summary is None or summary["progress"] is None:
        return 1.0 if root._row.status == "complete" else 0.0
    return round(float(summary["progress"]), 6)


async def _started_date_time(root: Job, info: Info) -> Optional[DateTime]:
    summary = await info.context.loaders.job_summary.load(root._row.id)
    return summary["started_at"] if summary else None


async def _completed_date_time(root: Job, info: Info) -> Optional[DateTime]:
    summary = await info.context.loaders.job_summary.load(root._row.id)
    return summary["completed_at"] if summary else None


async def _error(root: Job, info: Info) -> Optional[str]:
    if root._row.status == "cancelled":
        return "the job was cancelled"
    if root._row.status != "failed":
        return None
    summary = await info.context.loaders.job_summary.load(root._row.id)
    return (summary["error"] if summary else None) or "the job failed"


async def _output_model(root: Job, info: Info) -> Optional[LibraryEngineModel]:
    row = await info.context.loaders.job_output_model.load(root._row.id)
    return LibraryEngineModel.from_row(row) if row else None


@strawberry.type
class Job:
    display_name: Optional[str] = strawberry.field(resolver=lambda root: root._row.display_name)
    labels: JSONData = strawberry.field(resolver=lambda root: root._row.labels or {}, description="User labels, string to string.")
    done: bool = strawberry.field(
        resolver=lambda root: root._row.status in FINISHED, description="Whether the job has finished: complete, failed or cancelled.")
    progress: float = strawberry.field(resolver=_progress, description="0-1: the mean of its tasks' progress (a complete task counts 1).")
    started_date_time: Optional[DateTime] = strawberry.field(resolver=_started_date_time, description="When its first task started.")
    completed_date_time: Optional[DateTime] = strawberry.field(
        resolver=_completed_date_time, description="When its last task finished, once all have.")
    error: Optional[str] = strawberry.field(
        resolver=_error, description="Why it failed (its first failed task's message); null unless failed or cancelled.")
    output_model: Optional[LibraryEngineModel] = strawberry.field(
        resolver=_output_model, description="The model a training job produces (null for other jobs).")
    description: Optional[str] = strawberry.field(
        resolver=lambda: None, description="Always null: a job has its name, displayName and labels, and no description.")
    target: Optional[TemporalDataObject] = strawberry.field(
        resolver=lambda: None, description="Always null: jobs here have no target media object (TDO); a run's media is a URL in its payload.")
    source_asset_id: Optional[strawberry.ID] = strawberry.field(
        resolver=lambda: None, description="Always null: there are no assets.")
    template_id: Optional[strawberry.ID] = strawberry.field(
        resolver=lambda: None, description="Always null: jobs are created by createJob or publishLibrary, never from a template.")
    scheduled_job_id: Optional[strawberry.ID] = strawberry.field(
        resolver=lambda: None, description="Always null: there are no schedules; a job runs when it is created.")
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
            task_id = parsed[0] if parsed else NO_SUCH_ID
        if target_id is not None or has_source_asset:
            # Tasks here have no target media object and no source asset: such a filter matches none.
            task_id = NO_SUCH_ID
        page = await info.context.loaders.task_page.load((self._row.id, statuses, task_id, offset, limit))
        return TaskList.of(page, [Task.from_row(r) for r in page.records])

    @strawberry.field(description="Here each organization is its own application: the organization's ID.")
    def application_id(self) -> strawberry.ID:
        return strawberry.ID(str(self._row.org_id))

    @strawberry.field(description="The time-coded segments of the job's media tasks (recognizeMedia), in start order.")
    async def segments(self, info: Info, kind: Optional[media.MediaSegmentKind] = None, offset: Optional[int] = 0,
                       limit: Optional[int] = 30) -> media.MediaSegmentList:
        return await media.job_segments(self, info, kind, offset, limit)

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


@strawberry.type(name="JobList")
class JobList(Paginated[Job]):
    pass


@strawberry.type
class EngineResult:
    """A task's output, as engineResults lists them (no media objects here: tdoId is null)."""

    job_id: strawberry.ID
    task_id: strawberry.ID
    engine_id: strawberry.ID
    tdo_id: Optional[strawberry.ID]
    asset_id: Optional[strawberry.ID]
    jsondata: Optional[JSONData]
    start_offset_ms: Optional[int] = strawberry.field(default=None, description=(
        "A media task's record: where its page of segments starts in the media (ms); null for other tasks."))
    stop_offset_ms: Optional[int] = strawberry.field(default=None, description=(
        "A media task's record: where its page of segments ends in the media (ms); null for other tasks."))


@strawberry.type(name="EngineResultList")
class EngineResultList(Paginated[EngineResult]):
    pass


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
    labels: Optional[JSONData] = strawberry.field(default=None, description="User labels, string to string (lowercase keys and values of at most 64 characters, at most 64 labels).")


@strawberry.input
class JobDateTimeFilter:
    field: JobDateTimeField
    from_date_time: Optional[DateTime] = None
    to_date_time: Optional[DateTime] = None


@strawberry.input
class JobSortField:
    field: JobOrderField
    direction: Optional[OrderDirection] = OrderDirection.desc


@strawberry.type
class JobQuery:
    @strawberry.field
    async def engine_results(
        self, info: Info, job_id: Optional[strawberry.ID] = None, tdo_id: Optional[strawberry.ID] = None,
        offset: Optional[int] = 0, limit: Optional[int] = 30,
        start_offset_ms: Annotated[Optional[int], strawberry.argument(description=(
            "Media tasks: only segments ending after this offset (ms)."))] = None,
        stop_offset_ms: Annotated[Optional[int], strawberry.argument(description=(
            "Media tasks: only segments starting before this offset (ms)."))] = None,
    ) -> EngineResultList:
        tasks = await job_service.results(info.context.resources, info.context.principal, job_id) if job_id else []
        # A media task answers a record per page of its segments (vtn-standard series); other tasks their output.
        page, total, offset, limit = await media.result_records(info, tasks, start_offset_ms, stop_offset_ms, offset, limit)
        records = [
            EngineResult(job_id=strawberry.ID(str(r.task.job_id)), task_id=strawberry.ID(str(r.task.id)),
                         engine_id=strawberry.ID(r.task.engine_id), tdo_id=None, asset_id=None, jsondata=r.jsondata,
                         start_offset_ms=r.start_ms, stop_offset_ms=r.stop_ms)
            for r in page
        ]
        return EngineResultList(offset=offset, limit=limit, count=len(records), total_count=total, records=records)

    @strawberry.field
    async def job(
        self,
        info: Info,
        id: strawberry.ID,
        wait_seconds: Annotated[Optional[int], strawberry.argument(
            description="Answer when the job is done or after this many seconds (0-60), whichever is first."
        )] = 0,
    ) -> Optional[Job]:
        return Job.from_row(await job_wait.wait(info.context.resources, info.context.principal, id, wait_seconds))

    @strawberry.field
    async def jobs(
        self,
        info: Info,
        id: Optional[strawberry.ID] = None,
        status: Optional[list[JobStatusFilter]] = None,
        engine_ids: Optional[list[strawberry.ID]] = None,
        library_id: Optional[strawberry.ID] = None,
        cluster_id: Optional[strawberry.ID] = None,
        target_id: Optional[strawberry.ID] = None,
        date_time_filter: Optional[list[JobDateTimeFilter]] = None,
        order_by: Optional[list[JobSortField]] = None,
        offset: Optional[int] = 0,
        limit: Optional[int] = 30,
        application_id: Optional[strawberry.ID] = None,
        application_ids: Optional[list[Optional[strawberry.ID]]] = None,
        scheduled_job_ids: Optional[list[strawberry.ID]] = None,
        has_scheduled_job_id: Optional[bool] = None,
        labels: Annotated[Optional[JSONData], strawberry.argument(description="Jobs carrying every given label pair.")] = None,
        application_status: Annotated[Optional[str], strawberry.argument(description=(
            "The status of the job's application (its organization): `active`, the caller's, matches every job; "
            "any other matches none."))] = None,
    ) -> JobList:
        filter_field, from_time, to_time = "createdDateTime", None, None
        for f in date_time_filter or []:
            filter_field, from_time, to_time = f.field.value, f.from_date_time, f.to_date_time
        order = (order_by or [JobSortField(field=JobOrderField.createdDateTime)])[0]
        page = await job_service.list_page(
            info.context.resources,
            info.context.principal,
            job_id=id,
            statuses=[s.value for s in status] if status else None,
            engine_ids=[str(e) for e in engine_ids] if engine_ids else None,
            library_id=library_id,
            cluster_id=cluster_id,
            filter_field=filter_field,
            from_time=from_time,
            to_time=to_time,
            order_field=order.field.value,
            descending=order.direction != OrderDirection.asc,
            offset=offset,
            limit=limit,
            application_ids=None if application_id is None and application_ids is None else [application_id, *(application_ids or [])],
            scheduled=has_scheduled_job_id,
            scheduled_job_ids=scheduled_job_ids,
            labels=labels,
        )
        if target_id is not None:  # jobs here have no targets (media objects)
            page = Page([], page.offset, page.limit, 0)
        # The caller's organization is the jobs' application, and a token authenticates for an active one only.
        if application_status is not None and application_status.strip().lower() != OrganizationStatus.active.value:
            page = Page([], page.offset, page.limit, 0)
        return JobList.of(page, [Job.from_row(r) for r in page.records])


@strawberry.type
class JobMutation:
    @strawberry.mutation
    async def create_job(self, info: Info, input: Optional[CreateJob] = None) -> Optional[Job]:
        if input is None:
            raise InvalidInput("input is required")
        data = {
            "tasks": [{"engine_id": t.engine_id, "payload": t.payload, "payload_string": t.payload_string, "test_task": t.test_task}
                      for t in input.tasks or []],
            "name": input.target.name if input.target else None,
            "target_url": input.target.url if input.target else None,
            "cluster_id": input.cluster_id,
            "retries": input.retries,
            "display_name": input.display_name,
            "labels": input.labels,
        }
        return Job.from_row(await job_service.create(info.context.resources, info.context.principal, data))

    @strawberry.mutation
    async def cancel_job(self, info: Info, id: strawberry.ID) -> Optional[DeletePayload]:
        job = await job_service.cancel(info.context.resources, info.context.principal, id)
        return DeletePayload(id=strawberry.ID(str(job.id)), message=f"job {job.id} cancellation requested; status {job.status}")

    @strawberry.mutation
    async def retry_job(self, info: Info, id: strawberry.ID) -> Optional[Job]:
        return Job.from_row(await job_service.retry(info.context.resources, info.context.principal, id))

    @strawberry.mutation
    async def delete_job(self, info: Info, id: strawberry.ID) -> DeletePayload:
        deleted = await job_service.delete(info.context.resources, info.context.principal, id)
        return DeletePayload(id=strawberry.ID(str(deleted)), message=f"job {deleted} deleted")


@strawberry.type
class JobSubscription:
    @strawberry.subscription(description="The job's state now, then every change of it or its tasks.")
    async def job_updated(self, info: Info, id: strawberry.ID) -> AsyncGenerator[Job, None]:
        async for job in job_updates(info, id):
            yield Job.from_row(job)

    @strawberry.subscription(description="The job's tasks now, then each task whose status or progress changes.")
    async def task_updated(self, info: Info, job_id: strawberry.ID) -> AsyncGenerator[Task, None]:
        async for task in task_updates(info, job_id):
            yield Task.from_row(task)
