"""The seed's "intelligent tasks" REST shape (ModelArts, seed 004) over the labeling services.

``POST /v2/{project_id}/datasets/{dataset_id}/tasks`` starts a task and answers ``{"task_id": ...}`` (the job's
id); ``GET /v2/{project_id}/datasets/{dataset_id}/tasks/{task_id}`` answers its status. The project is the
caller's organization (``me { organizationId }``), the dataset a library. Bearer tokens as on /v3/graphql.

What the body's fields mean here:

* ``task_type`` ``"auto-label"`` (active learning) → findHardExamples: ``config.confidence_scope`` (default
  "0.10-0.90"), ``collect_key_sample`` (or ``config.collect_sample``), ``model_id`` (a LibraryEngineModel id, or a
  registered auto_tagging model's name; default the library's default model, as autoTag chooses it);
* ``task_type`` ``"pre-label"`` → autoTag of the library with ``model_id`` (as above) at ``config.confidence_threshold``
  (default 0.5);
* ``task_type`` ``"auto-grouping"``, or the seed's ``"type": 2`` → autoGroup with ``config.n_clusters`` (a number or a
  numeric string), clustering on blur (``ambiguity``), ``image_brightness`` or ``image_colorfulness`` when one of
  them is true (at most one), else on embeddings.

Fields about where the upstream service runs or writes (``config.algorithm_type``, ``inf_config_list``, ``flavor``,
``pool_id``, output paths, ``export_type``, ``property``, ...) have no counterpart in a self-hosted gateway and
are not read. Anything read is validated; a bad value is a 400 with a JSON error.

The small helpers below (authentication, JSON errors, the body limit) are this module's own until a common
REST module exists to hold them.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.errors import ApiError, InvalidInput, NotFound, PayloadTooLarge
from gateway.services import labeling_jobs, tokens
from gateway.services.identifier_filter import IdentifierSelection
from gateway.services.ids import parse_id
from gateway.services.principal import Principal
from storage.queries import jobs as job_q

log = logging.getLogger("engineshed.rest")

MAX_BODY_BYTES = 64 * 1024  # a task request is a few hundred bytes of JSON
HTTP_STATUS = {
    "invalid_input": 400, "authentication_error": 401, "not_allowed": 403, "not_found": 404,
    "capacity_exceeded": 429, "service_unavailable": 503, "not_implemented": 501,
}
TASK_TYPES = {labeling_jobs.HARD_EXAMPLES: "auto-label", labeling_jobs.AUTO_TAG: "pre-label",
              labeling_jobs.AUTO_GROUP: "auto-grouping"}
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def error_response(exc: ApiError) -> JSONResponse:
    """The upstream's error body ({error_code, error_msg}) with the HTTP status the code stands for."""
    status = 413 if isinstance(exc, PayloadTooLarge) else HTTP_STATUS.get(exc.code, 500)
    headers = {"WWW-Authenticate": 'Bearer realm="engineshed"'} if status == 401 else None
    return JSONResponse({"error_code": exc.code, "error_msg": exc.message}, status_code=status, headers=headers)


async def _principal(request: Request, project_id: str) -> Principal:
    res = request.app.state.resources
    principal = await tokens.authenticate(res.pool, request.headers.get("authorization"))
    if project_id != str(principal.org_id):
        raise NotFound("no such project: the project is your organization's id (me { organizationId })")
    return principal


async def _json_body(request: Request) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the request body is larger than the limit of {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"the request body is larger than the limit of {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(bytes(body) or b"{}")
    except ValueError as exc:
        raise InvalidInput(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput("the body must be a JSON object")
    return data


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
    if task_type is None and data.get("type") == 2:  # the seed's auto-grouping example names no task_type
        return "auto-grouping"
    if task_type not in ("auto-label", "pre-label", "auto-grouping"):
        raise InvalidInput(f"task_type must be auto-label, pre-label or auto-grouping (or type 2 for grouping); got {task_type!r}")
    return task_type


def _n_clusters(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise InvalidInput("config.n_clusters must be a whole number (or a string of one)")


async def start_task(request: Request) -> Response:
    try:
        principal = await _principal(request, request.path_params["project_id"])
        data = await _json_body(request)
        res = request.app.state.resources
        library_id = request.path_params["dataset_id"]
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
            job = await labeling_jobs.auto_tag(res, principal, {
                "library_id": library_id, **_model(data), "confidence_threshold": threshold,
            }, IdentifierSelection())
        else:
            chosen = [name for key, name in (("ambiguity", "blur"), ("image_brightness", "brightness"),
                                             ("image_colorfulness", "colorfulness")) if _flag(config, key)]
            if len(chosen) > 1:
                raise InvalidInput("set at most one of ambiguity, image_brightness and image_colorfulness")
            job = await labeling_jobs.auto_group(res, principal, {
                "library_id": library_id, "n_clusters": _n_clusters(config.get("n_clusters")),
                "feature": chosen[0] if chosen else "embedding",
            })
    except ApiError as exc:
        return error_response(exc)
    return JSONResponse({"task_id": str(job.id)})


async def get_task(request: Request) -> Response:
    try:
        principal = await _principal(request, request.path_params["project_id"])
        res = request.app.state.resources
        job_id = parse_id(request.path_params["task_id"])
        dataset = request.path_params["dataset_id"]
        async with res.pool.acquire() as conn:
            job = await job_q.job_by_id(conn, principal.org_id, job_id)
            tasks = await job_q.tasks_of_job(conn, job_id) if job is not None else []
        if job is None or str(job.library_id) != dataset or not tasks or tasks[0].engine_id != labeling_jobs.ENGINE_ID:
            raise NotFound("no such task in this dataset")
    except ApiError as exc:
        return error_response(exc)
    task = tasks[0]
    return JSONResponse({
        "task_id": str(job.id),
        "task_type": TASK_TYPES.get((task.payload or {}).get("mode"), "unknown"),
        "status": job.status,
        "progress": task.progress,
        "message": task.progress_message,
        "error_msg": task.failure_message,
        "result": task.output,
        "create_time": job.created_at.isoformat(),
        "update_time": job.modified_at.isoformat(),
    })


def _json_500(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """An unexpected error is logged with its stack trace and answered as JSON without one."""

    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception:
            log.exception("unexpected error in %s %s", request.method, request.url.path)
            return JSONResponse({"error_code": "internal_error", "error_msg": "An internal error occurred"}, status_code=500)

    return guarded


def routes() -> list[Route]:
    """The two routes, for gateway/app.py to mount."""
    return [
        Route("/v2/{project_id}/datasets/{dataset_id}/tasks", _json_500(start_task), methods=["POST"]),
        Route("/v2/{project_id}/datasets/{dataset_id}/tasks/{task_id}", _json_500(get_task), methods=["GET"]),
    ]


__all__ = ["routes"]
