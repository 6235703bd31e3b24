"""A trained model's status follows its library-train task: queued, running, then complete or failed. The queue
calls these as tasks move, inside the transaction that moves them."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from gateway.services.training import promotion
from storage.queries import engine_models as model_q
from storage.queries import libraries as library_q
from storage.queries import trainings as training_q
from storage.rows import Task


def _model_id(task: Task) -> UUID | None:
    payload = task.payload or {}
    if payload.get("mode") != "library-train" or not payload.get("libraryEngineModelId"):
        return None
    try:
        return UUID(str(payload["libraryEngineModelId"]))
    except ValueError:
        return None


async def model_after_task(conn: asyncpg.Connection, task: Task, status: str, jsondata: dict[str, Any] | None) -> None:
    """Keep a library-train task's model in step with the task."""
    model_id = _model_id(task)
    if model_id is None:
        return
    changes: dict[str, Any] = {"train_status": status}
    if jsondata is not None:
        changes["jsondata"] = jsondata
    await model_q.set_fields(conn, task.org_id, model_id, changes)


async def model_after_task_if_unfinished(conn: asyncpg.Connection, task: Task, status: str) -> None:
    """A completed task whose engine did not set its model's final state itself: set it now."""
    model_id = _model_id(task)
    if model_id is None:
        return
    model = await model_q.by_id(conn, task.org_id, model_id)
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


async def attach_train_job(conn: asyncpg.Connection, org_id: UUID, model_id: UUID, job_id: UUID, *,
                           status: str, auto_promote: bool | None = None) -> None:
    """A model gets the job that trains it, and is retrained from the model that answers today (the library's
    default for its engine) unless it names its parent already."""
    model = await model_q.set_fields(conn, org_id, model_id, {"train_job_id": job_id, "train_status": status})
    parent = await training_q.default_model(conn, org_id, model.library_id, model.engine_id)
    if model.parent_model_id is None and parent is not None and parent.id != model.id:
        await training_q.set_version_fields(conn, org_id, model_id, {"parent_model_id": parent.id})
    if auto_promote is not None:
        await training_q.set_version_fields(conn, org_id, model_id, {"auto_promote": auto_promote})
