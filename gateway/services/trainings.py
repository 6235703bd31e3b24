"""Training jobs as their own resource (seed 001's Training, Vertex's training job): the library's default
engine, starting a training with an output model's name and changelog, waiting for a job, what a job's tasks
say about it, model version fields, and a library's counts and issues."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from gateway.errors import InvalidInput, NotAllowed, NotFound
from gateway.services import jobs as job_service
from gateway.services.ids import parse_id
from gateway.services.labels import check_labels
from gateway.services.paging import Page, check_page
from gateway.services.principal import Principal
from storage.queries import engine_models as model_q
from storage.queries import engines as engine_q
from storage.queries import libraries as library_q
from storage.queries import trainings as q
from storage.queries import types as type_q
from storage.rows import EngineModel, Job, Library

MAX_WAIT_SECONDS = 60
WAIT_RECHECK_SECONDS = 5.0  # re-read now and then, in case a notification was missed (LISTEN reconnecting)
MAX_TEXT = 10_000  # description / changelog
MAX_NAME = 128
MAX_ISSUE_REASONS = 200
PREVIEW_COUNT = 5
FINISHED = ("complete", "failed", "cancelled")

# Seed 001's face training parameters -> the option names of engines that declare them.
SEED_CONFIG_KEYS = {"min_face_size": "minFaceSize", "sharpness_threshold": "sharpnessThreshold"}


@dataclass(frozen=True, slots=True)
class DefaultEngine:
    engine: Any  # the installed engine (engines.interface.Engine)
    identifier_type_id: str  # the library's identifier type it was chosen for (the training's `type`)


async def default_engine(res: Any, conn: asyncpg.Connection, org_id: UUID, library: Library) -> DefaultEngine:
    """The engine that declares itself default (``EngineInfo.default_for``) for the first of the library
    type's identifier types that has one; invalid_input when none is installed."""
    library_type = await type_q.library_type_by_id(conn, library.library_type_id)
    compatible = {e.id for e in await engine_q.compatible(conn, org_id, library.library_type_id)}
    type_ids = list(library_type.identifier_type_ids) if library_type else []
    for type_id in type_ids:
        claims = [
            (engine.info.default_for.index(type_id), engine.info.id, engine)
            for engine_id, engine in res.engines.items()
            if engine_id in compatible and type_id in getattr(engine.info, "default_for", ())
        ]
        if claims:
            return DefaultEngine(min(claims, key=lambda c: (c[0], c[1]))[2], type_id)
    raise InvalidInput(
        f"no installed engine is the default for library type {library.library_type_id} "
        f"(identifier types {', '.join(type_ids) or 'none'})"
    )


