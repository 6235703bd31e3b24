"""The Training resource over REST: ``/v1/trainings/`` (GET list, POST) and ``/v1/trainings/{id}``
(GET, DELETE), over the same services as GraphQL's jobs and models.

A training is a job whose task trains a library (a "dataset" here) into a LibraryEngineModel. States:
queued/pending -> ``waiting``, running -> ``processing``, complete -> ``completed``, failed/cancelled ->
``failed`` (with ``error``). Times are UTC as ``2020-12-15 12:34:18.237000``.
``source_dataset.evaluation_state`` is 0 until the training measured its model, then 1.
``source_dataset.issues`` keeps ``has_error``/``has_warning`` and adds this training's report: a warning
per entity it left with no usable identifier and per skip reason (``reasons``), and the counts (``report``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from gateway.rest.common import RestEndpoint, RestRequest
from gateway.services.training import trainings as service
from gateway.services.training.evaluation import BackboneComparison, evaluation_of
from gateway.services.training import views as training_views

STATES = {"pending": "waiting", "queued": "waiting", "running": "processing", "complete": "completed",
          "failed": "failed", "cancelled": "failed"}


def rest_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def _evaluation(model: Any) -> dict[str, Any]:
    evaluation = evaluation_of(model)
    if evaluation is None:
        return {}
    calibration = evaluation.calibration
    return {
        "method": evaluation.method,
        "top1": evaluation.top1,
        "evaluated": evaluation.evaluated,
        "split_sizes": {"training": evaluation.split_sizes.training, "validation": evaluation.split_sizes.validation,
                        "test": evaluation.split_sizes.test},
        "per_entity": {e.entity_id: {"count": e.count, "correct": e.correct} for e in evaluation.per_entity},
        "calibration": None if calibration is None else {
            "method": calibration.method, "threshold": calibration.threshold,
            "genuine": calibration.genuine, "impostor": calibration.impostor,
            "true_positive_rate": calibration.true_positive_rate,
            "true_negative_rate": calibration.true_negative_rate,
            "false_accept_rate": calibration.false_accept_rate,
            "false_accept_rate_bound": calibration.false_accept_rate_bound,
        },
        "backbone_comparison": _comparison(evaluation.backbone_comparison),
    }


def _comparison(comparison: BackboneComparison | None) -> dict[str, Any] | None:
    if comparison is None:
        return None
    splits = comparison.split_sizes
    return {
        "method": comparison.method, "sampled": comparison.sampled, "evaluated": comparison.evaluated,
        "split_sizes": {"training": splits.training, "validation": splits.validation, "test": splits.test},
        "candidates": [{"model": c.model, "model_version_id": c.model_version_id, "top1": c.top1,
                        "embedded": c.embedded, "chosen": c.chosen} for c in comparison.candidates],
        "chosen": comparison.chosen, "reason": comparison.reason,
    }


def _model(model: Any) -> dict[str, Any]:
    return {
        "id": str(model.id),
        "name": model.name,
        "description": model.description or "",  # as output_model_description: never null
        "changelog": model.changelog or "",
        "engine_id": model.engine_id,
        "version": model.library_version,
        "accuracy": model.accuracy,
        "is_default": model.is_default,
        "aliases": (["default"] if model.is_default else []) + list(model.aliases or []),
        "parent_model_id": str(model.parent_model_id) if model.parent_model_id else None,
        "labels": model.labels or {},
        "promotion": model.promotion,
        "evaluation_result": _evaluation(model),
        "time_created": rest_time(model.created_at),
    }


def training_json(res: Any, view: training_views.TrainingView) -> dict[str, Any]:
    """One training, with the resource's attribute names."""
    job, model, library, summary = view.job, view.model, view.library, view.summary
    started = summary["started_at"] if summary else None
    completed = summary["completed_at"] if summary else None
    if started is None:
        duration = 0.0
    else:
        duration = round(((completed or datetime.now(timezone.utc)) - started).total_seconds(), 3)
    progress = 1.0 if job.status == "complete" else float(summary["progress"] or 0.0) if summary else 0.0
    error = ""
    if job.status == "failed":
        error = (summary["error"] if summary else None) or "the training failed"
    elif job.status == "cancelled":
        error = "the training was cancelled"
    training_type = (summary["training_type"] if summary else None) or _engine_type(res, model.engine_id) or view.engine_type
    insight = view.insight
    engine_config = summary["config"] if summary and isinstance(summary["config"], dict) else {}
    snake_names = {v: k for k, v in service.FACE_CONFIG_KEYS.items()}
    config = {snake_names.get(k, k): v for k, v in engine_config.items()}
    dataset = None
    if library is not None:
        dataset = {
            "id": str(library.id),
            "name": library.name,
            "description": library.description or "",  # the resource's strings are never null
            "version": float(library.version),
            "type": training_type,
            "time_created": rest_time(library.created_at),
            "time_updated": rest_time(library.modified_at),
            "number_of_classes": insight.entities,
            "number_of_active_classes": insight.active_entities,
            "number_of_images": insight.identifiers,
            "number_of_active_images": insight.usable_identifiers,
            "preview_images": view.preview_urls,
            "evaluation_result": _evaluation(model),
            "evaluation_state": 1 if evaluation_of(model) is not None else 0,
            "issues": _issues(view),
        }
    return {
        "id": str(job.id),
        "type": training_type,
        "state": STATES.get(job.status, job.status),
        "progress": round(progress, 6),
        "duration": duration,
        "error": error,
        "time_created": rest_time(job.created_at),
        "time_started": rest_time(started),
        "time_completed": rest_time(completed),
        "source_dataset": dataset,
        "output_model_name": model.name or "",
        "output_model": _model(model) if model.train_status == "complete" else None,
        "config": config,
        "output_model_description": model.description or "",
        "output_model_changelog": model.changelog or "",
        "labels": job.labels or {},
    }


