"""Training jobs as their own resource: starting a training of a library with its default engine, starting a training with an output model's name and changelog, listing, reading and
removing trainings, and what a training shows."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID, uuid4

from gateway.errors import InvalidInput, NotAllowed, NotFound
from gateway.resources import Resources
from gateway.services.access.ids import parse_id
from gateway.services.access.job_labels import check_labels
from gateway.services.access.paging import Page, check_page
from gateway.services.access.principal import Principal
from gateway.services.models import backbones as engine_backbones
from gateway.services.queue import job_wait
from gateway.services.queue import jobs as job_service
from gateway.services.queue.enqueue import NewJob, NewTask, enqueue
from gateway.services.training import lifecycle
from gateway.services.training.defaults import default_engine
from gateway.services.training.versions import MAX_NAME, MAX_TEXT, check_text
from storage.queries import engine_models as model_q
from storage.queries import engines as engine_q
from storage.queries import libraries as library_q
from storage.queries import trainings as q
from storage.rows import EngineModel, Job, Library

FINISHED = ("complete", "failed", "cancelled")
# How long DELETE of a running training waits for its worker to stop it (the worker hears of it by NOTIFY).
CANCEL_WAIT_SECONDS = 10

# A training's snake_case face parameters -> the option names of engines that declare them.
FACE_CONFIG_KEYS = {"min_face_size": "minFaceSize", "sharpness_threshold": "sharpnessThreshold"}


def engine_config(engine: Any, config: Any) -> dict[str, Any]:
    """A training's ``config`` for ``engine``: the snake_case face keys mapped to the engine's own option names (and passed
    only when the engine declares that option), the engine's own options as they are; checked by the engine."""
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise InvalidInput("config must be a JSON object")
    from engines.interface import EngineConfigError

    declared = {option.name: option for option in engine.info.config}
    out: dict[str, Any] = {}
    try:
        for key, value in config.items():
            if key in FACE_CONFIG_KEYS:
                option = declared.get(FACE_CONFIG_KEYS[key])
                if option is not None:
                    # Checked under the name the caller sent, so that an error names min_face_size, not minFaceSize.
                    replace(option, name=key).coerce(value)
                    out[option.name] = value
                continue  # a face parameter for an engine without face detection: nothing to apply it to
            out[key] = value
        engine.info.validate_config(out)
    except EngineConfigError as exc:
        raise InvalidInput(f"config: {exc}") from exc
    return out


async def start(res: Resources, principal: Principal, body: dict[str, Any]) -> Job:
    """Train ``source_dataset_id`` (a library) with its default engine on its current version."""
    principal.require_write()
    if not body.get("source_dataset_id"):
        raise InvalidInput("source_dataset_id is required")
    if not isinstance(body["source_dataset_id"], str):
        raise InvalidInput("source_dataset_id must be a string")
    library_id = parse_id(body["source_dataset_id"])
    principal.check_library(library_id)
    name = check_text(body.get("output_model_name"), "output_model_name", MAX_NAME)
    description = check_text(body.get("output_model_description"), "output_model_description", MAX_TEXT)
    changelog = check_text(body.get("output_model_changelog"), "output_model_changelog", MAX_TEXT)
    labels = check_labels(body.get("labels"))
    auto_promote = body.get("auto_promote", False)
    if not isinstance(auto_promote, bool):
        raise InvalidInput("auto_promote must be true or false")
    async with res.pool.acquire() as conn, conn.transaction():
        library = await library_q.by_id(conn, principal.org_id, library_id)
        if library is None:
            raise NotFound(data={"objectType": "dataset"})
        chosen = await default_engine(res, conn, principal.org_id, library)
        engine = chosen.engine
        config = engine_config(engine, body.get("config"))
        engine_row = await engine_q.by_id(conn, principal.org_id, engine.info.id)
        if engine_row is None:
            raise InvalidInput(f"engine {engine.info.id} is not registered")
        payload: dict[str, Any] = {"mode": "library-train", "libraryId": str(library.id), "config": config,
                                   "trainingType": chosen.identifier_type_id}
        # createJob's model checks and pinning, before anything is written: an unknown modelId is not_found.
        version_id = await engine_backbones.pin_models(res, principal.org_id, engine.info.id, payload)
        model = await model_q.insert(
            conn, id=uuid4(), org_id=principal.org_id, library_id=library.id, engine_id=engine.info.id,
            library_version=library.version, train_status="queued",
        )
        parent = await q.default_model(conn, principal.org_id, library.id, engine.info.id)
        model = await q.set_version_fields(conn, principal.org_id, model.id, {
            "name": name, "description": description, "changelog": changelog, "labels": labels,
            "parent_model_id": parent.id if parent else None, "auto_promote": auto_promote,
        })
        payload["libraryEngineModelId"] = str(model.id)
        job = await enqueue(conn, NewJob(
            org_id=principal.org_id, name=f"train {library.name} v{library.version}", actor=principal.actor,
            max_attempts=res.settings.max_attempts, library_id=library.id, model_version_id=version_id,
            display_name=name, labels=labels,
        ), [NewTask(engine_row.id, payload)])
        await model_q.set_fields(conn, principal.org_id, model.id, {"train_job_id": job.id})
    return job


