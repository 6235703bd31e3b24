"""Jobs, and training a library's model: the job that trains it and the trained model it makes."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from engineshed.client.errors import ApiError, InvalidInputError, NotAllowedError, NotFoundError
from engineshed.client.operations.base import OperationsBase, graphql, op
from engineshed.client.operations.fields import ENGINE_MODEL_FIELDS, JOB_FIELDS
from engineshed.client.transport import Call, Operation
from engineshed.client.types import Job, LibraryEngineModel, Page, TrainingReport

T = TypeVar("T")

TRAINING_REPORT_FIELDS = (
    "recorded identifiersUsed identifiersSkipped entitiesUsed "
    "skipped { reason count message capped identifiers { identifierId entityId detail } } "
    "entitiesWithoutIdentifiers { id name reason message } entitiesWithoutIdentifiersCount entitiesWithoutIdentifiersCapped"
)
LIBRARY_MODEL_FIELDS = (f"id engineId libraryVersion trainStatus accuracy isDefault aliases name createdDateTime promotion "
                        f"trainingReport {{ {TRAINING_REPORT_FIELDS} }}")


def with_new_model(engine_id: str, library_id: str, start: Callable[[str], Operation[T]]) -> Operation[T]:
    """``createLibraryEngineModel``, then ``start(model_id)`` (the ``createJob`` that trains it).

    The API needs the model before the job, so the two cannot be one request. When the server refuses the job
    (bad config, unknown model, a name too long...), the model just made would stay behind as a pending model
    no job trains: it is deleted again before the refusal is raised, so a refused training leaves nothing.
    """
    data = yield graphql("mutation($i: CreateLibraryEngineModel!) { createLibraryEngineModel(input: $i) { id } }",
                         idempotent=False, i={"engineId": engine_id, "libraryId": library_id})
    model_id = data["createLibraryEngineModel"]["id"]
    try:
        return (yield from start(model_id))
    except (InvalidInputError, NotFoundError, NotAllowedError):
        # Only a refusal means no job was made. After service_unavailable, an internal error or a proxy's 5xx the
        # job may exist (committed before the answer was lost): deleting its model then would fail that training.
        try:
            yield graphql("mutation($id: ID!) { deleteLibraryEngineModel(id: $id) { id } }", idempotent=True, id=model_id)
        except ApiError:
            pass  # the refusal is what the caller needs to see; the model is visible as pending
        raise


class JobOperations(OperationsBase):
    """Jobs, training and trained models."""

    @op
    def jobs(self, status: Sequence[str] | None = None, library_id: str | None = None, engine_ids: Sequence[str] | None = None,
             order_by: Sequence[Mapping[str, str]] | None = None, offset: int = 0, limit: int = 30,
             labels: Mapping[str, str] | None = None) -> Operation[Page[Job]]:
        """``jobs``: the organization's jobs, newest first unless ``order_by`` says otherwise; ``labels``: only
        jobs carrying every given pair."""
        data = yield graphql(
            "query($s: [JobStatusFilter!], $l: ID, $e: [ID!], $ob: [JobSortField!], $o: Int, $lim: Int, $lb: JSONData) "
            f"{{ jobs(status: $s, libraryId: $l, engineIds: $e, orderBy: $ob, offset: $o, limit: $lim, labels: $lb) "
            f"{{ offset limit count totalCount records {{ {JOB_FIELDS} }} }} }}",
            idempotent=True, s=list(status) if status else None, l=library_id, e=list(engine_ids) if engine_ids else None,
            ob=[dict(o) for o in order_by] if order_by else None, o=offset, lim=limit, lb=dict(labels) if labels else None,
        )
        return data["jobs"]

    @op
    def job(self, job_id: str) -> Operation[Job]:
        """``job``: one job with its tasks; :class:`NotFoundError` when the organization has none by that id."""
        data = yield graphql(f"query($id: ID!) {{ job(id: $id) {{ {JOB_FIELDS} }} }}", idempotent=True, id=job_id)
        if data["job"] is None:
            raise NotFoundError(f"no job {job_id}")
        return data["job"]

    @op
    def create_job(self, tasks: Sequence[Mapping[str, Any]], name: str | None = None) -> Operation[Job]:
        """``createJob``: ``tasks`` as ``CreateTask`` inputs (``{"engineId": …, "payload": {…}}``)."""
        data = yield graphql(f"mutation($i: CreateJob) {{ createJob(input: $i) {{ {JOB_FIELDS} }} }}", idempotent=False,
                             i={"tasks": [dict(t) for t in tasks], "name": name})
        return data["createJob"]

    @op
    def cancel_job(self, job_id: str) -> Operation[dict[str, Any]]:
        """``cancelJob``: cancel a queued or running job."""
        data = yield graphql("mutation($id: ID!) { cancelJob(id: $id) { id message } }", idempotent=True, id=job_id)
        return data["cancelJob"]

    @op
    def retry_job(self, job_id: str) -> Operation[Job]:
        """``retryJob``: run a failed job's failed tasks again (:class:`NotAllowedError` for a job in any other state)."""
        data = yield graphql(f"mutation($id: ID!) {{ retryJob(id: $id) {{ {JOB_FIELDS} }} }}", idempotent=False, id=job_id)
        return data["retryJob"]

    @op
    def delete_job(self, job_id: str) -> Operation[dict[str, Any]]:
        """``deleteJob``."""
        data = yield graphql("mutation($id: ID!) { deleteJob(id: $id) { id message } }", idempotent=True, id=job_id)
        return data["deleteJob"]

    @op
    def engines_for(self, identifier_type_id: str) -> Operation[list[dict[str, Any]]]:
        """Engines that train libraries of ``identifier_type_id`` (``engines`` filtered on identifierTypeIds)."""
        data = yield graphql("{ engines(limit: 100) { records { id name libraryRequired identifierTypeIds modes } } }", idempotent=True)
        return [e for e in data["engines"]["records"] if identifier_type_id in e["identifierTypeIds"] and "library-train" in e["modes"]]

    @op
    def default_engine(self, library_id: str) -> Operation[str]:
        """The engine ``train`` uses when none is named: a library's identifier type's preferred engine.

        Preference: the face engine for face libraries when installed, then the gallery; the speaker for audio.
        """
        data = yield graphql("query($id: ID!) { library(id: $id) { id libraryType { entityIdentifierTypes { id } } } }",
                             idempotent=True, id=library_id)
        if data["library"] is None:
            raise NotFoundError(f"no library {library_id}")
        types = [t["id"] for t in data["library"]["libraryType"]["entityIdentifierTypes"]]
        engines = yield graphql("{ engines(limit: 100) { records { id identifierTypeIds modes } } }", idempotent=True)
        trainable = [e for e in engines["engines"]["records"] if "library-train" in e["modes"]]
        preferred = ("engineshed-face", "engineshed-gallery", "engineshed-speaker", "engineshed-classifier")
        for type_id in types:
            candidates = [e["id"] for e in trainable if type_id in e["identifierTypeIds"]]
            for engine_id in preferred:
                if engine_id in candidates:
                    return engine_id
            if candidates:
                return sorted(candidates)[0]
        raise InvalidInputError(f"no installed engine trains {', '.join(types) or 'this library type'}; name one with engine_id")

    @op
    def train(self, library_id: str, engine_id: str | None = None, config: Mapping[str, Any] | None = None,
              name: str | None = None) -> Operation[Job]:
        """Train a new model of the library: ``createLibraryEngineModel`` then a ``library-train`` ``createJob``.

        ``engine_id`` None: :meth:`default_engine`. The job's ``tasks[0].payload.libraryEngineModelId`` names the
        model it trains; follow it with :meth:`watch_job` or :meth:`wait_for_job`.
        """
        if engine_id is None:
            engine_id = yield from JobOperations.default_engine.__wrapped__(self, library_id)  # type: ignore[attr-defined]
        assert engine_id is not None

        def start(model_id: str) -> Operation[Job]:
            payload: dict[str, Any] = {"mode": "library-train", "libraryId": library_id, "libraryEngineModelId": model_id}
            if config:
                payload["config"] = dict(config)
            job = yield from JobOperations.create_job.__wrapped__(self, [{"engineId": engine_id, "payload": payload}], name)  # type: ignore[attr-defined]
            job["libraryEngineModelId"] = model_id
            return job

        return (yield from with_new_model(engine_id, library_id, start))

    @op
    def wait_for_job(self, job_id: str, timeout: float | None = None, poll: float = 1.0) -> Operation[Job]:
        """Poll ``job`` until it is complete, failed or cancelled (or ``timeout`` seconds pass: TimeoutError)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = min(poll, 0.25)
        while True:
            job = yield from JobOperations.job.__wrapped__(self, job_id)  # type: ignore[attr-defined]
            if job["status"] in ("complete", "failed", "cancelled"):
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {job['status']} after {timeout}s")
            yield Call(sleep=interval)
            interval = min(poll, interval * 2)

    @op
    def library_engine_model(self, library_engine_model_id: str) -> Operation[LibraryEngineModel]:
        """``libraryEngineModel``: a trained (or training) model of a library."""
        data = yield graphql(f"query($id: ID!) {{ libraryEngineModel(id: $id) {{ {ENGINE_MODEL_FIELDS} }} }}", idempotent=True,
                             id=library_engine_model_id)
        if data["libraryEngineModel"] is None:
            raise NotFoundError(f"no library engine model {library_engine_model_id}")
        return data["libraryEngineModel"]

    @op
    def training_report(self, library_engine_model_id: str) -> Operation[TrainingReport | None]:
        """What a training used and left out (``LibraryEngineModel.trainingReport``): identifiers used, skipped by
        reason, and the entities it left with no usable identifier; None until the model is complete."""
        data = yield graphql(f"query($id: ID!) {{ libraryEngineModel(id: $id) {{ trainingReport {{ {TRAINING_REPORT_FIELDS} }} }} }}",
                             idempotent=True, id=library_engine_model_id)
        if data["libraryEngineModel"] is None:
            raise NotFoundError(f"no library engine model {library_engine_model_id}")
        return data["libraryEngineModel"]["trainingReport"]

    @op
    def library_models(self, library_id: str, engine_id: str | None = None, limit: int = 100) -> Operation[list[LibraryEngineModel]]:
        """A library's trained models, newest first, each with its accuracy, ``isDefault`` and ``trainingReport``
        (coverage: entities and identifiers used)."""
        data = yield graphql(f"query($id: ID!, $e: ID, $n: Int) {{ library(id: $id) {{ engineModels(engineId: $e, limit: $n) "
                             f"{{ records {{ {LIBRARY_MODEL_FIELDS} }} }} }} }}", idempotent=True, id=library_id, e=engine_id, n=limit)
        if data["library"] is None:
            raise NotFoundError(f"no library {library_id}")
        return data["library"]["engineModels"]["records"]

    @op
    def latest_model(self, library_id: str, engine_id: str | None = None) -> Operation[LibraryEngineModel | None]:
        """The library's newest complete trained model (of ``engine_id`` if given), or None."""
        data = yield graphql(f"query($id: ID!, $e: ID) {{ library(id: $id) {{ engineModels(engineId: $e, trainStatus: complete, limit: 1) "
                             f"{{ records {{ {ENGINE_MODEL_FIELDS} }} }} }} }}", idempotent=True, id=library_id, e=engine_id)
        if data["library"] is None:
            raise NotFoundError(f"no library {library_id}")
        records = data["library"]["engineModels"]["records"]
        return records[0] if records else None
