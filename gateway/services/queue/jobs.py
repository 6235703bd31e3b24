"""Jobs: creation with the validation rules of library tasks, reading, listing, cancel, retry, delete."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from gateway.errors import InvalidInput, NotAllowed, NotFound
from gateway.resources import Resources
from gateway.services.access.ids import parse_id, try_parse_ids
from gateway.services.access.job_labels import check_filter, check_labels
from gateway.services.access.paging import Page, check_page
from gateway.services.access.principal import Principal
from gateway.services.ingest.remote_files import FetchRefused, check_url_syntax
from gateway.services.models import backbones as engine_backbones
from gateway.services.queue import builtin
from gateway.services.queue.builtin import MEDIA_ADAPTER
from gateway.services.queue.enqueue import NewJob, NewTask, enqueue
from gateway.services.training import lifecycle
from storage.queries import engine_models as model_q
from storage.queries import engines as engine_q
from storage.queries import jobs as q
from storage.queries import labeling as labeling_q
from storage.queries import libraries as library_q
from storage.rows import Engine, Job, Task

MAX_TASKS_PER_JOB = 100
MAX_RETRIES = 10
MAX_DISPLAY_NAME = 128  # a model's display name, as in other model registries
FINISHED = ("complete", "failed", "cancelled")


async def _validate_task(conn: asyncpg.Connection, principal: Principal, engine: Engine, payload: dict[str, Any]) -> UUID | None:
    """The rules of library tasks (a mode the engine supports, its library and model); returns the library ID
    the task works on."""
    mode = payload.get("mode")
    if mode is None and ("libraryId" in payload or "libraryEngineModelId" in payload):
        mode = "library-run"  # a task naming a library or model but no mode runs the library's model
        payload["mode"] = mode
    if mode is None:
        raise InvalidInput("payload.mode is required (library-train or library-run)")
    if mode not in engine.modes:
        if mode == "library-train" and not engine.library_required:
            raise InvalidInput(f"engine {engine.id} does not use libraries and cannot take mode library-train")
        raise InvalidInput(f"engine {engine.id} does not support mode {mode!r}")
    if not engine.library_required:
        return None
    if not payload.get("libraryId"):
        raise InvalidInput("libraryId is required")
    library_id = parse_id(payload["libraryId"])
    principal.check_library(library_id)
    library = await library_q.by_id(conn, principal.org_id, library_id)
    if library is None:
        raise NotFound(data={"objectType": "library"})
    model_id = payload.get("libraryEngineModelId")
    if "autoPromote" in payload and not isinstance(payload["autoPromote"], bool):
        raise InvalidInput("payload.autoPromote must be true or false")
    if mode == "library-train" and not model_id:
        raise InvalidInput("libraryEngineModelId is required")
    if model_id:
        model = await model_q.by_id(conn, principal.org_id, parse_id(model_id))
        if model is None:
            raise NotFound(data={"objectType": "libraryEngineModel"})
        if model.engine_id != engine.id:
            raise InvalidInput(f"libraryEngineModelId {model.id} does not belong to engine {engine.id}")
        if model.library_id != library.id:
            raise InvalidInput(f"libraryEngineModelId {model.id} does not belong to library {library.id}")
    elif mode == "library-run":
        newest = await model_q.newest_complete(conn, principal.org_id, library.id, engine.id)
        if newest is None:
            raise InvalidInput(f"engine has not been trained: no complete model of engine {engine.id} for this library")
        payload["libraryEngineModelId"] = str(newest.id)
    if mode == "library-run" and not (payload.get("url") or payload.get("urls")):
        raise InvalidInput("a library-run task needs the media: payload.url or payload.urls")
    return library.id


def _payload(task: dict[str, Any], position: int) -> Any:
    """A task's payload, given as an object or as a JSON string."""
    payload = task.get("payload")
    if payload is None and task.get("payload_string"):
        try:
            payload = json.loads(task["payload_string"])
        except ValueError as exc:
            raise InvalidInput(f"tasks[{position}].payloadString is not valid JSON: {exc}") from exc
    return payload


def _adapter_media(tasks: list[dict[str, Any]]) -> str | None:
    """The media url the job's media adapter tasks carry (a job may put its media on an adapter task and none on
    its library-run tasks); each adapter task must carry one, and all the same one."""
    urls = []
    for position, task in enumerate(tasks):
        if str(task.get("engine_id") or "") != MEDIA_ADAPTER:
            continue
        payload = _payload(task, position)
        url = payload.get("url") if isinstance(payload, dict) else None
        if not isinstance(url, str) or not url.strip():
            raise InvalidInput(f"tasks[{position}]: the Webstream Adapter needs payload.url, the media to read")
        try:
            check_url_syntax(url)
        except FetchRefused as exc:
            raise InvalidInput(f"tasks[{position}].payload.url: {exc}") from exc
        urls.append(url)
    if len(set(urls)) > 1:
        raise InvalidInput("the job's Webstream Adapter tasks name different media; give one url per job")
    return urls[0] if urls else None


