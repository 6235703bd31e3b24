"""cancelJob, retryJob and deleteJob: what each does to the job, its tasks and the model being trained."""

from __future__ import annotations

from tests.support.waits import wait_for, wait_job
from tests.worker.conftest import job, model, sleeper_job, task_of

CANCEL = "mutation($id: ID!) { cancelJob(id: $id) { id message } }"
RETRY = "mutation($id: ID!) { retryJob(id: $id) { id status } }"
DELETE = "mutation($id: ID!) { deleteJob(id: $id) { id message } }"


def test_a_cancelled_queued_job_never_starts(org, start_worker):
    library_id = org.create_library()
    job_id, _, model_id = sleeper_job(org, library_id)

    cancelled = org.client.query(CANCEL, id=job_id).ok()["cancelJob"]
    assert cancelled["id"] == job_id
    read = job(org, job_id)
    assert read["status"] == "cancelled"
    assert [t["status"] for t in read["tasks"]["records"]] == ["cancelled"]
    assert model(org, model_id)["trainStatus"] == "failed"
    assert model(org, model_id)["jsondata"]["error"]

    # A worker that starts afterwards runs later work and leaves the cancelled task alone.
    later, _, _ = sleeper_job(org, library_id)
    start_worker()
    wait_job(org, later, "complete")
    task = task_of(org, job_id)
    assert task["status"] == "cancelled"
    assert task["startedDateTime"] is None and task["attempts"] == 0
    assert model(org, model_id)["trainStatus"] == "failed"


def test_a_running_job_is_cancelled_within_seconds(org, start_worker):
    library_id = org.create_library()
    job_id, task_id, model_id = sleeper_job(org, library_id, seconds=60, steps=60)
    worker = start_worker()
    wait_for(lambda: task_of(org, job_id)["progress"] > 0, what="the engine to report progress")
    assert model(org, model_id)["trainStatus"] == "running"

    org.client.query(CANCEL, id=job_id).ok()
    done = wait_job(org, job_id, timeout=30)
    assert done["status"] == "cancelled"
    task = done["tasks"]["records"][0]
    assert task["status"] == "cancelled" and task["completedDateTime"] is not None
    assert task["progress"] < 1.0
    trained = model(org, model_id)
    assert trained["trainStatus"] == "failed"
    assert trained["dataUrl"] is None
    assert "cancelled" in trained["jsondata"]["error"]
    wait_for(lambda: f"task {task_id}" in worker.output() and "cancelled" in worker.output(), what="the worker's log to say so")
    assert worker.alive()


def test_cancel_and_delete_in_the_wrong_state_say_why(org, start_worker):
    library_id = org.create_library()
    queued_job, _, _ = sleeper_job(org, library_id)

    refused = org.client.query(DELETE, id=queued_job)
    assert refused.error_code == "not_allowed"  # the job's state does not allow it, as for cancel
    assert "only finished jobs can be deleted" in refused.error_message
    assert job(org, queued_job)["status"] == "queued"

    start_worker()
    wait_job(org, queued_job, "complete")
    refused = org.client.query(CANCEL, id=queued_job)
    assert refused.error_code == "not_allowed"  # Vertex: cancel raises unless the job is running
    assert "cannot be cancelled" in refused.error_message
    refused = org.client.query(RETRY, id=queued_job)
    assert refused.error_code == "not_allowed"
    assert "only failed jobs can be retried" in refused.error_message
    assert job(org, queued_job)["status"] == "complete"


def test_a_finished_job_is_deleted(org, other_org):
    library_id = org.create_library()
    job_id, _, model_id = sleeper_job(org, library_id)
    org.client.query(CANCEL, id=job_id).ok()

    assert other_org.client.query(DELETE, id=job_id).error_code == "not_found"
    deleted = org.client.query(DELETE, id=job_id).ok()["deleteJob"]
    assert deleted["id"] == job_id
    assert org.client.query("query($id: ID!) { job(id: $id) { id } }", id=job_id).error_code == "not_found"
    assert org.client.query("{ jobs { count } }").ok()["jobs"]["count"] == 0
    assert model(org, model_id)["trainStatus"] == "failed"  # the model stays as history


def test_a_failed_job_is_retried_from_scratch(org, start_worker):
    library_id = org.create_library()
    job_id, _, model_id = sleeper_job(org, library_id, fail="engine")
    start_worker()
    failed = wait_job(org, job_id)
    assert failed["status"] == "failed"
    first_completed = failed["tasks"]["records"][0]["completedDateTime"]

    retried = org.client.query(RETRY, id=job_id).ok()["retryJob"]
    assert retried["status"] in ("queued", "running", "failed")
    again = wait_for(
        lambda: (lambda j: j if j["status"] == "failed" and j["tasks"]["records"][0]["completedDateTime"] != first_completed else None)(
            job(org, job_id)
        ),
        what="the retried job to fail again",
    )
    task = again["tasks"]["records"][0]
    assert task["attempts"] == 1  # attempts start again from zero
    assert model(org, model_id)["trainStatus"] == "failed"


def test_deleting_a_library_cancels_its_queued_training_jobs(org):
    library_id = org.create_library()
    job_id, task_id, _model_id = sleeper_job(org, library_id, seconds=5)  # no worker: it stays queued

    org.client.query("mutation($id: ID!) { deleteLibrary(id: $id) { id } }", id=library_id).ok()

    done = org.client.query("query($id: ID!) { job(id: $id) { status tasks { records { id status } } } }", id=job_id).ok()
    assert done["job"]["status"] == "cancelled"
    assert done["job"]["tasks"]["records"] == [{"id": task_id, "status": "cancelled"}]