def _issues(view: training_views.TrainingView) -> dict[str, Any]:
    """The library's issues (its last training's) and this training's own: entities without a usable identifier
    and identifiers skipped by reason, each a warning."""
    insight, report = view.insight, view.report
    reasons: list[dict[str, Any]] = []
    if report is not None:
        for entity in report.entities_without_identifiers:
            reasons.append({"kind": "entity-without-identifiers", "severity": "warning", "entity_id": entity.id,
                            "entity_name": entity.name, "reason": entity.reason,
                            "message": f"entity {entity.name!r} has no usable identifier: {entity.message}"})
        for skip in report.skipped:
            reasons.append({"kind": skip.reason, "severity": "warning", "count": skip.count, "message": skip.message,
                            "identifier_ids": [i.identifier_id for i in skip.identifiers], "capped": skip.capped})
    return {
        "has_error": insight.has_error,
        "has_warning": insight.has_warning or (report is not None and report.has_warning),
        "reasons": reasons,
        "report": report.as_json() if report is not None else None,
    }


def _engine_type(res: Any, engine_id: str) -> str | None:
    engine = res.engines.get(engine_id)
    return engine.info.identifier_type_ids[0] if engine is not None and engine.info.identifier_type_ids else None


async def _one(req: RestRequest, job_id: str) -> dict[str, Any]:
    job, _model = await service.get_training(req.resources, req.principal, job_id)
    views = await training_views.views(req.resources, req.principal, [job])
    return training_json(req.resources, views[0])


async def list_trainings(req: RestRequest) -> Any:
    page = await service.page(req.resources, req.principal, req.query_int("offset", 0), req.query_int("limit", 30))
    views = await training_views.views(req.resources, req.principal, page.records)
    results = [training_json(req.resources, v) for v in views]
    return {"offset": page.offset, "limit": page.limit, "count": len(results), "total_count": page.total,
            "results": results}


async def create_training(req: RestRequest) -> Any:
    job = await service.start(req.resources, req.principal, await req.json_object())
    return 201, await _one(req, str(job.id))


async def get_training(req: RestRequest) -> Any:
    return await _one(req, req.path_params["training_id"])


async def delete_training(req: RestRequest) -> Any:
    training_id = req.path_params["training_id"]
    outcome = await service.remove(req.resources, req.principal, training_id)
    if outcome == "deleted":
        return 204, None
    body = await _one(req, training_id)
    if outcome == "cancelling" and body["state"] in ("waiting", "processing"):
        # Its worker has not stopped it yet: the reply says the cancel is under way, not that nothing happened.
        body["error"] = "cancelling: the training stops when its worker next checks in, then reads failed"
    return 202, body


collection = RestEndpoint({"GET": list_trainings, "POST": create_training})
item = RestEndpoint({"GET": get_training, "DELETE": delete_training})
