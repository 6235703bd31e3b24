"""Jobs: creation with the upstream validation rules, publish-to-train, cancel, retry, delete."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from gateway.errors import InvalidInput, NotAllowed, NotFound
from gateway.services import engine_backbones, labeling_jobs, promotion
from gateway.services.ids import parse_id, try_parse_ids
from gateway.services.labels import check_filter, check_labels
from gateway.services.paging import Page, check_page
from gateway.services.principal import Principal
from gateway.services.remote_files import FetchRefused, check_url_syntax
from storage.queries import engine_models as model_q
from storage.queries import engines as engine_q
from storage.queries import jobs as q
from storage.queries import labeling as labeling_q
from storage.queries import libraries as library_q
from storage.queries import trainings as training_q
from storage.rows import Engine, Job, Library, Task

MAX_TASKS_PER_JOB = 100
# Upstream's Webstream Adapter (storage/migrations/0014): its task's url is the media of the job's library-run tasks.
MEDIA_ADAPTER = "9e611ad7-2d3b-48f6-a51b-0a1ba40feab4"
MAX_RETRIES = 10
MAX_DISPLAY_NAME = 128  # Vertex's limit on a model's display name
FINISHED = ("complete", "failed", "cancelled")


async def _validate_task(conn: asyncpg.Connection, principal: Principal, engine: Engine, payload: dict[str, Any]) -> UUID | None:
    """Upstream's rules for library tasks; returns the library ID the task works on."""
    mode = payload.get("mode")
    if mode is None and ("libraryId" in payload or "libraryEngineModelId" in payload):
        mode = "library-run"  # upstream's library-enabled engine jobs send no mode
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


def _adapter_media(tasks: list[dict[str, Any]]) -> str | None:
    """The media url the job's adapter tasks carry (upstream's tutorial puts the media on a Webstream Adapter
    task and none on the library-run task); each adapter task must carry one, and all the same one."""
    urls = []
    for position, task in enumerate(tasks):
        if str(task.get("engine_id") or "") != MEDIA_ADAPTER:
            continue
        payload = task.get("payload")
        if payload is None and task.get("payload_string"):
            try:
                payload = json.loads(task["payload_string"])
            except ValueError as exc:
                raise InvalidInput(f"tasks[{position}].payloadString is not valid JSON: {exc}") from exc
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


def _validate_config(res: Any, engine: Engine, payload: dict[str, Any], position: int) -> None:
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


async def pin_models(res: Any, org_id: UUID, engine_id: str, payload: dict[str, Any]) -> UUID | None:
    """Check the registered models a task's ``config`` names and pin them in ``payload`` (``modelVersionId``,
    ``detectorVersionId``: what the worker uses, whatever alias moves later; never taken from the client).
    An unknown, unready or wrong-kind model is refused here, before anything is written. Returns the pinned
    embedding version's ID (the job's ``modelVersionId``), or None. createJob and REST trainings share it."""
    installed = res.engines.get(engine_id)
    pinned: UUID | None = None
    payload.pop("modelVersionId", None)
    if engine_backbones.takes_model(installed):
        version = await engine_backbones.check_config(res, org_id, payload.get("config"))
        if version is not None:
            pinned = version.id
            payload["modelVersionId"] = str(version.id)
    payload.pop("detectorVersionId", None)
    if engine_backbones.takes_detector(installed):
        detector = await engine_backbones.check_detector(res, org_id, payload.get("config"))
        if detector is not None:
            payload["detectorVersionId"] = str(detector.id)
    return pinned