def _validate_config(res: Resources, engine: Engine, payload: dict[str, Any], position: int) -> None:
    """Engines installed here describe their config: refuse a bad one now rather than fail the task later."""
    installed = res.engines.get(engine.id)
    config = payload.get("config")
    if config is not None and not isinstance(config, dict):
        raise InvalidInput(f"tasks[{position}].payload.config must be a JSON object")
    if installed is None or config is None:
        return
    from engines.interface import EngineConfigError

    try:
        installed.info.validate_config(config)
    except EngineConfigError as exc:
        raise InvalidInput(f"tasks[{position}].payload.config: {exc}") from exc


async def create(res: Resources, principal: Principal, data: dict[str, Any]) -> Job:
    principal.require_write()
    tasks = data.get("tasks") or []
    if not tasks:
        raise InvalidInput("a job needs at least one task")
    if len(tasks) > MAX_TASKS_PER_JOB:
        raise InvalidInput(f"a job may have at most {MAX_TASKS_PER_JOB} tasks")
    retries = data.get("retries") or 0
    if not 0 <= retries <= MAX_RETRIES:
        raise InvalidInput(f"retries must be between 0 and {MAX_RETRIES}")
    display_name = data.get("display_name")
    if display_name is not None and len(display_name) > MAX_DISPLAY_NAME:
        raise InvalidInput(f"displayName may be at most {MAX_DISPLAY_NAME} characters")
    max_attempts = res.settings.max_attempts + retries
    labels = check_labels(data.get("labels"))
    media_url = _adapter_media(tasks)
    async with res.pool.acquire() as conn, conn.transaction():
        prepared: list[NewTask] = []
        library_ids = set()
        model_versions: set[UUID] = set()
        for position, task in enumerate(tasks):
            engine_id = task.get("engine_id")
            if not engine_id:
                raise InvalidInput(f"tasks[{position}].engineId is required")
            engine = await engine_q.by_id(conn, principal.org_id, str(engine_id))
            if engine is None:
                raise NotFound(data={"objectType": "engine", "id": str(engine_id)})
            if engine.id == builtin.LABELING:
                raise InvalidInput(f"engine {engine.id} runs the labeling mutations' jobs: use autoTag, findHardExamples or autoGroup")
            payload = _payload(task, position) or {}
            if not isinstance(payload, dict):
                raise InvalidInput(f"tasks[{position}].payload must be a JSON object")
            payload = dict(payload)
            test_task = bool(task.get("test_task"))
            if engine.id == MEDIA_ADAPTER and engine.builtin:
                # checked by _adapter_media; nothing to run: recorded complete with the media it hands on
                prepared.append(NewTask(engine.id, payload, test_task, completed_output={"url": payload["url"]}))
                continue
            if data.get("target_url") and "url" not in payload:
                payload["url"] = data["target_url"]  # the job's target: the media a library-run task reads
            runs = payload.get("mode") == "library-run" or (payload.get("mode") is None and "libraryId" in payload)
            if media_url and runs and not (payload.get("url") or payload.get("urls")):
                payload["url"] = media_url  # the media adapter task of the job carries the media
            _validate_config(res, engine, payload, position)
            version_id = await engine_backbones.pin_models(res, principal.org_id, engine.id, payload)
            if version_id is not None:
                model_versions.add(version_id)
            library_id = await _validate_task(conn, principal, engine, payload)
            if library_id:
                library_ids.add(library_id)
            prepared.append(NewTask(engine.id, payload, test_task))
        job = await enqueue(conn, NewJob(
            org_id=principal.org_id, name=data.get("name"), actor=principal.actor, max_attempts=max_attempts,
            library_id=next(iter(library_ids)) if len(library_ids) == 1 else None,
            model_version_id=next(iter(model_versions)) if len(model_versions) == 1 else None,
            cluster_id=data.get("cluster_id"), display_name=display_name, labels=labels,
        ), prepared)
        for task in prepared:
            if task.payload.get("mode") == "library-train":
                await lifecycle.attach_train_job(conn, principal.org_id, UUID(task.payload["libraryEngineModelId"]), job.id,
                                                 status="queued", auto_promote=task.payload.get("autoPromote"))
    return job


async def get(res: Resources, principal: Principal, job_id: object) -> Job:
    jid = parse_id(job_id)
    async with res.pool.acquire() as conn:
        row = await q.job_by_id(conn, principal.org_id, jid)
    if row is None:
        raise NotFound()
    if principal.is_task and row.id != principal.job_id:
        raise NotFound()
    return row


async def get_task(res: Resources, principal: Principal, task_id: object, *, finished_by_token: bool = False) -> Task:
    """``finished_by_token``: the caller just finished the task with its task token (now revoked)."""
    tid = parse_id(task_id)
    async with res.pool.acquire() as conn:
        row = await q.task_by_id(conn, principal.org_id, tid)
    if row is None or (principal.is_task and row.id != principal.task_id and not finished_by_token):
        raise NotFound()
    return row


