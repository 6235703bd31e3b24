"""createJob refuses library tasks that upstream refuses, and creates nothing when it does."""

from __future__ import annotations

import uuid

import pytest

from tests.worker.conftest import SLEEPER, count_jobs, create_model, model

CREATE_JOB = "mutation($t: [CreateTask!]) { createJob(input: {tasks: $t}) { id } }"


def create(org, engine_id, payload):
    return org.client.query(CREATE_JOB, t=[{"engineId": engine_id, "payload": payload}])


def train(library_id, model_id=None):
    payload = {"mode": "library-train", "libraryId": library_id}
    if model_id is not None:
        payload["libraryEngineModelId"] = model_id
    return payload


def test_a_train_task_without_a_model_id_is_refused(org):
    library_id = org.create_library()
    reply = create(org, SLEEPER, train(library_id))
    assert reply.error_code == "invalid_input"
    assert "libraryEngineModelId is required" in reply.error_message
    assert count_jobs(org) == 0


def test_a_model_id_that_does_not_exist_is_not_found(org):
    library_id = org.create_library()
    reply = create(org, SLEEPER, train(library_id, str(uuid.uuid4())))
    assert reply.error_code == "not_found"
    assert count_jobs(org) == 0


def test_a_model_of_another_engine_is_refused_and_left_as_it_was(org):
    library_id = org.create_library()
    gallery_model = create_model(org, library_id, engine_id="engineshed-gallery")
    reply = create(org, SLEEPER, train(library_id, gallery_model))
    assert reply.error_code == "invalid_input"
    assert "does not belong to engine" in reply.error_message
    assert count_jobs(org) == 0
    assert model(org, gallery_model)["trainStatus"] == "pending"
    assert model(org, gallery_model)["trainJobId"] is None


def test_a_mode_the_engine_does_not_take_is_refused(org):
    library_id = org.create_library()
    model_id = create_model(org, library_id)
    reply = create(org, SLEEPER, {"mode": "library-run", "libraryId": library_id, "libraryEngineModelId": model_id, "url": "https://example.com/a.jpg"})
    assert reply.error_code == "invalid_input"
    assert "does not support mode" in reply.error_message

    engine_id = f"no-library-{uuid.uuid4().hex[:8]}"
    org.client.query(
        "mutation($id: ID!) { createEngine(input: {id: $id, identifierTypeIds: [\"face\"], modes: [\"library-run\"], libraryRequired: false}) { id } }",
        id=engine_id,
    ).ok()
    reply = create(org, engine_id, train(library_id, model_id))
    assert reply.error_code == "invalid_input"
    assert "does not use libraries" in reply.error_message
    assert count_jobs(org) == 0


@pytest.mark.parametrize("whose", ["library", "model"])
def test_another_organizations_library_or_model_is_not_found(org, other_org, whose):
    mine = org.create_library()
    my_model = create_model(org, mine)
    theirs = other_org.create_library()
    their_model = create_model(other_org, theirs)
    payload = train(theirs, their_model) if whose == "library" else train(mine, their_model)

    reply = create(org, SLEEPER, payload)
    assert reply.error_code == "not_found"
    assert count_jobs(org) == 0 and count_jobs(other_org) == 0
    assert model(other_org, their_model)["trainStatus"] == "pending"
    assert model(org, my_model)["trainStatus"] == "pending"


def test_one_bad_task_refuses_the_whole_job(org):
    library_id = org.create_library()
    good = create_model(org, library_id)
    reply = org.client.query(
        CREATE_JOB,
        t=[{"engineId": SLEEPER, "payload": train(library_id, good)}, {"engineId": SLEEPER, "payload": train(library_id)}],
    )
    assert reply.error_code == "invalid_input"
    assert count_jobs(org) == 0
    assert model(org, good)["trainStatus"] == "pending"


ADAPTER = "9e611ad7-2d3b-48f6-a51b-0a1ba40feab4"  # upstream's Webstream Adapter, as the tutorial's job names it


@pytest.mark.parametrize(("tasks", "fragment"), [
    ([{"engineId": ADAPTER, "payload": {}}], "needs payload.url"),
    ([{"engineId": ADAPTER, "payload": {"url": "ftp://example.com/a.jpg"}}], "tasks[0].payload.url"),
    ([{"engineId": ADAPTER, "payload": {"url": "https://example.com/a.jpg"}},
      {"engineId": ADAPTER, "payload": {"url": "https://example.com/b.jpg"}}], "different media"),
])
def test_a_media_adapter_task_needs_one_usable_url(org, tasks, fragment):
    reply = org.client.query("mutation($t: [CreateTask!]) { createJob(input: {tasks: $t}) { id } }", t=tasks)
    assert reply.error_code == "invalid_input" and fragment in reply.error_message, reply.errors
    assert count_jobs(org) == 0


def test_a_library_run_task_takes_the_adapters_media_and_the_adapter_task_is_done_at_once(org):
    library_id = org.create_library()
    model_id = create_model(org, library_id, engine_id="engineshed-gallery")
    org.client.query("mutation($id: ID!) { updateLibraryEngineModel(input: {id: $id, trainStatus: complete}) { id } }", id=model_id).ok()
    job = org.client.query(
        "mutation($t: [CreateTask!]) { createJob(input: {tasks: $t}) { id status tasks { records { status payload } } } }",
        t=[{"engineId": ADAPTER, "payload": {"url": "https://example.com/a.jpg"}},
           {"engineId": "engineshed-gallery", "payload": {"mode": "library-run", "libraryId": library_id, "libraryEngineModelId": model_id}}],
    ).ok()["createJob"]
    adapter, run = job["tasks"]["records"]
    assert adapter["status"] == "complete" and run["status"] == "queued"
    assert run["payload"]["url"] == "https://example.com/a.jpg"
    # Upstream's forms: the adapter's payload as payloadString, and a library task that names no mode.
    job = org.client.query(
        "mutation($t: [CreateTask!]) { createJob(input: {tasks: $t}) { tasks { records { status payload } } } }",
        t=[{"engineId": ADAPTER, "payloadString": '{"url": "https://example.com/b.jpg"}'},
           {"engineId": "engineshed-gallery", "payload": {"libraryId": library_id, "libraryEngineModelId": model_id}}],
    ).ok()["createJob"]
    run = job["tasks"]["records"][1]
    assert run["payload"]["url"] == "https://example.com/b.jpg" and run["payload"]["mode"] == "library-run"