async def create(res: Any, principal: Principal, data: dict[str, Any]) -> Job:
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
    data = {**data, "max_attempts": res.settings.max_attempts + retries, "actor": principal.actor,
            "test_tasks": [bool(t.get("test_task")) for t in tasks], "labels": check_labels(data.get("labels"))}
    media_url = _adapter_media(tasks)
    async with res.pool.acquire() as conn, conn.transaction():
        prepared = []
        library_ids = set()
        model_versions: set[UUID] = set()
        for position, task in enumerate(tasks):
            engine_id = task.get("engine_id")
            if not engine_id:
                raise InvalidInput(f"tasks[{position}].engineId is required")
            engine = await engine_q.by_id(conn, principal.org_id, str(engine_id))
            if engine is None:
                raise NotFound(data={"objectType": "engine", "id": str(engine_id)})
            if engine.id == labeling_jobs.ENGINE_ID:
                raise InvalidInput(f"engine {engine.id} runs the labeling mutations' jobs: use autoTag, findHardExamples or autoGroup")
            payload = task.get("payload")
            if payload is None and task.get("payload_string"):
                try:
                    payload = json.loads(task["payload_string"])
                except ValueError as exc:
                    raise InvalidInput(f"tasks[{position}].payloadString is not valid JSON: {exc}") from exc
            payload = payload or {}
            if not isinstance(payload, dict):
                raise InvalidInput(f"tasks[{position}].payload must be a JSON object")
            payload = dict(payload)
            if engine.id == MEDIA_ADAPTER and engine.builtin:
                prepared.append((engine, payload))  # checked by _adapter_media; nothing else to run
                continue
            if data.get("target_url") and "url" not in payload:
                payload["url"] = data["target_url"]  # upstream's target: the media a library-run task reads
            runs = payload.get("mode") == "library-run" or (payload.get("mode") is None and "libraryId" in payload)
            if media_url and runs and not (payload.get("url") or payload.get("urls")):
                payload["url"] = media_url  # upstream's tutorial: the adapter task before it carries the media
            _validate_config(res, engine, payload, position)
            version_id = await pin_models(res, principal.org_id, engine.id, payload)
            if version_id is not None:
                model_versions.add(version_id)
            library_id = await _validate_task(conn, principal, engine, payload)
            if library_id:
                library_ids.add(library_id)
            prepared.append((engine, payload))
        job = await _insert(
            conn, principal.org_id, prepared, data, next(iter(library_ids)) if len(library_ids) == 1 else None,
            next(iter(model_versions)) if len(model_versions) == 1 else None,
        )
        for engine, payload in prepared:
            if payload.get("mode") == "library-train":
                model_id = UUID(payload["libraryEngineModelId"])
                model = await model_q.set_fields(conn, principal.org_id, model_id, {"train_job_id": job.id, "train_status": "queued"})
                parent = await training_q.default_model(conn, principal.org_id, model.library_id, model.engine_id)
                if model.parent_model_id is None and parent is not None and parent.id != model.id:
                    # retrained from the model that answers today
                    await training_q.set_version_fields(conn, principal.org_id, model_id, {"parent_model_id": parent.id})
                if "autoPromote" in payload:
                    await training_q.set_version_fields(conn, principal.org_id, model_id, {"auto_promote": payload["autoPromote"]})
    return job


async def _insert(
    conn: asyncpg.Connection, org_id: UUID, prepared: list[tuple[Engine, dict[str, Any]]], data: dict[str, Any],
    library_id: UUID | None, model_version_id: UUID | None = None,
) -> Job:
    job = await q.insert_job(conn, id=uuid4(), org_id=org_id, name=data.get("name"), cluster_id=data.get("cluster_id"),
                             library_id=library_id, actor=data.get("actor"), model_version_id=model_version_id,
                             display_name=data.get("display_name"), labels=data.get("labels"))
    max_attempts = int(data["max_attempts"])
    test_tasks = data.get("test_tasks") or []
    for position, (engine, payload) in enumerate(prepared):
        await q.insert_task(
            conn, id=uuid4(), org_id=org_id, job_id=job.id, engine_id=engine.id, position=position,
            payload=payload, max_attempts=max_attempts,
            test_task=position < len(test_tasks) and bool(test_tasks[position]),
            done_output={"url": payload["url"]} if engine.id == MEDIA_ADAPTER and engine.builtin else None,
        )
    if any(engine.id == MEDIA_ADAPTER and engine.builtin for engine, _ in prepared):
        await q.refresh_job_status(conn, job.id)
    for engine_id in {e.id for e, _ in prepared}:
        await q.notify(conn, q.WAKE_CHANNEL, engine_id)
    await q.notify(conn, q.EVENT_CHANNEL, str(job.id))
    return job


async def publish_library(res: Any, principal: Principal, library_id: object) -> Library:
    """Add one to the version and, for every compatible engine, a new pending model and its train job."""
    principal.require_write()
    lid = parse_id(library_id)
    async with res.pool.acquire() as conn, conn.transaction():
        if await library_q.by_id(conn, principal.org_id, lid, for_update=True) is None:
            raise NotFound()
        library = await library_q.publish(conn, principal.org_id, lid, principal.actor)
        for engine in await engine_q.compatible(conn, principal.org_id, library.library_type_id):
            if await engine_backbones.missing_models(res, principal.org_id, res.engines.get(engine.id)):
                # An engine installed here that cannot train with what is registered (the face engine offline,
                # without face models) gets no job: it would only fail. The others (the gallery) still train,
                # and POST /v1/trainings passes it over the same way; a pull of the models brings it back.
                continue
            model = await model_q.insert(
                conn, id=uuid4(), org_id=principal.org_id, library_id=lid, engine_id=engine.id,
                library_version=library.version, train_status="pending",
            )
            parent = await training_q.default_model(conn, principal.org_id, lid, engine.id)
            if parent is not None:  # retrained from the model that answers today
                await training_q.set_version_fields(conn, principal.org_id, model.id, {"parent_model_id": parent.id})
            payload = {"mode": "library-train", "libraryId": str(lid), "libraryEngineModelId": str(model.id)}
            job = await _insert(
                conn, principal.org_id, [(engine, payload)],
                {"name": f"train {library.name} v{library.version}", "max_attempts": res.settings.max_attempts,
                 "actor": principal.actor}, lid,
            )
            await model_q.set_fields(conn, principal.org_id, model.id, {"train_job_id": job.id})
    return library


