"""An engine that runs elsewhere, driven only through GraphQL: it claims its tasks with an engine token and
trains with the task token each claim hands out, which reaches its library and its model and nothing else."""

from __future__ import annotations

import os
import uuid

from tests.worker.conftest import create_model, create_train_job, download, job, library_with_faces, model, seed

SEED_MODEL_ID = "4ae6d34d-8f4a-4e4e-aefa-12964cbf29c9"
CLAIM = """mutation($e: ID!, $n: Int) { claimTasks(engineId: $e, limit: $n) {
    token leaseExpiresDateTime task { id jobId engineId status payload attempts } } }"""
LIBRARY = """query($id: ID!) { library(id: $id) { id
    entities(limit: 10) { count records { id name identifiers(limit: 10) { records { id identifierTypeId url contentType } } } } } }"""


def create_engine(org, concurrency_limit=2):
    engine_id = f"external-{uuid.uuid4().hex[:10]}"
    created = org.client.query(
        """mutation($id: ID!, $n: Int) { createEngine(input: {id: $id, identifierTypeIds: ["face"], modes: ["library-train"],
            concurrencyLimit: $n}) { id libraryRequired modes concurrencyLimit builtin } }""",
        id=engine_id, n=concurrency_limit,
    ).ok()["createEngine"]
    assert created == {"id": engine_id, "libraryRequired": True, "modes": ["library-train"], "concurrencyLimit": concurrency_limit, "builtin": False}
    return engine_id


def test_an_external_engine_trains_a_model_through_graphql_alone(org):
    engine_id = create_engine(org)
    engine = org.client_for("engine", engine_id)
    library_id = library_with_faces(org, people=2)
    other_library = library_with_faces(org, people=1, name="others")
    model_id = create_model(org, library_id, engine_id)
    other_model = create_model(org, other_library, engine_id)
    job_id = create_train_job(org, library_id, model_id, engine_id)["id"]

    [claimed] = engine.query(CLAIM, e=engine_id, n=5).ok()["claimTasks"]
    assert claimed["task"]["jobId"] == job_id and claimed["task"]["status"] == "running"
    assert claimed["task"]["payload"]["libraryEngineModelId"] == model_id
    assert claimed["leaseExpiresDateTime"]
    task_id = claimed["task"]["id"]
    assert engine.query(CLAIM, e=engine_id, n=5).ok()["claimTasks"] == []  # nothing else queued

    worker = engine.with_token(claimed["token"])
    try:
        # Reads its own library, page by page, with the identifiers' content...
        library = worker.query(LIBRARY, id=library_id).ok()["library"]
        assert library["entities"]["count"] == 2
        identifiers = [i for e in library["entities"]["records"] for i in e["identifiers"]["records"]]
        assert len(identifiers) == 2 and all(i["identifierTypeId"] == "face" and i["url"] for i in identifiers)
        assert all(download(i["url"]).startswith(b"\x89PNG") for i in identifiers)
        # ...and nothing else.
        assert worker.query(LIBRARY, id=other_library).error_code == "not_found"
        assert worker.query(seed("039").replace(SEED_MODEL_ID, other_model)).error_code == "not_found"

        running = worker.query(seed("039").replace(SEED_MODEL_ID, model_id)).ok()["updateLibraryEngineModel"]
        assert running["trainStatus"] == "running"
        beat = worker.query(
            "mutation($id: ID!) { heartbeatTask(id: $id, progress: 0.5, message: \"half way\") { cancelRequested task { progress progressMessage } } }",
            id=task_id,
        ).ok()["heartbeatTask"]
        assert beat == {"cancelRequested": False, "task": {"progress": 0.5, "progressMessage": "half way"}}
        assert job(org, job_id)["tasks"]["records"][0]["progress"] == 0.5

        blob = os.urandom(5000)
        saved = worker.upload_form(seed("042").replace(SEED_MODEL_ID, model_id), blob, "application/octet-stream").ok()
        assert saved["updateLibraryEngineModel"]["trainStatus"] == "complete"
        done = worker.query(
            "mutation($id: ID!) { completeTask(id: $id, output: {fingerprints: 3}) { id status output } }", id=task_id
        ).ok()["completeTask"]
        assert done == {"id": task_id, "status": "complete", "output": {"fingerprints": 3}}

        # Its task is over: the task token no longer works.
        assert worker.query(LIBRARY, id=library_id).status == 401
    finally:
        worker.close()

    assert job(org, job_id)["status"] == "complete"
    trained = model(org, model_id)
    assert trained["trainStatus"] == "complete"
    assert trained["jsondata"] == {"fingerprints": 3, "contentType": "application/octet-stream"}
    assert download(trained["dataUrl"]) == blob
    assert model(org, other_model)["trainStatus"] == "pending"


