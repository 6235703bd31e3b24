"""Training jobs as their own resource (seed 001's Training, Vertex's training job): the library's default
engine and default model, starting a training with an output model's name and changelog, listing, reading and
removing trainings, and what a training shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from gateway.errors import InvalidInput, NotAllowed, NotFound
from gateway.services import engine_backbones
from gateway.services import jobs as job_service
from gateway.services.ids import parse_id
from gateway.services.labels import check_labels
from gateway.services.library_insights import PREVIEW_COUNT, LibraryInsight, insights
from gateway.services.model_versions import MAX_NAME, MAX_TEXT, check_text
from gateway.services.paging import Page, check_page
from gateway.services.principal import Principal
from storage.queries import engine_models as model_q
from storage.queries import engines as engine_q
from storage.queries import libraries as library_q
from storage.queries import trainings as q
from storage.queries import types as type_q
from storage.rows import EngineModel, Job, Library

FINISHED = ("complete", "failed", "cancelled")

# Seed 001's face training parameters -> the option names of engines that declare them.
SEED_CONFIG_KEYS = {"min_face_size": "minFaceSize", "sharpness_threshold": "sharpnessThreshold"}


@dataclass(frozen=True, slots=True)
class DefaultEngine:
    engine: Any  # the installed engine (engines.interface.Engine)
    identifier_type_id: str  # the library's identifier type it was chosen for (the training's `type`)


async def default_engine(res: Any, conn: asyncpg.Connection, org_id: UUID, library: Library) -> DefaultEngine:
    """The engine that declares itself default (``EngineInfo.default_for``) for the first of the library
    type's identifier types that has one; invalid_input when none is installed.

    An engine whose required registered models are missing (``EngineInfo.requires_models``: the face engine
    on an install that pulled no face models) is passed over for the next claim (the gallery), so an offline
    install still trains people libraries instead of accepting a training that fails in the worker."""
    library_type = await type_q.library_type_by_id(conn, library.library_type_id)
    compatible = {e.id for e in await engine_q.compatible(conn, org_id, library.library_type_id)}
    type_ids = list(library_type.identifier_type_ids) if library_type else []
    unusable: list[str] = []
    for type_id in type_ids:
        claims = sorted(
            ((engine.info.default_for.index(type_id), engine.info.id, engine)
             for engine_id, engine in res.engines.items()
             if engine_id in compatible and type_id in getattr(engine.info, "default_for", ())),
            key=lambda c: (c[0], c[1]),
        )
        for _rank, engine_id, engine in claims:
            missing = await engine_backbones.missing_models(res, org_id, engine)
            if not missing:
                return DefaultEngine(engine, type_id)
            unusable.append(f"{engine_id} (no registered {', '.join(missing)} model)")
    raise InvalidInput(
        f"no installed engine is the default for library type {library.library_type_id} "
        f"(identifier types {', '.join(type_ids) or 'none'})"
        + (f"; passed over: {'; '.join(unusable)}" if unusable else "")
    )


async def default_engine_ids(res: Any, org_id: UUID, library_ids: list[UUID]) -> dict[UUID, str]:
    """Each library's default engine ID (libraries without one are left out): what a library's "last training"
    is taken from (storage.queries.trainings.last_trainings' ``default_engines``)."""
    out: dict[UUID, str] = {}
    by_type: dict[str, str | None] = {}  # the default engine depends on the library's type only
    async with res.pool.acquire() as conn:
        for library in await library_q.by_ids(conn, org_id, library_ids):
            if library.library_type_id not in by_type:
                try:
                    by_type[library.library_type_id] = (await default_engine(res, conn, org_id, library)).engine.info.id
                except InvalidInput:
                    by_type[library.library_type_id] = None
            if by_type[library.library_type_id] is not None:
                out[library.id] = by_type[library.library_type_id]
    return out


def engine_config(engine: Any, config: Any) -> dict[str, Any]:
    """Seed 001's ``config`` for ``engine``: seed keys mapped to the engine's own option names (and passed
    only when the engine declares that option), the engine's own options as they are; checked by the engine."""
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise InvalidInput("config must be a JSON object")
    declared = {option.name for option in engine.info.config}
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key in SEED_CONFIG_KEYS:
            if SEED_CONFIG_KEYS[key] in declared:
                out[SEED_CONFIG_KEYS[key]] = value
            continue  # a face parameter for an engine without face detection: nothing to apply it to
        out[key] = value
    from engines.interface import EngineConfigError

    try:
        engine.info.validate_config(out)
    except EngineConfigError as exc:
        raise InvalidInput(f"config: {exc}") from exc
    return out


async def start(res: Any, principal: Principal, body: dict[str, Any]) -> Job:
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
        version_id = await job_service.pin_models(res, principal.org_id, engine.info.id, payload)
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
        job = await job_service.insert_prepared(
            conn, principal.org_id, [(engine_row, payload)],
            {"name": f"train {library.name} v{library.version}", "display_name": name, "labels": labels,
             "max_attempts": res.settings.max_attempts, "actor": principal.actor},
            library.id, version_id,
        )
        await model_q.set_fields(conn, principal.org_id, model.id, {"train_job_id": job.id})
    return job


async def page(res: Any, principal: Principal, offset: int | None, limit: int | None) -> Page[Job]:
    """The organization's training jobs, newest first."""
    principal.require_read()
    offset, limit = check_page(offset, limit, res.settings.max_page_size)
    if principal.is_task:
        return Page([], offset, limit, 0)
    async with res.pool.acquire() as conn:
        rows, total = await q.training_jobs(conn, principal.org_id, offset, limit)
    return Page(rows, offset, limit, total)


async def get_training(res: Any, principal: Principal, job_id: object) -> tuple[Job, EngineModel]:
    """A training job and the model it produces; a job that trains nothing is not_found here."""
    job = await job_service.get(res, principal, job_id)
    async with res.pool.acquire() as conn:
        model = (await q.models_by_train_jobs(conn, principal.org_id, [job.id])).get(job.id)
    if model is None:
        raise NotFound()
    return job, model


async def remove(res: Any, principal: Principal, job_id: object) -> str:
    """DELETE /v1/trainings/{id}: cancels a training that has not finished, deletes a finished one."""
    principal.require_write()
    job, _model = await get_training(res, principal, job_id)
    if job.status in FINISHED:
        await job_service.delete(res, principal, job.id)
        return "deleted"
    try:
        await job_service.cancel(res, principal, job.id)
    except NotAllowed:  # it finished in between: delete it as a finished one
        await job_service.delete(res, principal, job.id)
        return "deleted"
    return "cancelled"


async def default_model_of(res: Any, principal: Principal, library_id: object, engine_id: object | None) -> EngineModel:
    """The default model of a library for ``engine_id``; without one, the default model of the library's
    default engine, else the newest default model of any engine (a library trained only by the gallery while
    the face engine could not run still answers)."""
    lid = parse_id(library_id)
    principal.check_library(lid)
    async with res.pool.acquire() as conn:
        library = await library_q.by_id(conn, principal.org_id, lid)
        if library is None:
            raise NotFound()
        if engine_id is not None:
            model = await q.default_model(conn, principal.org_id, lid, str(engine_id))
            if model is None:
                raise InvalidInput(f"library {lid} has no default model for engine {engine_id}: train it first")
            return model
        try:
            engine: str | None = (await default_engine(res, conn, principal.org_id, library)).engine.info.id
        except InvalidInput:
            engine = None
        model = await q.default_model(conn, principal.org_id, lid, engine) if engine is not None else None
        if model is None:
            model = await q.newest_default_model(conn, principal.org_id, lid)
    if model is None:
        raise InvalidInput(f"library {lid} has no default model: train it first")
    return model


@dataclass(slots=True)
class TrainingView:
    """What seed 001's Training shows, gathered for several trainings in a few queries."""

    job: Job
    model: EngineModel
    library: Library | None
    summary: Any  # JOB_SUMMARIES record or None
    insight: LibraryInsight
    preview_urls: list[str]
    engine_type: str | None = None  # the first identifier type the training's engine reads (external engines too)


async def views(res: Any, principal: Principal, jobs: list[Job]) -> list[TrainingView]:
    from gateway.services.identifiers import url_for
    from storage.rows import Identifier

    if not jobs:
        return []
    job_ids = [j.id for j in jobs]
    async with res.pool.acquire() as conn:
        models = await q.models_by_train_jobs(conn, principal.org_id, job_ids)
        summaries = await q.job_summaries(conn, principal.org_id, job_ids)
        library_ids = list({m.library_id for m in models.values()})
        libraries = {lib.id: lib for lib in await library_q.by_ids(conn, principal.org_id, library_ids)}
        previews: dict[UUID, list[Any]] = {lid: [] for lid in library_ids}
        for record in await q.preview_identifiers(conn, principal.org_id, library_ids, PREVIEW_COUNT):
            previews[record["library_id"]].append(Identifier.of(record))
        engine_ids = sorted({m.engine_id for m in models.values()})
        engine_types = {e.id: (e.identifier_type_ids or [None])[0] for e in await engine_q.by_ids(conn, principal.org_id, engine_ids)}
    found = await insights(res, principal, library_ids, near_duplicates=True) if library_ids else {}
    out = []
    for job in jobs:
        model = models.get(job.id)
        if model is None:
            continue
        urls = [await url_for(res, row) for row in previews.get(model.library_id, [])]
        out.append(TrainingView(job, model, libraries.get(model.library_id), summaries.get(job.id),
                                found.get(model.library_id, LibraryInsight()), urls, engine_types.get(model.engine_id)))
    return out
