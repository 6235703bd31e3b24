"""One trace from the GraphQL mutation that queues a training, through the task row, into the worker's fetch,
decode, inference and upload spans, received over OTLP/HTTP as a collector would receive them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Gateway, Org, Stack, make_org, start_gateway
from tests.engines.api_helpers import (
    GALLERY,
    create_model,
    create_train_job,
    small_library,
)
from tests.observability.otlp_receiver import ReceivedSpan, Receiver
from tests.support.waits import wait_for, wait_model

WORKER_SPANS = ("task library-train", "train", "fetch", "decode", "inference", "upload")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def tracing_env(stack: Stack, receiver: Receiver, **extra: str) -> dict[str, str]:
    env = dict(stack.env)
    env.update(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY="100", **extra)
    return env


@pytest.fixture
def traced_gateway(stack: Stack, receiver: Receiver, tmp_path: Path) -> Iterator[Gateway]:
    gateway = start_gateway(tracing_env(stack, receiver), tmp_path, name="traced-gateway")
    try:
        yield gateway
    finally:
        gateway.process.stop()


@pytest.fixture
def traced_org(stack: Stack, traced_gateway: Gateway) -> Iterator[Org]:
    org = make_org(stack, traced_gateway, "traced")
    yield org
    org.close()


def test_one_trace_runs_from_the_mutation_to_the_uploaded_artifact(
    stack: Stack, receiver: Receiver, traced_org: Org, start_worker,
) -> None:
    library_id, _ = small_library(traced_org, "traced", entities=2, per_entity=3)
    model_id = create_model(traced_org, GALLERY, library_id)
    job = create_train_job(traced_org, GALLERY, library_id, model_id)
    stored = stack.db.fetchval("SELECT trace_context FROM tasks WHERE job_id = $1", uuid.UUID(job["id"]))
    assert stored is not None and stored.startswith("00-")

    worker = start_worker(**{k: v for k, v in tracing_env(stack, receiver, OTEL_SERVICE_NAME="obs-trainer").items()
                             if k.startswith("OTEL_")})
    assert wait_model(traced_org, model_id, worker=worker)["trainStatus"] == "complete"

    [mutation] = wait_for(lambda: [s for s in receiver.received() if s.name == "mutation createJob"],
                          what="the createJob span", timeout=30)
    assert mutation.service == "engineshed-gateway"
    assert stored.split("-")[1] == mutation.trace_id and stored.split("-")[2] == mutation.span_id

    def of_trace() -> dict[str, ReceivedSpan] | None:
        spans = {s.name: s for s in receiver.received() if s.trace_id == mutation.trace_id}
        return spans if all(name in spans for name in WORKER_SPANS) else None

    spans = wait_for(of_trace, what=f"the worker's spans {WORKER_SPANS} in the mutation's trace", timeout=30,
                     worker=worker)
    task, train = spans["task library-train"], spans["train"]
    assert {spans[name].service for name in WORKER_SPANS} == {"obs-trainer"}  # OTEL_SERVICE_NAME is honoured
    assert task.parent_id == mutation.span_id
    assert task.attributes["engineshed.task_id"] == job["tasks"]["records"][0]["id"]
    assert train.parent_id == task.span_id and spans["upload"].parent_id == task.span_id
    for phase in ("fetch", "decode", "inference"):
        span = spans[phase]
        assert span.parent_id == train.span_id, phase
        assert train.start_ns <= span.start_ns <= span.end_ns <= train.end_ns, phase
        assert span.attributes["engineshed.count"] >= 1, phase
    assert spans["fetch"].attributes["engineshed.count"] == 6  # one fetch per identifier
    assert train.end_ns <= spans["upload"].start_ns
    assert task.start_ns >= mutation.start_ns


def test_with_tracing_off_the_worker_sends_nothing_and_the_task_row_holds_no_context(
    stack: Stack, receiver: Receiver, org: Org, start_worker,
) -> None:
    # The session's gateway has no OTEL_* set; this worker would export to the receiver if it traced at all.
    library_id, _ = small_library(org, "untraced", entities=1, per_entity=2)
    model_id = create_model(org, GALLERY, library_id)
    job = create_train_job(org, GALLERY, library_id, model_id)
    assert stack.db.fetchval("SELECT trace_context FROM tasks WHERE job_id = $1", uuid.UUID(job["id"])) is None
    worker = start_worker(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_SDK_DISABLED="true",
                          OTEL_BSP_SCHEDULE_DELAY="100")
    assert wait_model(org, model_id, worker=worker)["trainStatus"] == "complete"
    worker.stop()  # a process that traced would flush its spans as it stops
    assert receiver.received() == []