def test_only_the_engines_own_token_can_claim_its_tasks(org, other_org):
    engine_id = create_engine(org)
    library_id = org.create_library()
    job_id = create_train_job(org, library_id, create_model(org, library_id, engine_id), engine_id)["id"]

    admin = org.client.query(CLAIM, e=engine_id, n=1)
    assert admin.error_code == "not_allowed"
    wrong_engine = org.client_for("engine", "test-sleeper").query(CLAIM, e=engine_id, n=1)
    assert wrong_engine.error_code == "not_allowed"
    other_tenant = other_org.client_for("engine", engine_id).query(CLAIM, e=engine_id, n=1)
    assert other_tenant.error_code == "not_found"
    assert job(org, job_id)["status"] == "queued"


def test_claims_respect_the_engines_concurrency_limit(org):
    engine_id = create_engine(org, concurrency_limit=2)
    engine = org.client_for("engine", engine_id)
    library_id = org.create_library()
    job_ids = [create_train_job(org, library_id, create_model(org, library_id, engine_id), engine_id)["id"] for _ in range(3)]

    first = engine.query(CLAIM, e=engine_id, n=5).ok()["claimTasks"]
    assert len(first) == 2
    assert engine.query(CLAIM, e=engine_id, n=5).ok()["claimTasks"] == []

    # Finishing one frees a slot for the third.
    engine.query("mutation($id: ID!) { completeTask(id: $id) { status } }", id=first[0]["task"]["id"]).ok()
    [third] = engine.query(CLAIM, e=engine_id, n=5).ok()["claimTasks"]
    assert third["task"]["jobId"] not in {c["task"]["jobId"] for c in first}
    failed = engine.query(
        "mutation($id: ID!) { failTask(id: $id, failureReason: \"other\", failureMessage: \"no faces\", retry: false) { status failureMessage } }",
        id=third["task"]["id"],
    ).ok()["failTask"]
    assert failed == {"status": "failed", "failureMessage": "no faces"}
    assert sorted(job(org, j)["status"] for j in job_ids) == ["complete", "failed", "running"]
    # Reporting on a task that is over is refused for what it is: the task's state, not the input.
    for report in ("completeTask(id: $id) { status }", "heartbeatTask(id: $id, progress: 0.5) { cancelRequested }",
                   'failTask(id: $id, failureReason: "other") { status }'):
        again = engine.query(f"mutation($id: ID!) {{ {report} }}", id=first[0]["task"]["id"])
        assert again.error_code == "not_allowed" and "is already complete" in again.error_message, again.errors


def test_an_engine_token_for_a_built_in_engine_claims_no_other_organizations_work(org, other_org):
    library_id = other_org.create_library()
    their_job = create_train_job(other_org, library_id, create_model(other_org, library_id))["id"]

    reply = org.client_for("engine", "test-sleeper").query(CLAIM, e="test-sleeper", n=5)
    assert reply.error_code in ("not_allowed", "not_found")
    assert job(other_org, their_job)["status"] == "queued"


def test_an_external_engine_acknowledges_a_cancellation_by_failing_its_task(org):
    engine_id = create_engine(org)
    engine = org.client_for("engine", engine_id)
    library_id = org.create_library()
    model_id = create_model(org, library_id, engine_id)
    job_id = create_train_job(org, library_id, model_id, engine_id)["id"]
    [claimed] = engine.query(CLAIM, e=engine_id, n=1).ok()["claimTasks"]
    task_id = claimed["task"]["id"]

    org.client.query("mutation($id: ID!) { cancelJob(id: $id) { id } }", id=job_id).ok()
    beat = engine.query("mutation($id: ID!) { heartbeatTask(id: $id, progress: 0.2) { cancelRequested } }", id=task_id).ok()
    assert beat["heartbeatTask"]["cancelRequested"] is True

    stopped = engine.query(
        'mutation($id: ID!) { failTask(id: $id, failureReason: "other", failureMessage: "stopped on request", retry: true) { status } }',
        id=task_id,
    ).ok()["failTask"]
    assert stopped["status"] == "cancelled"
    assert job(org, job_id)["status"] == "cancelled"
    assert model(org, model_id)["trainStatus"] == "failed"