def _text(value: Any, name: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string")
    if len(value) > limit:
        raise InvalidInput(f"{name} may be at most {limit} characters")
    return value


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
    name = _text(body.get("output_model_name"), "output_model_name", MAX_NAME)
    description = _text(body.get("output_model_description"), "output_model_description", MAX_TEXT)
    changelog = _text(body.get("output_model_changelog"), "output_model_changelog", MAX_TEXT)
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
        model = await model_q.insert(
            conn, id=uuid4(), org_id=principal.org_id, library_id=library.id, engine_id=engine.info.id,
            library_version=library.version, train_status="queued",
        )
        parent = await q.default_model(conn, principal.org_id, library.id, engine.info.id)
        model = await q.set_version_fields(conn, principal.org_id, model.id, {
            "name": name, "description": description, "changelog": changelog, "labels": labels,
            "parent_model_id": parent.id if parent else None, "auto_promote": auto_promote,
        })
        payload: dict[str, Any] = {"mode": "library-train", "libraryId": str(library.id),
                                   "libraryEngineModelId": str(model.id), "config": config,
                                   "trainingType": chosen.identifier_type_id}
        job = await job_service.insert_prepared(
            conn, principal.org_id, [(engine_row, payload)],
            {"name": f"train {library.name} v{library.version}", "display_name": name, "labels": labels,
             "max_attempts": res.settings.max_attempts, "actor": principal.actor},
            library.id,
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


async def wait(res: Any, principal: Principal, job_id: object, wait_seconds: int | None) -> Job:
    """The job once it is done, or as it is when ``wait_seconds`` (0-60) runs out.

    Woken by the job's NOTIFY events (the gateway's EventHub), so any process finishing it is seen at once;
    re-read every few seconds as well, in case a notification was lost while LISTEN reconnected.
    """
    seconds = 0 if wait_seconds is None else wait_seconds
    if not 0 <= seconds <= MAX_WAIT_SECONDS:
        raise InvalidInput(f"waitSeconds must be between 0 and {MAX_WAIT_SECONDS}")
    job = await job_service.get(res, principal, job_id)
    if seconds == 0 or job.status in FINISHED:
        return job
    hub = getattr(res, "events", None)
    deadline = time.monotonic() + seconds
    queue = hub.subscribe(str(job.id)) if hub is not None else None
    try:
        job = await job_service.get(res, principal, job.id)  # subscribed first: no finish slips between
        while job.status not in FINISHED:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                if queue is not None:
                    await asyncio.wait_for(queue.get(), timeout=min(left, WAIT_RECHECK_SECONDS))
                else:
                    await asyncio.sleep(min(left, WAIT_RECHECK_SECONDS))
            except asyncio.TimeoutError:
                pass
            job = await job_service.get(res, principal, job.id)
    finally:
        if queue is not None:
            hub.unsubscribe(str(job.id), queue)
    return job


# ---- model versions ----

ALIAS_RULE = "an alias is 2-128 characters: a lowercase letter, then letters, digits or '-', ending in a lowercase letter or digit"


def check_aliases(raw: Any) -> list[str]:
    """Vertex's version alias format ``[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]``; ``default`` is setDefaultModel's."""
    import re

    if not isinstance(raw, list):
        raise InvalidInput("aliases must be a list of strings")
    if len(raw) > 20:
        raise InvalidInput("a model may have at most 20 aliases")
    seen: list[str] = []
    for alias in raw:
        if not isinstance(alias, str) or not re.fullmatch(r"[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]", alias):
            raise InvalidInput(f"alias {alias!r}: {ALIAS_RULE}")
        if alias == "default":
            raise InvalidInput("alias 'default' follows the default model; use setDefaultModel")
        if alias not in seen:
            seen.append(alias)
    return seen


def check_version(principal: Principal, changes: dict[str, Any]) -> tuple[dict[str, Any], list[str] | None]:
    """The version fields ``update_version`` would write, checked (and nothing written): callers that change
    other fields of the model in the same request check these first, so a refusal leaves nothing half-done."""
    principal.require_write()
    fields: dict[str, Any] = {}
    if "name" in changes:
        fields["name"] = _text(changes["name"], "name", MAX_NAME)
    for key in ("description", "changelog"):
        if key in changes:
            fields[key] = _text(changes[key], key, MAX_TEXT)
    if "labels" in changes:
        fields["labels"] = check_labels(changes["labels"])
    if "auto_promote" in changes:
        if not isinstance(changes["auto_promote"], bool):
            raise InvalidInput("autoPromote must be true or false")
        fields["auto_promote"] = changes["auto_promote"]
    aliases = check_aliases(changes["aliases"]) if changes.get("aliases") is not None else None
    return fields, aliases


async def update_version(res: Any, principal: Principal, model_id: object, changes: dict[str, Any]) -> EngineModel:
    """name, description, changelog, labels, aliases, autoPromote of a model (each only when sent)."""
    fields, aliases = check_version(principal, changes)
    mid = parse_id(model_id)
    async with res.pool.acquire() as conn, conn.transaction():
        model = await model_q.by_id(conn, principal.org_id, mid)
        if model is None:
            raise NotFound()
        principal.check_library(model.library_id)
        await q.lock_aliases(conn, model.library_id, model.engine_id)
        if fields:
            model = await q.set_version_fields(conn, principal.org_id, mid, fields)
        if aliases is not None:
            model = await q.set_aliases(conn, model, aliases)
    return model


# ---- libraries: counts, previews, issues ----

@dataclass(slots=True)
class LibraryInsight:
    entities: int = 0
    active_entities: int = 0
    identifiers: int = 0
    usable_identifiers: int = 0
    has_error: bool = False
    has_warning: bool = False
    reasons: list[dict[str, Any]] = field(default_factory=list)
    last_training: EngineModel | None = None


def _reason(kind: str, severity: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "severity": severity, "message": message, "identifierId": extra.get("identifierId"),
            "entityId": extra.get("entityId"), "detail": extra.get("detail")}


async def insights(res: Any, principal: Principal, library_ids: list[UUID]) -> dict[UUID, LibraryInsight]:
    """Counts and issues of several libraries in a few queries (a DataLoader's batch).

    Issues: the last finished training failed (an error), and, as warnings, identifiers its gates skipped
    (``jsondata.skipped``) or warned about (``jsondata.warnings``), entities with fewer than 2 identifiers,
    and identifiers whose content another identifier of the library has too.
    """
    out = {lid: LibraryInsight() for lid in library_ids}
    async with res.pool.acquire() as conn:
        counts = await q.library_counts(conn, principal.org_id, library_ids)
        last = await q.last_trainings(conn, principal.org_id, library_ids)
        duplicates = await q.duplicates(conn, principal.org_id, library_ids, MAX_ISSUE_REASONS * len(library_ids))
        thin = await q.thin_entities(conn, principal.org_id, library_ids, MAX_ISSUE_REASONS * len(library_ids))
    for lid, insight in out.items():
        record = counts.get(lid)
        if record is not None:
            insight.entities = int(record["entities"])
            insight.active_entities = int(record["active_entities"])
            insight.identifiers = int(record["identifiers"])
        insight.usable_identifiers = insight.identifiers
        model = last.get(lid)
        insight.last_training = model
        if model is not None:
            data = model.jsondata if isinstance(model.jsondata, dict) else {}
            if model.train_status == "failed":
                insight.has_error = True
                insight.reasons.append(_reason("training-failed", "error",
                                               str(data.get("error") or "the last training failed")))
            skipped = [s for s in data.get("skipped") or [] if isinstance(s, dict)]
            warnings = [w for w in data.get("warnings") or [] if isinstance(w, dict)]
            if model.train_status == "complete":
                insight.usable_identifiers = max(0, insight.identifiers - len(skipped))
            for item, severity in [(s, "warning") for s in skipped] + [(w, "warning") for w in warnings]:
                insight.reasons.append(_reason(
                    str(item.get("reason") or "skipped"), severity,
                    f"identifier {item.get('identifierId')}: {item.get('reason')}",
                    identifierId=item.get("identifierId"), entityId=item.get("entityId"), detail=item.get("detail"),
                ))
    for record in thin:
        insight = out[record["library_id"]]
        insight.reasons.append(_reason(
            "too-few-identifiers", "warning",
            f"entity {record['name']!r} has {record['n']} identifier(s); recognition needs at least 2 to be evaluated",
            entityId=str(record["id"]),
        ))
    for record in duplicates:
        out[record["library_id"]].reasons.append(_reason(
            "duplicate", "warning", f"identifier {record['id']} has the same content as another identifier of the library",
            identifierId=str(record["id"]), entityId=str(record["entity_id"]), detail=record["content_sha256"],
        ))
    for insight in out.values():
        insight.has_warning = any(r["severity"] == "warning" for r in insight.reasons)
        insight.reasons = insight.reasons[:MAX_ISSUE_REASONS]
    return out



async def default_model_of(res: Any, principal: Principal, library_id: object, engine_id: object | None) -> EngineModel:
    """The default model of a library for ``engine_id`` (or the library's default engine)."""
    lid = parse_id(library_id)
    principal.check_library(lid)
    async with res.pool.acquire() as conn:
        library = await library_q.by_id(conn, principal.org_id, lid)
        if library is None:
            raise NotFound()
        if engine_id is None:
            engine = (await default_engine(res, conn, principal.org_id, library)).engine.info.id
        else:
            engine = str(engine_id)
        model = await q.default_model(conn, principal.org_id, lid, engine)
    if model is None:
        raise InvalidInput(f"library {lid} has no default model for engine {engine}: train it first")
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
    found = await insights(res, principal, library_ids) if library_ids else {}
    out = []
    for job in jobs:
        model = models.get(job.id)
        if model is None:
            continue
        urls = [await url_for(res, row) for row in previews.get(model.library_id, [])]
        out.append(TrainingView(job, model, libraries.get(model.library_id), summaries.get(job.id),
                                found.get(model.library_id, LibraryInsight()), urls))
    return out
