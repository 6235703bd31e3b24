"""An external engine written with the kit trains through the public API: the gateway, real PostgreSQL and S3,
and nothing of the server's code in the engine."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest

from engineshed.client import RetryPolicy
from engineshed.engine import Limits, Runner, load_engine
from tests.engine_kit.conftest import (
    build_digit_library,
    create_engine,
    job,
    model,
    train_job,
)
from tests.engine_kit.engines import nearest
from tests.support.waits import wait_for
from tests.worker.conftest import download, task_of


def runner_for(org, engine_spec: str, engine_id: str, **options) -> Runner:
    return Runner(load_engine(engine_spec), url=org.gateway.url, token=org.token_for("engine", engine_id),
                  engine_id=engine_id, poll_seconds=0.2, **options)


@pytest.mark.parametrize("spec", ["tests.engine_kit.engines:Centroids", "tests.engine_kit.engines:AsyncCentroids"])
def test_an_engine_written_with_the_kit_trains_a_model_that_recognizes_held_out_digits(org, digit_library, spec):
    engine_id = create_engine(org)
    library = build_digit_library(org, digit_library)
    job_id, task_id, model_id = train_job(org, library.id, engine_id)

    # Small pages, so that both the entities and each entity's identifiers take several pages.
    runner = runner_for(org, spec, engine_id, limits=Limits(page_size=3, concurrency=2))
    [outcome] = asyncio.run(runner.run(max_tasks=1))

    assert (outcome.task_id, outcome.status) == (task_id, "complete")
    assert job(org, job_id)["status"] == "complete"
    trained = model(org, model_id)
    assert trained["trainStatus"] == "complete"
    assert trained["contentType"] == "application/json"
    assert trained["jsondata"]["contentType"] == "application/json"
    stored = json.loads(download(trained["dataUrl"]))
    assert set(stored["centroids"]) == set(library.entity_ids.values())
    assert sorted(len(ids) for ids in stored["identifiers"].values()) == [7, 7, 7, 7]

    right = sum(nearest(stored, image)[0]["entityId"] == entity for image, entity in library.held_out)
    print(f"{spec}: {right} of {len(library.held_out)} held-out digits named their entity first")
    assert right / len(library.held_out) >= 0.8, f"{right} of {len(library.held_out)} held-out digits"


def run_in_background(runner: Runner) -> tuple[threading.Thread, list]:
    outcomes: list = []
    thread = threading.Thread(target=lambda: outcomes.extend(asyncio.run(runner.run(max_tasks=1))), daemon=True)
    thread.start()
    return thread, outcomes


def test_a_cancelled_job_stops_the_engine_within_a_heartbeat(org, digit_library):
    engine_id = create_engine(org)
    library = build_digit_library(org, digit_library, digits_wanted=2, per_entity=2)
    job_id, task_id, model_id = train_job(org, library.id, engine_id)
    thread, outcomes = run_in_background(runner_for(org, "tests.engine_kit.engines:Slow", engine_id))

    # It reports progress with its heartbeats while it works.
    wait_for(lambda: task_of(org, job_id)["progressMessage"] == "thinking", timeout=30, what="a heartbeat with progress")
    assert model(org, model_id)["trainStatus"] == "running"
    cancelled_at = time.monotonic()
    org.client.query("mutation($id: ID!) { cancelJob(id: $id) { id } }", id=job_id).ok()
    thread.join(timeout=15)

    assert not thread.is_alive(), "the engine kept training after its job was cancelled"
    # The test stack's lease is 6 s, so the kit heartbeats every 2 s: a cancel is seen within one of them.
    assert time.monotonic() - cancelled_at < 5
    assert [(o.task_id, o.status) for o in outcomes] == [(task_id, "cancelled")]
    assert job(org, job_id)["status"] == "cancelled"
    stopped = model(org, model_id)
    assert stopped["trainStatus"] == "failed" and stopped["jsondata"] == {"error": "the training job was cancelled"}


@pytest.mark.parametrize(("spec", "error"), [
    ("tests.engine_kit.engines:Failing", "no usable images among 4 identifiers"),
    ("tests.engine_kit.engines:Crashing", "ValueError: the engine's own bug"),
    ("tests.engine_kit.engines:Empty", "train returned nothing: return an Artifact"),
])
def test_a_training_that_fails_reports_failed_with_its_error_in_jsondata(org, digit_library, spec, error):
    engine_id = create_engine(org)
    library = build_digit_library(org, digit_library, digits_wanted=2, per_entity=2)
    job_id, _, model_id = train_job(org, library.id, engine_id)

    [outcome] = asyncio.run(runner_for(org, spec, engine_id).run(max_tasks=1))

    assert outcome.status == "failed" and error in outcome.error
    failed = model(org, model_id)
    assert failed["trainStatus"] == "failed"
    assert error in failed["jsondata"]["error"]
    task = task_of(org, job_id)
    assert task["status"] == "failed" and error in task["failureMessage"]
    assert job(org, job_id)["status"] == "failed"


class Flaky(httpx.AsyncBaseTransport):
    """Answers the first request of each kind named in ``faults`` as an unavailable server would, then passes
    everything to the gateway: ``graphql`` a 200 with a service_unavailable error, ``http`` an HTTP 503."""

    def __init__(self, faults: dict[bytes, str]) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.faults = dict(faults)
        self.injected: list[bytes] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        for marker, how in list(self.faults.items()):
            if marker in body:
                del self.faults[marker]
                self.injected.append(marker)
                if how == "http":
                    return httpx.Response(503, headers={"Retry-After": "0.2"}, text="upstream restarting")
                return httpx.Response(200, json={"data": None, "errors": [
                    {"message": "the database is restarting", "extensions": {"code": "service_unavailable"}}]})
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_a_transient_service_unavailable_is_retried_and_the_training_completes(org, digit_library):
    engine_id = create_engine(org)
    library = build_digit_library(org, digit_library, digits_wanted=2, per_entity=3)
    job_id, task_id, model_id = train_job(org, library.id, engine_id)
    flaky = Flaky({b"claimTasks": "graphql", b"entities(identifierTypeId": "graphql", b'name="file"': "http"})

    [outcome] = asyncio.run(runner_for(org, "tests.engine_kit.engines:Centroids", engine_id, transport=flaky,
                                       retry=RetryPolicy(attempts=4, initial_delay=0.05, max_delay=0.5)).run(max_tasks=1))

    assert flaky.injected == [b"claimTasks", b"entities(identifierTypeId", b'name="file"']
    assert (outcome.task_id, outcome.status) == (task_id, "complete")
    trained = model(org, model_id)
    assert trained["trainStatus"] == "complete" and trained["contentType"] == "application/json"
    assert job(org, job_id)["status"] == "complete"


def test_an_engine_with_recognize_answers_library_run_tasks_with_the_libraries_entity_ids(org, digit_library):
    engine_id = create_engine(org, modes=("library-train", "library-run"))
    library = build_digit_library(org, digit_library, digits_wanted=3, per_entity=6)
    _, _, model_id = train_job(org, library.id, engine_id)
    runner = runner_for(org, "tests.engine_kit.engines:Centroids", engine_id)
    assert [o.status for o in asyncio.run(runner.run(max_tasks=1))] == ["complete"]

    # The media to recognize: held-out digits, stored where the engine can fetch them.
    probes = org.create_library("probes", "objects")
    holder = org.create_entity(probes, "probe")
    held_out = library.held_out[::4][:6]
    for image, _ in held_out:
        org.add_identifier(holder, image, type_id="image")
    urls = [i["url"] for i in org.client.query(
        "query($id: ID!) { entity(id: $id) { identifiers(limit: 30) { records { url createdDateTime } } } }", id=holder,
    ).ok()["entity"]["identifiers"]["records"]]
    assert len(urls) == len(held_out)
    created = org.client.query(
        "mutation($t: [CreateTask!]) { createJob(input: {tasks: $t}) { id } }",
        t=[{"engineId": engine_id, "payload": {"mode": "library-run", "libraryId": library.id, "urls": urls}}],
    ).ok()["createJob"]

    [outcome] = asyncio.run(runner.run(max_tasks=1))

    assert outcome.status == "complete"
    output = task_of(org, created["id"])["output"]
    assert output["libraryEngineModelId"] == model_id  # the newest complete model, as the server chose it
    answers = [result["matches"][0] for result in output["results"]]
    assert all(a["libraryId"] == library.id and a["entityId"] in library.entity_ids.values() for a in answers)
