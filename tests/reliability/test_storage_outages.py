"""S3 (SeaweedFS) stopped while work is under way, on a private stack (the session stack is never stopped):
training retries and completes when S3 returns within the retry window, fails with a clear error when it
stays away, and an upload while it is away is a clean ``service_unavailable`` that stores nothing."""

from __future__ import annotations

import uuid

from tests.reliability.conftest import (
    assert_clean,
    library_with_images,
    model_row,
    png,
    task_row,
    train,
)
from tests.support.waits import wait_job_finished, wait_task_row, wait_worker_ready

# Backoff 2 s, doubling: the attempts after an S3 failure come 2 s and 4 s later, time for S3 to come back.
RETRY_ENV = {"ENGINESHED_RETRY_BACKOFF_SECONDS": "2", "ENGINESHED_MAX_ATTEMPTS": "3"}


def _no_row_points_at_a_missing_object(private, org) -> None:
    rows = private.db.fetch(
        """SELECT storage_key FROM entity_identifiers WHERE org_id = $1 AND storage_key IS NOT NULL
        UNION ALL SELECT storage_key FROM library_engine_models WHERE org_id = $1 AND storage_key IS NOT NULL""",
        org.id,
    )
    keys = private.bucket.keys(f"{org.id}/")
    missing = [r["storage_key"] for r in rows if r["storage_key"] not in keys]
    assert missing == [], f"rows point at objects that are not in S3: {missing}"


def test_training_retries_and_completes_when_s3_returns_within_the_retry_window(private, private_workers):
    org = private.org()
    library_id = library_with_images(org, 3)
    worker = private_workers("s3-worker", **RETRY_ENV)
    wait_worker_ready(worker)
    # The sleeper reads its identifiers from S3 at once, then works for 3 s, then stores its artifact.
    job_id, task_id, model_id = train(org.client, library_id, seconds=3, steps=3)
    wait_task_row(private.db, task_id, lambda r: r["status"] == "running" and r["progress"] > 0, "the sleeper to be working")
    private.stack.s3.stop()
    try:
        failed_once = wait_task_row(
            private.db, task_id, lambda r: r["failure_message"] is not None or r["status"] != "running",
            "the artifact upload to fail while S3 is down", timeout=60,
        )
    finally:
        private.stack.s3.start()
    assert failed_once["status"] in ("queued", "running"), f"the task was not retried: {dict(failed_once)}"
    assert wait_job_finished(private.db, job_id, timeout=90) == "complete", dict(task_row(private.db, task_id))
    model = model_row(private.db, model_id)
    assert model["train_status"] == "complete" and private.bucket.exists(model["storage_key"])
    assert task_row(private.db, task_id)["attempts"] >= 2
    _no_row_points_at_a_missing_object(private, org)


def test_training_retries_a_read_from_s3_that_fails_and_completes_when_s3_returns(private, private_workers):
    """S3 is away when the task starts: the identifier reads fail as transient errors and are retried."""
    org = private.org()
    library_id = library_with_images(org, 3)
    worker = private_workers("s3-reader", **RETRY_ENV)
    wait_worker_ready(worker)
    private.stack.s3.stop()
    try:
        job_id, task_id, model_id = train(org.client, library_id, seconds=0.2, steps=1)
        failed_once = wait_task_row(private.db, task_id, lambda r: r["failure_message"] is not None or r["status"] in ("complete", "failed"),
                                "the first attempt to fail while S3 is down", timeout=60)
    finally:
        private.stack.s3.start()
    assert failed_once["status"] == "queued", dict(failed_once)
    assert failed_once["failure_reason"] == "system_error"
    assert wait_job_finished(private.db, job_id, timeout=90) == "complete", dict(task_row(private.db, task_id))
    model = model_row(private.db, model_id)
    assert model["train_status"] == "complete" and private.bucket.exists(model["storage_key"])
    _no_row_points_at_a_missing_object(private, org)