async def get(res: Any, principal: Principal, job_id: object) -> Job:
    jid = parse_id(job_id)
    async with res.pool.acquire() as conn:
        row = await q.job_by_id(conn, principal.org_id, jid)
    if row is None:
        raise NotFound()
    if principal.is_task and row.id != principal.job_id:
        raise NotFound()
    return row


async def get_task(res: Any, principal: Principal, task_id: object, *, finished_by_token: bool = False) -> Task:
    """``finished_by_token``: the caller just finished the task with its task token (now revoked)."""
    tid = parse_id(task_id)
    async with res.pool.acquire() as conn:
        row = await q.task_by_id(conn, principal.org_id, tid)
    if row is None or (principal.is_task and row.id != principal.task_id and not finished_by_token):
        raise NotFound()
    return row


async def results(res: Any, principal: Principal, job_id: object) -> list[Task]:
    """The outputs of a job's completed tasks (upstream's engineResults)."""
    job = await get(res, principal, job_id)
    async with res.pool.acquire() as conn:
        return [t for t in await q.tasks_of_job(conn, job.id) if t.status == "complete"]


async def list_page(
    res: Any,
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


async def cancel(res: Any, principal: Principal, job_id: object) -> Job:
    """Queued tasks never start; running ones are told to stop (their worker ends them `cancelled`)."""
    principal.require_write()
    jid = parse_id(job_id)
    async with res.pool.acquire() as conn, conn.transaction():
        job = await q.job_by_id(conn, principal.org_id, jid)
        if job is None:
            raise NotFound()
        tasks = await q.tasks_of_job(conn, jid)
        if all(t.status in FINISHED for t in tasks):
            # Vertex's cancel raises unless the job is running: a finished job is not a bad ID, it is the wrong state.
            raise NotAllowed(f"job {jid} has already finished ({job.status}) and cannot be cancelled")
        cancelled = await q.cancel_queued(conn, jid)
        for task in cancelled:
            await _model_after_task(conn, task, "failed", {"error": "the training job was cancelled"})
        for task_id in await q.request_cancel_running(conn, jid):
            await q.notify(conn, q.CANCEL_CHANNEL, str(task_id))
        await q.set_modified_by(conn, principal.org_id, jid, principal.actor)
        await q.refresh_job_status(conn, jid)
        return await q.job_by_id(conn, principal.org_id, jid)


async def retry(res: Any, principal: Principal, job_id: object) -> Job:
    principal.require_write()
    jid = parse_id(job_id)
    async with res.pool.acquire() as conn, conn.transaction():
        job = await q.job_by_id(conn, principal.org_id, jid)
        if job is None:
            raise NotFound()
        if job.status != "failed":
            raise NotAllowed(f"only failed jobs can be retried; job {jid} is {job.status}")
        for task in await q.retry_job(conn, jid):
            await _model_after_task(conn, task, "queued", None)
            await q.notify(conn, q.WAKE_CHANNEL, task.engine_id)
        await q.set_modified_by(conn, principal.org_id, jid, principal.actor)
        await q.refresh_job_status(conn, jid)
        return await q.job_by_id(conn, principal.org_id, jid)


async def delete(res: Any, principal: Principal, job_id: object) -> UUID:
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


async def _model_after_task(conn: asyncpg.Connection, task: Task, status: str, jsondata: dict[str, Any] | None) -> None:
    """Keep a library-train task's model in step with the task."""
    payload = task.payload or {}
    if payload.get("mode") != "library-train" or not payload.get("libraryEngineModelId"):
        return
    changes: dict[str, Any] = {"train_status": status}
    if jsondata is not None:
        changes["jsondata"] = jsondata
    try:
        await model_q.set_fields(conn, task.org_id, UUID(payload["libraryEngineModelId"]), changes)
    except ValueError:
        return


model_after_task = _model_after_task
# A job of already validated tasks, inside the caller's transaction (REST trainings build theirs here).
insert_prepared = _insert


async def model_after_task_if_unfinished(conn: asyncpg.Connection, task: Task, status: str) -> None:
    """A completed task whose engine did not set its model's final state itself: set it now."""
    payload = task.payload or {}
    if payload.get("mode") != "library-train" or not payload.get("libraryEngineModelId"):
        return
    model = await model_q.by_id(conn, task.org_id, UUID(payload["libraryEngineModelId"]))
    if model is not None and model.train_status not in ("complete", "failed"):
        # The default lock before the row's write (promotion.on_complete's order), then re-read.
        await training_q.lock_default(conn, model.library_id, model.engine_id)
        model = await model_q.by_id(conn, task.org_id, model.id, for_update=True)
        if model is None or model.train_status in ("complete", "failed"):
            return
        row = await model_q.set_fields(conn, task.org_id, model.id, {"train_status": status})
        if status == "complete":
            await library_q.mark_trained(conn, task.org_id, model.library_id, model.library_version)
            await promotion.on_complete(conn, row)