async def results(res: Resources, principal: Principal, job_id: object) -> list[Task]:
    """The outputs of a job's completed tasks (engineResults)."""
    job = await get(res, principal, job_id)
    async with res.pool.acquire() as conn:
        return [t for t in await q.tasks_of_job(conn, job.id) if t.status == "complete"]


async def list_page(
    res: Resources,
    principal: Principal,
    *,
    job_id: object | None,
    statuses: list[str] | None,
    engine_ids: list[str] | None,
    library_id: object | None,
    cluster_id: str | None,
    filter_field: str,
    from_time: datetime | None,
    to_time: datetime | None,
    order_field: str,
    descending: bool,
    offset: int | None,
    limit: int | None,
    application_ids: list[object] | None = None,
    scheduled: bool | None = None,
    scheduled_job_ids: list[object] | None = None,
    labels: object | None = None,
) -> Page[Job]:
    """application_ids: each organization is its own application, so any other matches nothing; no job
    here belongs to a scheduled job, so asking for those matches nothing."""
    offset, limit = check_page(offset, limit, res.settings.max_page_size)
    label_filter = check_filter(labels)
    if principal.is_task:
        raise NotAllowed("a task token may not list jobs")
    if application_ids is not None and principal.org_id not in try_parse_ids(a for a in application_ids if a is not None):
        return Page([], offset, limit, 0)
    if scheduled or scheduled_job_ids is not None:
        return Page([], offset, limit, 0)
    jid = None
    if job_id is not None:
        parsed = try_parse_ids([job_id])
        jid = parsed[0] if parsed else UUID(int=0)
    lid = None
    if library_id is not None:
        parsed = try_parse_ids([library_id])
        lid = parsed[0] if parsed else UUID(int=0)
    async with res.pool.acquire() as conn:
        rows, total = await q.page_jobs(
            conn, principal.org_id, job_id=jid, statuses=statuses, engine_ids=engine_ids, library_id=lid,
            cluster_id=cluster_id, filter_field=filter_field, from_time=from_time, to_time=to_time,
            order_field=order_field, descending=descending, offset=offset, limit=limit, labels=label_filter,
        )
    return Page(rows, offset, limit, total)


async def _change(
    res: Resources, principal: Principal, job_id: object, act: Callable[[asyncpg.Connection, Job], Awaitable[None]],
) -> Job:
    """A state change of one of the organization's jobs, in one transaction: ``act`` checks the state and moves
    the tasks; the job then records who changed it and takes its status from its tasks."""
    principal.require_write()
    jid = parse_id(job_id)
    async with res.pool.acquire() as conn, conn.transaction():
        job = await q.job_by_id(conn, principal.org_id, jid)
        if job is None:
            raise NotFound()
        await act(conn, job)
        await q.set_modified_by(conn, principal.org_id, jid, principal.actor)
        await q.refresh_job_status(conn, jid)
        return await q.job_by_id(conn, principal.org_id, jid)


async def cancel(res: Resources, principal: Principal, job_id: object) -> Job:
    """Queued tasks never start; running ones are told to stop (their worker ends them `cancelled`)."""

    async def act(conn: asyncpg.Connection, job: Job) -> None:
        if all(t.status in FINISHED for t in await q.tasks_of_job(conn, job.id)):
            # A finished job is not a bad ID, it is the wrong state for a cancel.
            raise NotAllowed(f"job {job.id} has already finished ({job.status}) and cannot be cancelled")
        for task in await q.cancel_queued(conn, job.id):
            await lifecycle.model_after_task(conn, task, "failed", {"error": "the training job was cancelled"})
        for task_id in await q.request_cancel_running(conn, job.id):
            await q.notify(conn, q.CANCEL_CHANNEL, str(task_id))

    return await _change(res, principal, job_id, act)


async def retry(res: Resources, principal: Principal, job_id: object) -> Job:
    """A failed job's failed and cancelled tasks queue again, their attempts reset."""

    async def act(conn: asyncpg.Connection, job: Job) -> None:
        if job.status != "failed":
            raise NotAllowed(f"only failed jobs can be retried; job {job.id} is {job.status}")
        for task in await q.retry_job(conn, job.id):
            await lifecycle.model_after_task(conn, task, "queued", None)
            await q.notify(conn, q.WAKE_CHANNEL, task.engine_id)

    return await _change(res, principal, job_id, act)


async def delete(res: Resources, principal: Principal, job_id: object) -> UUID:
    principal.require_write()
    jid = parse_id(job_id)
    async with res.pool.acquire() as conn, conn.transaction():
        job = await q.job_by_id(conn, principal.org_id, jid)
        if job is None:
            raise NotFound()
        tasks = await q.tasks_of_job(conn, jid)
        if any(t.status not in FINISHED for t in tasks):
            raise NotAllowed(f"job {jid} is {job.status}; only finished jobs can be deleted (cancel it first)")
        await labeling_q.lock_of_job(conn, principal.org_id, jid)  # identifiers before suggestions, as accepting does
        await q.delete_job(conn, principal.org_id, jid)
    return jid
