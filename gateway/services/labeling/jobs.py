"""Starting the labeling loop's jobs: autoTag (also pre-labeling), findHardExamples (active learning) and
autoGroup. Everything a caller can get wrong is refused here, before a job exists; the worker
(gateway/worker/labeling.py) runs what the payload says.

The jobs queue on the built-in labeling engine (gateway.services.queue.builtin.LABELING), whose concurrency
limit bounds how many run at once across every worker.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from gateway.errors import CapacityExceeded, InvalidInput, NotFound
from gateway.resources import Resources
from gateway.services.access.ids import parse_id
from gateway.services.access.principal import Principal
from gateway.services.models import backbones as engine_backbones
from gateway.services.models import registry as models
from gateway.services.queue import builtin
from gateway.services.queue.enqueue import NewJob, NewTask, enqueue
from gateway.services.selection import IdentifierSelection, parse_query
from gateway.services.training import defaults
from storage.queries import engine_models as model_q
from storage.queries import jobs as job_q
from storage.queries import labeling as q
from storage.queries import libraries as library_q
from storage.queries import types as type_q
from storage.rows import Job, Library, Task

AUTO_TAG, HARD_EXAMPLES, AUTO_GROUP = "auto-tag", "hard-examples", "auto-group"
MODES = (AUTO_TAG, HARD_EXAMPLES, AUTO_GROUP)
AUTO_TAGGING = "auto_tagging"
FEATURES = ("embedding", "blur", "brightness", "colorfulness")

DEFAULT_RESOLUTION = (300, 300)
RESOLUTION_RANGE = (8, 4096)
DEFAULT_SCOPE = "0.10-0.90"
# Agglomerative clustering keeps an n×n distance matrix: past this, ask for nClusters (KMeans) instead.
MAX_THRESHOLD_ITEMS = 20_000
MAX_GROUP_ITEMS = 200_000
# A job's results are written in one transaction at its end: past this many items, narrow the selection.
MAX_SCORE_ITEMS = 200_000

_SCOPE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*$")


def parse_scope(text: str | None) -> tuple[float, float]:
    """confidenceScope "lo-hi" with 0 <= lo < hi <= 1."""
    text = DEFAULT_SCOPE if text is None else text
    if not isinstance(text, str):
        raise InvalidInput('confidenceScope must be a string "lo-hi", like "0.10-0.90"')
    match = _SCOPE.match(text)
    if match is None:
        raise InvalidInput(f'confidenceScope must be "lo-hi" with numbers in [0, 1], like "0.10-0.90"; got {text!r}')
    lo, hi = float(match.group(1)), float(match.group(2))
    if not (0.0 <= lo < hi <= 1.0):
        raise InvalidInput(f"confidenceScope {text!r}: need 0 <= lo < hi <= 1")
    return lo, hi


def check_resolution(value: list[int] | tuple[int, ...] | None) -> tuple[int, int]:
    if value is None:
        return DEFAULT_RESOLUTION
    if len(value) != 2:
        raise InvalidInput("inputResolution is [width, height]: two integers")
    lo, hi = RESOLUTION_RANGE
    if not all(isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi for v in value):
        raise InvalidInput(f"inputResolution: each side must be an integer from {lo} to {hi}")
    return int(value[0]), int(value[1])


def check_threshold(value: float | None, name: str = "confidenceThreshold", default: float = 0.5) -> float:
    value = default if value is None else float(value)
    if not 0.0 <= value <= 1.0:
        raise InvalidInput(f"{name} must be between 0 and 1")
    return value


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """What scores the identifiers: a trained LibraryEngineModel, or a registered auto_tagging version."""

    payload: dict[str, Any]
    identifier_types: tuple[str, ...]  # what it can read
    label: str  # for messages and job names


async def _library(conn: asyncpg.Connection, principal: Principal, library_id: object) -> Library:
    lid = parse_id(library_id)
    principal.check_library(lid)
    library = await library_q.by_id(conn, principal.org_id, lid)
    if library is None:
        raise NotFound(data={"objectType": "library"})
    return library


async def _image_types(conn: asyncpg.Connection, org_id: UUID) -> set[str]:
    return {t.id for t in await type_q.identifier_types(conn, org_id) if t.data_type == "image"}


async def _default_engine_id(res: Resources, conn: asyncpg.Connection, principal: Principal, library: Library) -> str | None:
    try:
        return (await defaults.default_engine(res, conn, principal.org_id, library)).engine.info.id
    except InvalidInput:  # no installed engine claims the library's types: any default model will do
        return None


async def choose_model(
    res: Resources, conn: asyncpg.Connection, principal: Principal, *, library: Library | None,
    library_engine_model_id: object | None, model_id: str | None,
) -> ModelChoice:
    """libraryEngineModelId, or modelId (a registered auto_tagging model), or else the library's default model
    (that of the library's default engine, else any engine's, else the newest complete one), or else the system
    default auto_tagging model."""
    if library_engine_model_id is not None and model_id:
        raise InvalidInput("give libraryEngineModelId (a trained model) or modelId (a registered auto_tagging model), not both")
    if model_id:
        version = await models.resolve_model(res, principal.org_id, model_id)
        if version.application != AUTO_TAGGING:
            raise InvalidInput(f"model {version.ref} is an {version.application} model; this needs an auto_tagging model")
        types = await _image_types(conn, principal.org_id)
        return ModelChoice({"modelVersionId": str(version.id), "model": version.ref}, tuple(sorted(types)), version.ref)
    model = None
    if library_engine_model_id is not None:
        model = await model_q.by_id(conn, principal.org_id, parse_id(library_engine_model_id))
        if model is None:
            raise NotFound(data={"objectType": "libraryEngineModel"})
        principal.check_library(model.library_id)
    elif library is not None:
        model = await q.default_model(conn, principal.org_id, library.id, await _default_engine_id(res, conn, principal, library),
                                      sorted(res.engines))
    if model is None:
        version = await models.default_model(res, principal.org_id, AUTO_TAGGING, None)
        if version is None:
            # Across the organization there is no one library whose trained model could be the default.
            why = ("the library has no trained model" if library is not None
                   else "a library's trained model is a default only for that library (tag it by libraryId)")
            raise InvalidInput(
                "no model to label with: give libraryEngineModelId (a trained model) or modelId (a registered "
                f"auto_tagging model); {why}, and no system auto_tagging model is registered"
            )
        types = await _image_types(conn, principal.org_id)
        return ModelChoice({"modelVersionId": str(version.id), "model": version.ref}, tuple(sorted(types)), version.ref)
    if model.train_status != "complete" or model.storage_key is None:
        raise InvalidInput(f"libraryEngineModel {model.id} is {model.train_status}, not a complete trained model")
    engine = res.engines.get(model.engine_id)
    if engine is None:
        raise InvalidInput(f"libraryEngineModel {model.id} was trained by engine {model.engine_id}, which is not installed here")
    return ModelChoice(
        {"libraryEngineModelId": str(model.id), "model": f"{model.engine_id}:{model.id}"},
        tuple(engine.info.identifier_type_ids), f"model {model.id}",
    )


async def _types_of(conn: asyncpg.Connection, library: Library, usable: tuple[str, ...]) -> list[str]:
    library_type = await type_q.library_type_by_id(conn, library.library_type_id)
    types = [t for t in (library_type.identifier_type_ids if library_type else []) if t in usable]
    if not types:
        raise InvalidInput(f"the model reads {', '.join(usable) or 'nothing'}; library {library.id} holds none of those types")
    return types


async def _check_size(
    conn: asyncpg.Connection, principal: Principal, library_ids: list[UUID] | None, types: list[str], unassigned_only: bool,
    query: dict[str, str], selection: IdentifierSelection,
) -> None:
    count = await q.selection_count(
        conn, principal.org_id, library_ids=library_ids, type_ids=types, unassigned_only=unassigned_only, query=query,
        conditions_at=lambda first: selection.conditions("i", first),
    )
    if count > MAX_SCORE_ITEMS:
        raise CapacityExceeded(
            f"the selection holds {count} identifiers; a labeling job takes at most {MAX_SCORE_ITEMS} (narrow it with filter or query)"
        )


async def _insert_job(conn: asyncpg.Connection, principal: Principal, name: str, payload: dict[str, Any], library_id: UUID | None, max_attempts: int) -> Job:
    # The job records the registered version its payload pins, so deleteModelVersion refuses while it exists.
    version_id = UUID(payload["modelVersionId"]) if payload.get("modelVersionId") else None
    if version_id is not None and not await q.keep_model_version(conn, version_id):
        raise NotFound(f"model {payload.get('model') or payload.get('modelId')} was deleted meanwhile", data={"objectType": "model"})
    return await enqueue(conn, NewJob(
        org_id=principal.org_id, name=name, actor=principal.actor, max_attempts=max_attempts, library_id=library_id,
        model_version_id=version_id,
    ), [NewTask(builtin.LABELING, payload)])


async def auto_tag(res: Resources, principal: Principal, data: dict[str, Any], selection: IdentifierSelection) -> Job:
    """Suggest an entity (or label) for every selected identifier the model is at least confidenceThreshold sure of
    (``unassigned_only``: only the identifiers no person has placed yet, which is what pre-labeling labels)."""
    principal.require_write()
    if (data.get("library_id") is None) == (data.get("identifier_type_id") is None):
        raise InvalidInput("give exactly one of libraryId (one library) or identifierTypeId (every library of the organization)")
    threshold = check_threshold(data.get("confidence_threshold"))
    resolution = check_resolution(data.get("input_resolution"))
    query = parse_query(data.get("query"))
    async with res.pool.acquire() as conn, conn.transaction():
        library = await _library(conn, principal, data["library_id"]) if data.get("library_id") is not None else None
        choice = await choose_model(res, conn, principal, library=library,
                                    library_engine_model_id=data.get("library_engine_model_id"), model_id=data.get("model_id"))
        if library is not None:
            types = await _types_of(conn, library, choice.identifier_types)
        else:
            type_id = str(data["identifier_type_id"])
            known = {t.id for t in await type_q.identifier_types(conn, principal.org_id)}
            if type_id not in known:
                raise InvalidInput(f"unknown identifierTypeId {type_id!r}")
            if type_id not in choice.identifier_types:
                raise InvalidInput(f"{choice.label} reads {', '.join(choice.identifier_types)}, not {type_id}")
            types = [type_id]
        unassigned_only = bool(data.get("unassigned_only"))
        await _check_size(conn, principal, [library.id] if library is not None else None, types, unassigned_only, query, selection)
        payload = {
            "mode": AUTO_TAG, **choice.payload,
            "libraryIds": [str(library.id)] if library is not None else None,
            "identifierTypeIds": types, "unassignedOnly": unassigned_only, "query": query, "filter": selection.as_json(),
            "threshold": threshold, "inputResolution": list(resolution),
        }
        name = f"autoTag {library.name}" if library is not None else f"autoTag every {types[0]} library"
        return await _insert_job(conn, principal, name, payload, library.id if library else None, res.settings.max_attempts)


async def find_hard_examples(res: Resources, principal: Principal, data: dict[str, Any]) -> Job:
    """Score the library's unassigned identifiers; flag those whose confidence falls in the scope as hard."""
    principal.require_write()
    lo, hi = parse_scope(data.get("confidence_scope"))
    async with res.pool.acquire() as conn, conn.transaction():
        library = await _library(conn, principal, data.get("library_id"))
        choice = await choose_model(res, conn, principal, library=library,
                                    library_engine_model_id=data.get("library_engine_model_id"), model_id=data.get("model_id"))
        types = await _types_of(conn, library, choice.identifier_types)
        await _check_size(conn, principal, [library.id], types, True, {}, IdentifierSelection())
        payload = {
            "mode": HARD_EXAMPLES, **choice.payload, "libraryIds": [str(library.id)], "identifierTypeIds": types,
            "unassignedOnly": True, "query": {}, "filter": IdentifierSelection().as_json(),
            "scope": [lo, hi], "collectKeySample": bool(data.get("collect_key_sample")),
            "inputResolution": list(DEFAULT_RESOLUTION),
        }
        return await _insert_job(conn, principal, f"findHardExamples {library.name}", payload, library.id, res.settings.max_attempts)


