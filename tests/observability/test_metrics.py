"""/metrics after a real training: the request, task, identifier, inference and queue series move as they should,
and the endpoint is closed to anyone without the metrics token (and absent where none is configured)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from gateway.devstack import find_free_port
from gateway.services.models.pull.catalogue import CATALOGUE
from tests.conftest import Gateway, Org, Stack, make_org
from tests.engines.api_helpers import (
    GALLERY,
    create_model,
    create_train_job,
    small_library,
)
from tests.observability.conftest import MetricsDeployment, scrape
from tests.support.waits import wait_for, wait_model

REQUESTS = "engineshed_graphql_requests_total"


@pytest.fixture
def metrics_org(stack: Stack, deployment: MetricsDeployment) -> Iterator[Org]:
    org = make_org(stack, deployment.gateway, "metrics")
    yield org
    org.close()


def test_metrics_on_the_api_port_need_the_metrics_token(deployment: MetricsDeployment, metrics_org: Org) -> None:
    # An API token, even an admin one, is not the metrics token; nor is anything malformed or near it.
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {deployment.token}"},
                    {"Authorization": f"Bearer {deployment.token}x"}, {"Authorization": f"Bearer {metrics_org.token}"},
                    {"Authorization": b"Bearer \xff\xfe" + b"A" * 4000}, {"Authorization": "Bearer"}):
        reply = httpx.get(deployment.metrics_url, headers=headers, timeout=10)
        assert reply.status_code == 401, headers
        assert reply.json()["error"]["code"] == "authentication_error"
        assert "engineshed_" not in reply.text
    assert "engineshed_queue_depth{" in httpx.get(
        deployment.metrics_url, headers={"Authorization": f"Bearer {deployment.token}"}, timeout=10).text


def test_without_a_metrics_token_the_api_port_has_no_metrics(gateway: Gateway, org: Org) -> None:
    # The session's gateway configures neither a token nor a port: /metrics is not part of its API.
    for headers in ({}, {"Authorization": f"Bearer {org.token}"}):
        reply = httpx.get(gateway.url + "/metrics", headers=headers, timeout=10)
        assert reply.status_code == 404
        assert reply.json()["error"]["code"] == "not_found"


def test_requests_are_counted_by_root_field_and_code_with_client_names_kept_out(
    deployment: MetricsDeployment, metrics_org: Org,
) -> None:
    before = deployment.scrape()
    metrics_org.client.query("query Mine { job(id: $id) { id } }".replace("$id", f'"{uuid.uuid4()}"'))
    metrics_org.client.query("query AnyNameAtAll { nope }")
    metrics_org.client.query("query { job(id: ")
    httpx.post(deployment.gateway.url + "/v3/graphql", json={"query": "{ __typename }"}, timeout=10)  # no token
    after = deployment.scrape()

    def moved(operation: str, code: str) -> float:
        return after.value(REQUESTS, operation=operation, code=code) - before.value(REQUESTS, operation=operation, code=code)

    assert moved("job", "not_found") == 1
    assert moved("unknown", "invalid_input") == 1  # a field the schema lacks
    assert moved("invalid", "invalid_input") == 1  # a document that does not parse
    assert moved("unknown", "authentication_error") == 1
    labels = {value for series in after.series(REQUESTS) for _, value in series}
    assert not labels & {"Mine", "AnyNameAtAll", "nope"}
    seconds = "engineshed_graphql_request_seconds_count"
    assert after.value(seconds, operation="job", code="not_found") - before.value(seconds, operation="job", code="not_found") == 1


def test_a_training_moves_the_task_identifier_inference_and_queue_series(
    deployment: MetricsDeployment, metrics_org: Org, stack: Stack, start_worker,
) -> None:
    library_id, _ = small_library(metrics_org, "metrics", entities=2, per_entity=3)
    model_id = create_model(metrics_org, GALLERY, library_id)
    before = deployment.scrape()
    assert before.value("engineshed_scrape_database_up") == 1

    job = create_train_job(metrics_org, GALLERY, library_id, model_id)
    queued = deployment.scrape()
    assert queued.value("engineshed_queue_depth", engine=GALLERY) == before.value("engineshed_queue_depth", engine=GALLERY) + 1
    assert queued.value("engineshed_queue_oldest_seconds", engine=GALLERY) > 0
    assert queued.value(REQUESTS, operation="createJob", code="ok") == before.value(REQUESTS, operation="createJob", code="ok") + 1
    # Tracing is off here: nothing is stored for a trace to continue.
    assert stack.db.fetchval("SELECT trace_context FROM tasks WHERE job_id = $1", uuid.UUID(job["id"])) is None

    worker_port = find_free_port()
    worker = start_worker(PROMETHEUS_MULTIPROC_DIR=str(deployment.directory), ENGINESHED_WORKER_METRICS_PORT=str(worker_port))
    assert wait_model(metrics_org, model_id, worker=worker)["trainStatus"] == "complete"

    done = {"engine": GALLERY, "outcome": "complete", "reason": ""}
    after = wait_for(lambda: (s := deployment.scrape()).value("engineshed_tasks_total", **done) > before.value(
        "engineshed_tasks_total", **done) and s, what="the completed task counted", worker=worker)
    assert after.value("engineshed_tasks_total", **done) == before.value("engineshed_tasks_total", **done) + 1
    assert after.value("engineshed_task_seconds_count", engine=GALLERY, outcome="complete") == before.value(
        "engineshed_task_seconds_count", engine=GALLERY, outcome="complete") + 1
    assert after.value("engineshed_identifiers_trained_total", engine=GALLERY) == before.value(
        "engineshed_identifiers_trained_total", engine=GALLERY) + 6
    assert after.value("engineshed_identifiers_embedded_total", source="training") >= before.value(
        "engineshed_identifiers_embedded_total", source="training") + 6
    batches = "engineshed_inference_batch_seconds_count"
    assert after.value(batches, provider="CPUExecutionProvider") > before.value(batches, provider="CPUExecutionProvider")
    assert after.value("engineshed_queue_depth", engine=GALLERY) == before.value("engineshed_queue_depth", engine=GALLERY)
    # The pools of both processes report (the worker's after its first refresh).
    assert after.value("engineshed_db_pool_size", role="gateway") >= 1
    pooled = wait_for(lambda: (s := deployment.scrape()).value("engineshed_db_pool_size", role="worker") >= 1 and s,
                      what="the worker's pool gauge", worker=worker)
    assert pooled.value("engineshed_db_pool_in_use", role="worker") >= 0
    # Each system model of the catalogue is in exactly one pull state.
    for name in CATALOGUE:
        states = {state: after.value("engineshed_model_pull_state", model=name, state=state)
                  for state in ("pending", "pulling", "ready", "failed")}
        assert sorted(states.values()) == [0, 0, 0, 1], (name, states)

    # The worker's own port answers with the same shared values and the queue read from PostgreSQL.
    from_worker = scrape(f"http://127.0.0.1:{worker_port}/metrics")
    assert from_worker.value("engineshed_tasks_total", **done) == after.value("engineshed_tasks_total", **done)
    assert from_worker.has("engineshed_queue_depth", engine=GALLERY)