def test_training_fails_with_a_clear_error_when_s3_stays_down(private, private_workers):
    org = private.org()
    library_id = library_with_images(org, 2)
    worker = private_workers("s3-down", ENGINESHED_RETRY_BACKOFF_SECONDS="0.3")
    wait_worker_ready(worker)
    private.stack.s3.stop()
    try:
        job_id, task_id, model_id = train(org.client, library_id, seconds=0.1, steps=1)
        assert wait_job_finished(private.db, job_id, timeout=90) == "failed"
        task = task_row(private.db, task_id)
        model = model_row(private.db, model_id)
        reply = org.client.query(
            "query($id: ID!) { libraryEngineModel(id: $id) { trainStatus dataUrl jsondata } }", id=model_id
        ).ok()["libraryEngineModel"]
    finally:
        private.stack.s3.start()
    assert task["status"] == "failed" and task["failure_reason"] == "system_error", dict(task)
    assert "S3" in task["failure_message"] or "storage" in task["failure_message"].lower(), task["failure_message"]
    assert model["train_status"] == "failed" and model["storage_key"] is None
    assert reply["trainStatus"] == "failed" and reply["dataUrl"] is None
    assert reply["jsondata"]["error"], reply
    assert_clean(reply)
    _no_row_points_at_a_missing_object(private, org)


def test_engineshed_max_attempts_bounds_the_attempts_of_a_failing_task(private, private_workers, tmp_path):
    from tests.conftest import start_gateway
    from tests.graphql_client import GraphQLClient

    env = dict(private.stack.env, ENGINESHED_MAX_ATTEMPTS="2")
    gateway = start_gateway(env, tmp_path, "gateway-two-attempts")
    try:
        org = private.org()
        client = GraphQLClient(gateway.url, org.token)
        library_id = library_with_images(org, 1)
        worker = private_workers("crasher", ENGINESHED_MAX_ATTEMPTS="2", ENGINESHED_RETRY_BACKOFF_SECONDS="0.2")
        wait_worker_ready(worker)
        job_id, task_id, _ = train(client, library_id, fail="crash", seconds=0, steps=1)
        assert wait_job_finished(private.db, job_id, timeout=60) == "failed"
        client.close()
    finally:
        gateway.process.stop()
    assert task_row(private.db, task_id)["attempts"] == 2


def test_an_upload_while_s3_is_down_is_service_unavailable_and_stores_nothing(private):
    org = private.org()
    entity_id = org.create_entity(org.create_library(), "Ada")
    before = private.db.fetchval("SELECT count(*) FROM entity_identifiers WHERE org_id = $1", org.id)
    private.stack.s3.stop()
    try:
        reply = org.client.upload_form(
            f'mutation {{ createEntityIdentifier(input: {{entityId: "{entity_id}", identifierTypeId: "face"}}) {{ id }} }}',
            png(1), "image/png",
        )
        spec = org.client.upload_spec(
            "mutation($input: CreateEntityIdentifier!) { createEntityIdentifier(input: $input) { id } }",
            {"input": {"entityId": entity_id, "identifierTypeId": "face", "file": None}}, {"input.file": (png(2), "image/png")},
        )
    finally:
        private.stack.s3.start()
    for r in (reply, spec):
        assert r.status < 500 and r.error_code == "service_unavailable", r.body
        assert r.data is None or r.data.get("createEntityIdentifier") is None
        assert_clean(r.body)
    assert private.db.fetchval("SELECT count(*) FROM entity_identifiers WHERE org_id = $1", org.id) == before
    # S3 is back: nothing of the failed uploads is there, and a new upload works.
    assert private.bucket.keys(f"{org.id}/") == set()
    identifier_id = org.add_identifier(entity_id, png(3))
    assert uuid.UUID(identifier_id)
    assert len(private.bucket.keys(f"{org.id}/")) == 1
    _no_row_points_at_a_missing_object(private, org)