def default_cluster_count(items: int) -> int:
    """How many groups when the caller names none (n_clusters is optional): the common rule of thumb
    sqrt(n / 2), at least 2 groups when there are 2 items to split, at most 100 (a person names each group)."""
    return max(min(items, 2), min(100, round(math.sqrt(items / 2))))


async def auto_group(res: Resources, principal: Principal, data: dict[str, Any]) -> Job:
    """Cluster the library's unassigned identifiers into groups a person can name."""
    principal.require_write()
    feature = data.get("feature") or "embedding"
    if feature not in FEATURES:
        raise InvalidInput(f"feature must be one of {', '.join(FEATURES)}")
    n_clusters, similarity = data.get("n_clusters"), data.get("similarity_threshold")
    choose_count = n_clusters is None and similarity is None and bool(data.get("default_clusters"))
    if n_clusters is not None and similarity is not None:
        raise InvalidInput("give nClusters or similarityThreshold, not both")
    if n_clusters is None and similarity is None and not choose_count:
        raise InvalidInput("give nClusters (that many groups) or similarityThreshold (groups of members at least that similar)")
    if similarity is not None:
        if feature != "embedding":
            raise InvalidInput(f"similarityThreshold groups embeddings; with feature {feature} give nClusters")
        if not 0.0 < float(similarity) < 1.0:
            raise InvalidInput("similarityThreshold is a cosine similarity strictly between 0 and 1")
    if n_clusters is not None and (isinstance(n_clusters, bool) or not isinstance(n_clusters, int) or n_clusters < 1):
        raise InvalidInput("nClusters must be at least 1")
    model_ref = data.get("model_id") or ""
    if model_ref and feature != "embedding":
        raise InvalidInput(f"modelId names an embedding model; feature {feature} uses none")
    async with res.pool.acquire() as conn, conn.transaction():
        library = await _library(conn, principal, data.get("library_id"))
        images = await _image_types(conn, principal.org_id)
        types = await _types_of(conn, library, tuple(sorted(images)))
        count = await q.selection_count(
            conn, principal.org_id, library_ids=[library.id], type_ids=types, unassigned_only=True, query={},
            conditions_at=lambda first: IdentifierSelection().conditions("i", first),
        )
        if count == 0:
            raise InvalidInput(f"library {library.id} has no unassigned image identifiers to group")
        if choose_count:
            n_clusters = default_cluster_count(count)
        if n_clusters is not None and n_clusters > count:
            raise InvalidInput(f"nClusters ({n_clusters}) is more than the {count} unassigned identifiers to group")
        if count > MAX_GROUP_ITEMS:
            raise CapacityExceeded(f"auto-grouping takes at most {MAX_GROUP_ITEMS} identifiers; the library has {count} unassigned")
        if similarity is not None and count > MAX_THRESHOLD_ITEMS:
            raise InvalidInput(
                f"grouping by similarityThreshold takes at most {MAX_THRESHOLD_ITEMS} identifiers ({count} here); give nClusters"
            )
        version_id = None
        if feature == "embedding":
            # An unknown, unready or non-embedding modelId is refused now (not_found / invalid_input); the version
            # is pinned, so an alias moved meanwhile does not change what the job embeds with.
            if model_ref and model_ref != engine_backbones.PIXEL_PROJECTION:
                version = await models.resolve_model(res, principal.org_id, model_ref, engine_backbones.EMBEDDING)
                version_id = str(version.id)
        # Face identifiers (a people library) are grouped by the face in each photo, found by the system face
        # detector (pinned now, like the model); without one the photos are grouped whole and the output says why.
        detector_id = None
        if feature == "embedding" and "face" in types:
            detector = await models.default_model(res, principal.org_id, engine_backbones.DETECTION, "face")
            detector_id = str(detector.id) if detector is not None else None
        payload = {
            "mode": AUTO_GROUP, "libraryIds": [str(library.id)], "identifierTypeIds": types, "unassignedOnly": True,
            "query": {}, "filter": IdentifierSelection().as_json(), "feature": feature, "nClusters": n_clusters,
            "similarityThreshold": float(similarity) if similarity is not None else None,
            "modelId": model_ref, "modelVersionId": version_id, "detectorVersionId": detector_id,
        }
        return await _insert_job(conn, principal, f"autoGroup {library.name}", payload, library.id, res.settings.max_attempts)


async def labeling_task(res: Resources, principal: Principal, job_id: object, library_id: str) -> tuple[Job, Task]:
    """A labeling job of the caller's organization started on ``library_id``, with its one task.

    Anything else (another organization's job, another library's, a job that is not a labeling job, an id that
    is not one) is the same not_found, so nothing about other tenants' jobs can be told apart.
    """
    job_uuid = parse_id(job_id)
    async with res.pool.acquire() as conn:
        job = await job_q.job_by_id(conn, principal.org_id, job_uuid)
        tasks = await job_q.tasks_of_job(conn, job_uuid) if job is not None else []
    # A task token sees only its own job, as jobs.get has it.
    own = not principal.is_task or (job is not None and job.id == principal.job_id)
    if job is None or not own or str(job.library_id) != library_id or not tasks or tasks[0].engine_id != builtin.LABELING:
        raise NotFound("no such task in this dataset")
    return job, tasks[0]
