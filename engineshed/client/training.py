"""A training job with Vertex AI's ``TrainingJob`` surface, over engineshed's jobs.

Methods ``run``, ``wait``, ``done``, ``cancel``, ``delete``, ``get``, ``get_model`` and ``list(filter, order_by)``;
properties ``state``, ``create_time``, ``start_time``, ``end_time``, ``error``, ``labels``, ``display_name``, and
``training_report`` (what the training used and left out; the model ``run`` and ``get_model`` return carries it too).
It maps onto ``createLibraryEngineModel`` + ``createJob(displayName, labels)``, ``job(id, waitSeconds)``,
``cancelJob``, ``deleteJob`` and ``jobs(labels, orderBy)``; the job's ``outputModel`` is the trained model.

With :class:`~engineshed.client.AsyncClient` the methods that talk to the server return awaitables; the
properties never do (they read the state last fetched; ``done()`` fetches it afresh).
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from engineshed.client.errors import EngineshedError, InvalidInputError, NotAllowedError, NotFoundError
from engineshed.client.operations.jobs import TRAINING_REPORT_FIELDS
from engineshed.client.transport import Call, Operation

if TYPE_CHECKING:
    from engineshed.client.operations import Operations

TRAINING_JOB_FIELDS = (
    "id name displayName labels status done progress error libraryId createdDateTime modifiedDateTime startedDateTime "
    "completedDateTime outputModel { id engineId libraryId libraryVersion trainStatus accuracy name isDefault promotion "
    f"trainingReport {{ {TRAINING_REPORT_FIELDS} }} }} "
    "tasks { records { id engineId status progress failureReason failureMessage payload } }"
)
FINISHED = ("complete", "failed", "cancelled")
WAIT_SECONDS = 60  # the most one job(waitSeconds) call waits on the server


class PipelineState(str, Enum):
    """Vertex's pipeline states, from engineshed's job statuses."""

    PIPELINE_STATE_UNSPECIFIED = "PIPELINE_STATE_UNSPECIFIED"
    PIPELINE_STATE_QUEUED = "PIPELINE_STATE_QUEUED"
    PIPELINE_STATE_PENDING = "PIPELINE_STATE_PENDING"
    PIPELINE_STATE_RUNNING = "PIPELINE_STATE_RUNNING"
    PIPELINE_STATE_SUCCEEDED = "PIPELINE_STATE_SUCCEEDED"
    PIPELINE_STATE_FAILED = "PIPELINE_STATE_FAILED"
    PIPELINE_STATE_CANCELLED = "PIPELINE_STATE_CANCELLED"


STATES = {
    "pending": PipelineState.PIPELINE_STATE_PENDING,
    "queued": PipelineState.PIPELINE_STATE_QUEUED,
    "running": PipelineState.PIPELINE_STATE_RUNNING,
    "complete": PipelineState.PIPELINE_STATE_SUCCEEDED,
    "failed": PipelineState.PIPELINE_STATE_FAILED,
    "cancelled": PipelineState.PIPELINE_STATE_CANCELLED,
}
# Vertex filter/order field names (snake_case or camelCase) -> ours
ORDER_FIELDS = {"create_time": "createdDateTime", "createTime": "createdDateTime",
                "update_time": "modifiedDateTime", "updateTime": "modifiedDateTime"}
# field="value" or, as Vertex takes it too, field=value (a bare value: no spaces, quotes or parentheses).
FILTER_TERM = re.compile(r'^\s*(?P<field>[A-Za-z_][\w.]*)\s*=\s*(?:"(?P<quoted>[^"]*)"|(?P<bare>[^\s"()=<>!]+))\s*$')


class JobNotRunning(NotAllowedError, RuntimeError):
    """``cancel()`` on a job that is not queued or running (Vertex raises RuntimeError; so does this)."""


class NoModel(EngineshedError, RuntimeError):
    """``get_model()`` on a job that failed or produced no model (Vertex's RuntimeError)."""


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def parse_filter(expression: str | None) -> tuple[dict[str, str], list[str], str | None]:
    """Vertex's ``filter``: ``field="value"`` (or ``field=value``) terms joined by AND, as (labels, statuses, display name).

    Fields: ``labels.KEY``, ``state`` (a PipelineState or one of our statuses), ``display_name``/``displayName``.
    Anything else is refused rather than ignored: a filter that silently matched everything would mislead.
    """
    labels: dict[str, str] = {}
    statuses: list[str] = []
    display_name: str | None = None
    if not expression or not expression.strip():
        return labels, statuses, display_name
    for term in re.split(r"\s+AND\s+", expression.strip()):
        match = FILTER_TERM.match(term)
        if not match:
            raise InvalidInputError(f'filter term {term!r} is not field="value" or field=value (terms join with AND)')
        field = match["field"]
        value = match["quoted"] if match["quoted"] is not None else match["bare"]
        if field.startswith("labels."):
            labels[field[len("labels."):]] = value
        elif field == "state":
            status = next((ours for ours, state in STATES.items() if state.value == value), value)
            if status not in STATES:
                raise InvalidInputError(f"unknown state {value!r}")
            statuses.append(status)
        elif field in ("display_name", "displayName"):
            display_name = value
        else:
            raise InvalidInputError(f"filter on {field!r} is not supported (labels.KEY, state, display_name)")
    return labels, statuses, display_name


def parse_order(order_by: str | None) -> tuple[list[dict[str, str]], str | None]:
    """Vertex's ``order_by`` (``"create_time desc, display_name"``): server orderings, or a display-name sort."""
    server: list[dict[str, str]] = []
    by_name: str | None = None
    if not order_by:
        return server, by_name
    for part in order_by.split(","):
        words = part.split()
        if not words:
            continue
        direction = words[1].lower() if len(words) > 1 else "asc"
        if direction not in ("asc", "desc") or len(words) > 2:
            raise InvalidInputError(f"order_by term {part.strip()!r} is not 'field [asc|desc]'")
        if words[0] in ("display_name", "displayName"):
            by_name = direction
        elif words[0] in ORDER_FIELDS:
            server.append({"field": ORDER_FIELDS[words[0]], "direction": direction})
        else:
            raise InvalidInputError(f"order_by {words[0]!r} is not one of display_name, create_time, update_time")
    return server, by_name


def _is_training(job: dict[str, Any]) -> bool:
    return any((task.get("payload") or {}).get("mode") == "library-train" for task in job["tasks"]["records"])


class TrainingJob:
    """One training job. Build it with ``client.training_job(display_name, labels)`` then :meth:`run`, or fetch
    one with :meth:`get` / :meth:`list`."""

    def __init__(self, client: Operations, display_name: str | None = None, labels: dict[str, str] | None = None,
                 resource: dict[str, Any] | None = None) -> None:
        self._client = client
        self._display_name = display_name
        self._labels = dict(labels or {})
        self._resource: dict[str, Any] | None = resource

    def __repr__(self) -> str:
        if self._resource is None:
            return f"TrainingJob(display_name={self._display_name!r}, not run)"
        return f"TrainingJob({self._resource['id']!r}, display_name={self.display_name!r}, state={self.state.value})"

    # -- properties (the last state fetched) --------------------------------------------------------------------

    @property
    def resource_name(self) -> str:
        """The job's id (what :meth:`get` takes)."""
        return self._require()["id"]

    name = resource_name

    @property
    def display_name(self) -> str | None:
        return self._resource.get("displayName") if self._resource else self._display_name

    @property
    def labels(self) -> dict[str, str]:
        return dict(self._resource.get("labels") or {}) if self._resource else dict(self._labels)

    @property
    def state(self) -> PipelineState:
        if self._resource is None:
            return PipelineState.PIPELINE_STATE_UNSPECIFIED
        return STATES.get(self._resource["status"], PipelineState.PIPELINE_STATE_UNSPECIFIED)

    @property
    def has_failed(self) -> bool:
        return self.state == PipelineState.PIPELINE_STATE_FAILED

    @property
    def create_time(self) -> datetime | None:
        return _time(self._resource.get("createdDateTime")) if self._resource else None

    @property
    def update_time(self) -> datetime | None:
        return _time(self._resource.get("modifiedDateTime")) if self._resource else None

    @property
    def start_time(self) -> datetime | None:
        return _time(self._resource.get("startedDateTime")) if self._resource else None

    @property
    def end_time(self) -> datetime | None:
        return _time(self._resource.get("completedDateTime")) if self._resource else None

    @property
    def error(self) -> str | None:
        """Why the job failed (``Job.error``); None unless it failed or was cancelled."""
        return self._resource.get("error") if self._resource else None

    @property
    def progress(self) -> float:
        return float(self._resource.get("progress") or 0.0) if self._resource else 0.0

    @property
    def training_report(self) -> dict[str, Any] | None:
        """What the training used and left out (the trained model's ``trainingReport``: identifiers used, skipped by
        reason, entities left with no usable identifier); None until the job completes."""
        model = self._resource.get("outputModel") if self._resource else None
        return model.get("trainingReport") if isinstance(model, dict) else None

    def to_dict(self) -> dict[str, Any]:
        return dict(self._require())

    def _require(self) -> dict[str, Any]:
        if self._resource is None:
            raise RuntimeError("this training job has not been run yet")
        return self._resource

    # -- methods --------------------------------------------------------------------------------------------------

    def run(self, dataset: str, engine_id: str | None = None, config: dict[str, Any] | None = None, sync: bool = True, *,
            training_fraction_split: float | None = None, test_fraction_split: float | None = None,
            model_display_name: str | None = None, model_labels: dict[str, str] | None = None,
            model_version_aliases: list[str] | None = None, model_version_description: str | None = None,
            is_default_version: bool | None = None) -> Any:
        """Start training library ``dataset`` (the library id); with ``sync`` wait and return the trained model
        (``outputModel``), else return None at once. RuntimeError when this job was already run.

        Vertex's options map onto the model and its engine config: ``training_fraction_split`` /
        ``test_fraction_split`` → ``config.trainingFraction`` / ``testFraction``; ``model_display_name``,
        ``model_labels``, ``model_version_aliases`` and ``model_version_description`` → the LibraryEngineModel's
        ``name``, ``labels``, ``aliases`` and ``description``; ``is_default_version=True`` → ``autoPromote`` (the
        model becomes the default when it completes, whatever it scores). Without it a model becomes the
        default by the promotion rule (README "Training"); ``False`` cannot promise more than that rule, so it
        is refused rather than half-honoured."""
        if is_default_version is False:
            raise InvalidInputError("is_default_version=False is not offered: a completed model becomes the default by the "
                                    "promotion rule (newer library version, or at least as accurate); setDefaultModel moves it back")
        config = dict(config or {})
        for key, value in (("trainingFraction", training_fraction_split), ("testFraction", test_fraction_split)):
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise InvalidInputError(f"{key} must be a number between 0 and 1, not {value!r}")
                config[key] = float(value)
        model = {"name": model_display_name, "labels": model_labels, "aliases": model_version_aliases,
                 "description": model_version_description}
        model = {k: v for k, v in model.items() if v is not None}
        return self._client._run(self._run_op(dataset, engine_id, config or None, sync, model, bool(is_default_version)))

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the job is complete, failed or cancelled (``job(id, waitSeconds)``, repeated);
        TimeoutError after ``timeout`` seconds."""
        return self._client._run(self._wait_op(timeout))

    def done(self) -> Any:
        """Whether the job has finished (fetched afresh)."""
        return self._client._run(self._done_op())

    def cancel(self) -> Any:
        """Cancel a queued or running job (``cancelJob``); :class:`JobNotRunning` (a RuntimeError) otherwise."""
        return self._client._run(self._cancel_op())

    def delete(self, sync: bool = True) -> Any:
        """Delete the job (``deleteJob``). ``sync`` is accepted for Vertex's signature; deletion is immediate."""
        return self._client._run(self._delete_op())

    def get_model(self, sync: bool = True) -> Any:
        """The model the job trained (``outputModel``); :class:`NoModel` (a RuntimeError) when there is none."""
        return self._client._run(self._model_op())

    @classmethod
    def get(cls, resource_name: str, *, client: Operations | None = None) -> Any:
        """The training job with id ``resource_name``; :class:`NotFoundError` when there is none. Without
        ``client``, a :class:`Client` from the environment (ENGINESHED_URL / ENGINESHED_TOKEN, else the local
        ``engineshed dev``), as Vertex's calls use the project ``aiplatform.init`` set."""
        client = client if client is not None else _default_client()
        return client._run(cls._get_op(client, resource_name))

    @classmethod
    def list(cls, filter: str | None = None, order_by: str | None = None, *, client: Operations | None = None) -> Any:
        """Training jobs matching ``filter`` (``labels.team="vision" AND state="PIPELINE_STATE_SUCCEEDED"``,
        ``labels.team=vision``, ``display_name="x"``) ordered by ``order_by`` (``"create_time desc"``, ``"display_name"``; ascending default).
        ``client`` as for :meth:`get`."""
        client = client if client is not None else _default_client()
        return client._run(cls._list_op(client, filter, order_by))

    # -- the operations behind them -------------------------------------------------------------------------------

    def _fetch(self, wait_seconds: int = 0) -> Operation[dict[str, Any]]:
        data = yield Call(query=f"query($id: ID!, $w: Int) {{ job(id: $id, waitSeconds: $w) {{ {TRAINING_JOB_FIELDS} }} }}",
                          variables={"id": self.resource_name, "w": wait_seconds}, idempotent=True)
        if data["job"] is None:
            raise NotFoundError(f"no job {self.resource_name}")
        self._resource = data["job"]
        return self._resource

    def _run_op(self, dataset: str, engine_id: str | None, config: dict[str, Any] | None, sync: bool,
                model: dict[str, Any] | None = None, auto_promote: bool = False) -> Operation[Any]:
        from engineshed.client.operations.jobs import JobOperations, with_new_model

        if self._resource is not None:
            raise RuntimeError(f"training job {self.resource_name} has already been run")
        if engine_id is None:
            engine_id = yield from JobOperations.default_engine.__wrapped__(self._client, dataset)  # type: ignore[attr-defined]
        assert engine_id is not None

        def start(model_id: str) -> Operation[dict[str, Any]]:
            if model:
                yield Call(query="mutation($i: UpdateLibraryEngineModel!) { updateLibraryEngineModel(input: $i) { id } }",
                           variables={"i": {"id": model_id, **model}})
            payload: dict[str, Any] = {"mode": "library-train", "libraryId": dataset, "libraryEngineModelId": model_id}
            if config:
                payload["config"] = dict(config)
            if auto_promote:
                payload["autoPromote"] = True
            job = yield Call(query=f"mutation($i: CreateJob) {{ createJob(input: $i) {{ {TRAINING_JOB_FIELDS} }} }}", variables={"i": {
                "tasks": [{"engineId": engine_id, "payload": payload}], "displayName": self._display_name,
                "labels": self._labels or None}})
            return job["createJob"]

        self._resource = yield from with_new_model(engine_id, dataset, start)
        if not sync:
            return None
        yield from self._wait_op()
        return (yield from self._model_op())

    def _wait_op(self, timeout: float | None = None) -> Operation[None]:
        self._require()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._resource or not self._resource.get("done"):
            if deadline is None:
                yield from self._fetch(WAIT_SECONDS)
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"training job {self.resource_name} is still {self._resource['status']} after {timeout}s")
            # Whole seconds on the wire: waiting the fraction up means at most a second past the timeout.
            yield from self._fetch(min(WAIT_SECONDS, math.ceil(left)))
        return None

    def _done_op(self) -> Operation[bool]:
        resource = yield from self._fetch(0)
        return bool(resource.get("done"))

    def _cancel_op(self) -> Operation[None]:
        self._require()
        try:
            yield Call(query="mutation($id: ID!) { cancelJob(id: $id) { id } }", variables={"id": self.resource_name})
        except NotAllowedError as exc:
            raise JobNotRunning(exc.message, code=exc.code, data=exc.data, status=exc.status) from None
        yield from self._fetch(0)
        return None

    def _delete_op(self) -> Operation[None]:
        yield Call(query="mutation($id: ID!) { deleteJob(id: $id) { id } }", variables={"id": self.resource_name}, idempotent=True)
        return None

    def _model_op(self) -> Operation[dict[str, Any]]:
        resource = yield from self._fetch(0)
        if resource["status"] == "failed":
            raise NoModel(f"training job {self.resource_name} failed: {resource.get('error') or 'no reason given'}")
        model = resource.get("outputModel")
        if resource["status"] != "complete" or model is None:
            raise NoModel(f"training job {self.resource_name} has produced no model (it is {resource['status']})")
        return model

    @classmethod
    def _get_op(cls, client: Operations, resource_name: str) -> Operation[TrainingJob]:
        job = cls(client, resource={"id": resource_name})
        yield from job._fetch(0)
        return job

    @classmethod
    def _list_op(cls, client: Operations, filter: str | None, order_by: str | None) -> Operation[list[TrainingJob]]:
        labels, statuses, display_name = parse_filter(filter)
        server_order, by_name = parse_order(order_by)
        found: list[dict[str, Any]] = []
        offset = 0
        while True:
            data = yield Call(
                query="query($lb: JSONData, $s: [JobStatusFilter!], $ob: [JobSortField!], $o: Int) { jobs(labels: $lb, status: $s, "
                      f"orderBy: $ob, offset: $o, limit: 100) {{ count records {{ {TRAINING_JOB_FIELDS} }} }} }}",
                variables={"lb": labels or None, "s": statuses or None,
                           "ob": server_order or [{"field": "createdDateTime", "direction": "asc"}], "o": offset},
                idempotent=True,
            )
            page = data["jobs"]
            found.extend(r for r in page["records"] if _is_training(r)
                         and (display_name is None or r.get("displayName") == display_name))
            if page["count"] < 100:
                break
            offset += page["count"]
        if by_name is not None:
            found.sort(key=lambda r: r.get("displayName") or "", reverse=by_name == "desc")
        return [cls(client, resource=r) for r in found]


__all__ = ["TrainingJob", "PipelineState", "JobNotRunning", "NoModel", "parse_filter", "parse_order"]


def _default_client() -> Operations:
    from engineshed.client.client import default_client

    return default_client()
