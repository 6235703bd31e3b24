"""The seed's "intelligent tasks" REST shape (ModelArts, seed 004) over the labeling services.

``POST /v2/{project_id}/datasets/{dataset_id}/tasks`` starts a task and answers ``{"task_id": ...}`` (the job's
id); ``GET /v2/{project_id}/datasets/{dataset_id}/tasks/{task_id}`` answers its status. The project is the
caller's organization (``me { organizationId }``), the dataset a library. Bearer tokens as on /v3/graphql.

What the body's fields mean here:

* ``task_type`` ``"auto-label"`` (active learning) → findHardExamples: ``config.confidence_scope`` (default
  "0.10-0.90"), ``collect_key_sample`` (or ``config.collect_sample``), ``model_id`` (a LibraryEngineModel id, or a
  registered auto_tagging model's name; default the library's default model, as autoTag chooses it);
* ``task_type`` ``"pre-label"`` → autoTag of the library's unassigned identifiers (the ones no person has placed)
  with ``model_id`` (as above) at ``config.confidence_threshold`` (default 0.5);
* ``task_type`` ``"auto-grouping"``, or ``"type": 2`` (the documented grouping example) → autoGroup with ``config.n_clusters`` (a number or a
  numeric string) or ``config.similarity_threshold`` (groups of members at least that similar), or without either
  sqrt(n/2) groups of the n unassigned identifiers (labeling_jobs.default_cluster_count); clustering on blur (``ambiguity``), ``image_brightness`` or ``image_colorfulness`` when one of
  them is true (at most one), else on embeddings.

Fields about where a hosted service runs or writes (``config.algorithm_type``, ``inf_config_list``, ``flavor``,
``pool_id``, output paths, ``export_type``, ``property``, ...) have no counterpart in a self-hosted gateway and
are not read. Anything read is validated; a bad value is a 400 with a JSON error.

Errors keep this API's shape, ``{"error_code": ..., "error_msg": ...}`` (``gateway.web.errors.task_error``), with
the HTTP status of the code (gateway/rest/common.py does the rest: bearer auth, the body limit, JSON 405s and
masked 500s).
"""

from __future__ import annotations

import re
from typing import Any

from gateway.errors import InvalidInput
from gateway.rest.common import RestEndpoint, RestRequest
from gateway.services.labeling import jobs as labeling_jobs
from gateway.services.selection import IdentifierSelection
from gateway.web.errors import task_error

BODY_LIMIT = 64 * 1024  # a task request is a few hundred bytes of JSON
TASK_TYPES = {labeling_jobs.HARD_EXAMPLES: "auto-label", labeling_jobs.AUTO_TAG: "pre-label",
              labeling_jobs.AUTO_GROUP: "auto-grouping"}
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _object(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{key} must be a JSON object")
    return value


def _flag(data: dict[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidInput(f"{key} must be true or false")
    return value


def _model(data: dict[str, Any]) -> dict[str, Any]:
    """model_id: a trained model's id (a UUID) or a registered auto_tagging model's name."""
    value = data.get("model_id")
    if value is None or value == "":
        return {}
    if not isinstance(value, str):
        raise InvalidInput("model_id must be a string")
    return {"library_engine_model_id": value} if _UUID.match(value) else {"model_id": value}


def _task_type(data: dict[str, Any]) -> str:
    task_type = data.get("task_type")
    if task_type is None and data.get("type") == 2:  # the documented grouping example names no task_type
        return "auto-grouping"
    if task_type not in ("auto-label", "pre-label", "auto-grouping"):
        raise InvalidInput(f"task_type must be auto-label, pre-label or auto-grouping (or type 2 for grouping); got {task_type!r}")
    return task_type


def _n_clusters(value: Any) -> int | None:
    if value is None:
        return None
    # ASCII digits only: str.isdigit() also takes "²" and "٣", which int() then refuses or reads unexpectedly.
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,9}", value.strip()):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise InvalidInput("config.n_clusters must be a whole number (or a string of one)")


def _similarity(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput("config.similarity_threshold must be a number between 0 and 1")
    return float(value)


# The services' messages name GraphQL's fields; a REST caller sends these snake_case names.
_REST_NAMES = (
    ("libraryEngineModelId", "model_id"), ("modelId", "model_id"), ("nClusters", "config.n_clusters"),
    ("similarityThreshold", "config.similarity_threshold"), ("confidenceScope", "config.confidence_scope"),
    ("confidenceThreshold", "config.confidence_threshold"), ("collectKeySample", "collect_key_sample"),
)


def _rest_message(message: str) -> str:
    for graphql_name, rest_name in _REST_NAMES:
        message = re.sub(rf"\b{graphql_name}\b", rest_name, message)
    return message


async def start_task(req: RestRequest) -> Any:
    try:
        return await _start_task(req)
    except InvalidInput as exc:
        exc.message = _rest_message(exc.message)
        raise


async def _start_task(req: RestRequest) -> Any:
    req.require_project()
    data = await req.json_object()
    res, principal = req.resources, req.principal
    library_id = req.path_params["dataset_id"]
    config = _object(data, "config")
    task_type = _task_type(data)
    if task_type == "auto-label":
        job = await labeling_jobs.find_hard_examples(res, principal, {
            "library_id": library_id, **_model(data), "confidence_scope": config.get("confidence_scope"),
            "collect_key_sample": _flag(data, "collect_key_sample") or _flag(config, "collect_sample"),
        })
    elif task_type == "pre-label":
        threshold = config.get("confidence_threshold")
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))):
            raise InvalidInput("config.confidence_threshold must be a number")
        # Pre-labeling labels "the remaining images": the ones no person has placed in an entity yet.
        job = await labeling_jobs.auto_tag(res, principal, {
            "library_id": library_id, **_model(data), "confidence_threshold": threshold, "unassigned_only": True,
        }, IdentifierSelection())
    else:
        chosen = [name for key, name in (("ambiguity", "blur"), ("image_brightness", "brightness"),
                                         ("image_colorfulness", "colorfulness")) if _flag(config, key)]
        if len(chosen) > 1:
            raise InvalidInput("set at most one of ambiguity, image_brightness and image_colorfulness")
        job = await labeling_jobs.auto_group(res, principal, {
            "library_id": library_id, "n_clusters": _n_clusters(config.get("n_clusters")),
            "similarity_threshold": _similarity(config.get("similarity_threshold")),
            "default_clusters": True,  # n_clusters is optional: without either, a count from the data
            "feature": chosen[0] if chosen else "embedding",
        })
    return {"task_id": str(job.id)}


async def get_task(req: RestRequest) -> Any:
    req.require_project()
    job, task = await labeling_jobs.labeling_task(req.resources, req.principal, req.path_params["task_id"],
                                                  req.path_params["dataset_id"])
    return {
        "task_id": str(job.id),
        "task_type": TASK_TYPES.get((task.payload or {}).get("mode"), "unknown"),
        "status": job.status,
        "progress": task.progress,
        "message": task.progress_message,
        "error_msg": task.failure_message,
        "result": task.output,
        "create_time": job.created_at.isoformat(),
        "update_time": job.modified_at.isoformat(),
    }


tasks = RestEndpoint({"POST": start_task}, body_limit=BODY_LIMIT, error_shape=task_error)
task = RestEndpoint({"GET": get_task}, body_limit=BODY_LIMIT, error_shape=task_error)
