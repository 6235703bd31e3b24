"""Training jobs from createJob and publishLibrary, run by worker processes, read back as clients read them."""

from __future__ import annotations

import json

from tests.support.waits import wait_for, wait_job
from tests.worker.conftest import (
    SLEEPER,
    create_model,
    download,
    job,
    library_with_faces,
    model,
    seed,
)

SEED_ENGINE = "9f60a772-e8dd-480b-918e-5779d8eb02f0"
SEED_LIBRARY = "5943cafd-7eea-4913-9496-2afdea89f08b"
SEED_MODEL = "88540e51-6418-4b05-9349-4b2f4c230eb1"


def test_the_documented_manual_train_job_trains_the_model(org, start_worker):
    library_id = library_with_faces(org, people=2)
    model_id = create_model(org, library_id)
    text = seed("044").replace(SEED_ENGINE, SLEEPER).replace(SEED_LIBRARY, library_id).replace(SEED_MODEL, model_id)

    created = org.client.query(text).ok()["createJob"]
    [task] = created["tasks"]["records"]
    assert task["status"] == "queued"
    assert task["payload"] == {"mode": "library-train", "libraryId": library_id, "libraryEngineModelId": model_id}
    assert task["engine"]["id"] == SLEEPER
    queued = model(org, model_id)
    assert queued["trainStatus"] == "queued" and queued["trainJobId"] == created["id"]

    start_worker()
    done = wait_job(org, created["id"])
    assert done["status"] == "complete"
    [task] = done["tasks"]["records"]
    assert task["status"] == "complete"
    assert task["progress"] == 1.0
    assert task["attempts"] == 1
    assert task["startedDateTime"] and task["completedDateTime"] and task["startedDateTime"] <= task["completedDateTime"]
    assert task["duration"] is not None and task["duration"] >= 0
    assert task["output"]["libraryEngineModelId"] == model_id and task["output"]["identifiers"] == 2

    trained = model(org, model_id)
    assert trained["trainStatus"] == "complete"
    assert trained["contentType"] == "application/json"
    artifact = json.loads(download(trained["dataUrl"]))
    assert artifact["model"] == model_id and artifact["identifiers"] == 2
    assert trained["jsondata"]["identifiers"] == 2

    summary = org.client.query(
        "query($id: ID!) { library(id: $id) { summary { lastTrainedVersion lastTrainedDateTime } } }", id=library_id
    ).ok()["library"]["summary"]
    assert summary["lastTrainedVersion"] == trained["libraryVersion"] == 0
    assert summary["lastTrainedDateTime"] is not None

    # The documented job-details query reads the same task back.
    details = org.client.query(seed("048").replace("18104324_t5XpqlGOfm", created["id"])).ok()["job"]
    assert details["tasks"]["records"] == [
        {"id": task["id"], "status": "complete", "startedDateTime": task["startedDateTime"], "completedDateTime": task["completedDateTime"]}
    ]


ENGINE_MODELS = """query($id: ID!) { library(id: $id) { version
    engineModels(engineId: "test-sleeper") { records { id libraryVersion trainStatus trainJobId } } } }"""


def test_publishing_queues_a_new_model_per_compatible_engine_and_keeps_the_older_ones(org, start_worker):
    library_id = library_with_faces(org, people=1)
    org.client.query("mutation($id: ID!) { publishLibrary(id: $id) { version } }", id=library_id).ok()
    first = org.client.query(ENGINE_MODELS, id=library_id).ok()["library"]["engineModels"]["records"]
    assert len(first) == 1 and first[0]["libraryVersion"] == 1

    published = org.client.query("mutation($id: ID!) { publishLibrary(id: $id) { version } }", id=library_id).ok()
    assert published["publishLibrary"]["version"] == 2

    all_models = org.client.query(
        "query($id: ID!) { library(id: $id) { engineModels(libraryVersion: 2) { records { engineId trainStatus trainJobId } } } }",
        id=library_id,
    ).ok()["library"]["engineModels"]["records"]
    engines = {m["engineId"] for m in all_models}
    assert {SLEEPER, "engineshed-gallery", "engineshed-classifier"} <= engines
    assert len(all_models) == len(engines)  # one per engine per publish
    assert all(m["trainJobId"] for m in all_models)

    library = org.client.query(ENGINE_MODELS, id=library_id).ok()["library"]
    newest, older = library["engineModels"]["records"]
    assert (newest["libraryVersion"], older["libraryVersion"]) == (2, 1)  # newest first, history kept
    assert older["id"] == first[0]["id"]
    queued_job = job(org, newest["trainJobId"])
    [task] = queued_job["tasks"]["records"]
    assert task["engineId"] == SLEEPER
    assert task["payload"] == {"mode": "library-train", "libraryId": library_id, "libraryEngineModelId": newest["id"]}

    start_worker()
    wait_job(org, newest["trainJobId"], "complete")
    wait_job(org, older["trainJobId"], "complete")
    records = org.client.query(ENGINE_MODELS, id=library_id).ok()["library"]["engineModels"]["records"]
    assert [m["trainStatus"] for m in records] == ["complete", "complete"]
    summary = wait_for(
        lambda: org.client.query(
            "query($id: ID!) { library(id: $id) { summary { lastTrainedVersion } } }", id=library_id
        ).ok()["library"]["summary"],
        what="the library summary",
    )
    assert summary["lastTrainedVersion"] == 2