@dataclass(frozen=True, slots=True)
class PublishedTraining:
    """What publishing did for one compatible engine: started its training, or passed it over and why."""

    engine_id: str
    model_id: UUID | None  # the new pending model, when started
    reason: str | None  # why it was not started


async def publish_library(res: Resources, principal: Principal, library_id: object) -> tuple[Library, list[PublishedTraining]]:
    """Add one to the version and, for every compatible engine that can train on what the library holds, a new
    pending model and its train job; the engines passed over are returned with the reason.

    An engine is passed over when the library holds no identifier of a type it trains on (a speaker engine on
    a library of photos would only end ``failed``), or when the models it requires are not registered (the
    face engine offline, without face models; POST /v1/trainings passes it over the same way, and a pull of
    the models brings it back)."""
    principal.require_write()
    lid = parse_id(library_id)
    outcome: list[PublishedTraining] = []
    async with res.pool.acquire() as conn, conn.transaction():
        if await library_q.by_id(conn, principal.org_id, lid, for_update=True) is None:
            raise NotFound()
        library = await library_q.publish(conn, principal.org_id, lid, principal.actor)
        held = await library_q.identifier_types_held(conn, principal.org_id, lid)
        for engine in await engine_q.compatible(conn, principal.org_id, library.library_type_id):
            if not held.intersection(engine.identifier_type_ids):
                outcome.append(PublishedTraining(engine.id, None, (
                    f"the library holds no {' or '.join(engine.identifier_type_ids)} identifiers, which this engine "
                    f"trains on (it holds: {', '.join(sorted(held)) or 'none'})")))
                continue
            missing = await engine_backbones.missing_models(res, principal.org_id, res.engines.get(engine.id))
            if missing:
                outcome.append(PublishedTraining(engine.id, None, (
                    f"models it requires are not registered: {', '.join(missing)} (engineshed models pull fetches them)")))
                continue
            model = await model_q.insert(
                conn, id=uuid4(), org_id=principal.org_id, library_id=lid, engine_id=engine.id,
                library_version=library.version, train_status="pending",
            )
            payload = {"mode": "library-train", "libraryId": str(lid), "libraryEngineModelId": str(model.id)}
            job = await enqueue(conn, NewJob(
                org_id=principal.org_id, name=f"train {library.name} v{library.version}", actor=principal.actor,
                max_attempts=res.settings.max_attempts, library_id=lid,
            ), [NewTask(engine.id, payload)])
            await lifecycle.attach_train_job(conn, principal.org_id, model.id, job.id, status="pending")
            outcome.append(PublishedTraining(engine.id, model.id, None))
    return library, outcome


async def page(res: Resources, principal: Principal, offset: int | None, limit: int | None) -> Page[Job]:
    """The organization's training jobs, newest first."""
    principal.require_read()
    offset, limit = check_page(offset, limit, res.settings.max_page_size)
    if principal.is_task:
        return Page([], offset, limit, 0)
    async with res.pool.acquire() as conn:
        rows, total = await q.training_jobs(conn, principal.org_id, offset, limit)
    return Page(rows, offset, limit, total)


async def get_training(res: Resources, principal: Principal, job_id: object) -> tuple[Job, EngineModel]:
    """A training job and the model it produces; a job that trains nothing is not_found here."""
    job = await job_service.get(res, principal, job_id)
    async with res.pool.acquire() as conn:
        model = (await q.models_by_train_jobs(conn, principal.org_id, [job.id])).get(job.id)
    if model is None:
        raise NotFound()
    return job, model


async def remove(res: Resources, principal: Principal, job_id: object) -> str:
    """DELETE /v1/trainings/{id}: cancels a training that has not finished, deletes a finished one.

    ``deleted``; ``cancelled`` once the training has ended; or ``cancelling`` when its worker has not stopped it
    within CANCEL_WAIT_SECONDS. A waiting training is cancelled at once; a running one only when its worker
    hears of it (within a second or so), so the reply waits for that rather than show the training running.
    """
    principal.require_write()
    job, _model = await get_training(res, principal, job_id)
    if job.status in FINISHED:
        await job_service.delete(res, principal, job.id)
        return "deleted"
    try:
        job = await job_service.cancel(res, principal, job.id)
    except NotAllowed:  # it finished in between: delete it as a finished one
        await job_service.delete(res, principal, job.id)
        return "deleted"
    if job.status not in FINISHED:
        job = await job_wait.wait(res, principal, job.id, CANCEL_WAIT_SECONDS)
    return "cancelled" if job.status in FINISHED else "cancelling"
