"""Reading jobs and tasks back: job(id), task(id), jobs newest first with paging and status filters."""

from __future__ import annotations

from tests.support.waits import wait_task
from tests.worker.conftest import job, seed, sleeper_job


def test_jobs_are_listed_newest_first_and_paged(org):
    library_id = org.create_library()
    created = [sleeper_job(org, library_id)[0] for _ in range(5)]

    everything = org.client.query("{ jobs { count totalCount records { id status } } }").ok()["jobs"]
    assert [j["id"] for j in everything["records"]] == created[::-1]
    assert everything["count"] == everything["totalCount"] == 5
    assert {j["status"] for j in everything["records"]} == {"queued"}

    # The documented paging query: count is the size of this page; clients page until a short page.
    text = seed("054")
    first = org.client.query(text).ok()["jobs"]
    assert (first["offset"], first["limit"], first["count"]) == (0, 3, 3)
    assert [j["id"] for j in first["records"]] == created[:1:-1]
    assert all(j["tasks"]["count"] == 1 and j["tasks"]["limit"] == 3 for j in first["records"])
    second = org.client.query(text.replace("jobs (offset: 0 limit: 3)", "jobs (offset: 3 limit: 3)")).ok()["jobs"]
    assert second["count"] == 2
    assert [j["id"] for j in second["records"]] == created[1::-1]


def test_a_single_status_is_accepted_for_the_status_list(org, start_worker):
    library_id = org.create_library()
    # The engine runs two at a time across the fleet: the third job waits in the queue.
    first, second, third = (sleeper_job(org, library_id, seconds=60)[0] for _ in range(3))
    start_worker()
    wait_task(org, first, "running")
    wait_task(org, second, "running")

    running = org.client.query(seed("051")).ok()["jobs"]  # jobs(status: running, limit: 50)
    assert [j["id"] for j in running["records"]] == [second, first]
    assert running["count"] == 2
    assert running["records"][0]["tasks"]["records"][0]["payload"]["mode"] == "library-train"
    queued = org.client.query("{ jobs(status: queued) { records { id } } }").ok()["jobs"]["records"]
    assert [j["id"] for j in queued] == [third]
    both = org.client.query("{ jobs(status: [queued, running]) { records { id } } }").ok()["jobs"]["records"]
    assert [j["id"] for j in both] == [third, second, first]
    assert org.client.query("{ jobs(status: complete) { count } }").ok()["jobs"]["count"] == 0


def test_a_job_and_a_task_are_read_by_id_and_other_organizations_see_neither(org, other_org):
    library_id = org.create_library()
    job_id, task_id, model_id = sleeper_job(org, library_id, seconds=1)

    read = job(org, job_id)
    assert read["id"] == job_id and read["status"] == "queued"
    assert read["createdDateTime"].endswith("Z")
    task = org.client.query(
        "query($id: ID!) { task(id: $id) { id jobId engineId status payload taskPayload queuedDateTime startedDateTime } }", id=task_id
    ).ok()["task"]
    assert task["jobId"] == job_id and task["engineId"] == "test-sleeper" and task["status"] == "queued"
    assert task["payload"] == task["taskPayload"] == {
        "mode": "library-train", "libraryId": library_id, "libraryEngineModelId": model_id, "config": {"seconds": 1},
    }
    assert task["queuedDateTime"] is not None and task["startedDateTime"] is None

    assert other_org.client.query("query($id: ID!) { job(id: $id) { id } }", id=job_id).error_code == "not_found"
    assert other_org.client.query("query($id: ID!) { task(id: $id) { id } }", id=task_id).error_code == "not_found"
    assert other_org.client.query("{ jobs { count } }").ok()["jobs"]["count"] == 0



def test_a_page_of_tasks_past_a_jobs_end_still_reports_its_total(org):
    library_id = org.create_library()
    for _ in range(2):
        sleeper_job(org, library_id)
    reply = org.client.query(
        "query($l: ID) { jobs(libraryId: $l) { count records { tasks(offset: 1) { count totalCount records { id } } } } }",
        l=library_id,
    ).ok()
    assert reply["jobs"]["count"] == 2
    assert [r["tasks"] for r in reply["jobs"]["records"]] == [{"count": 0, "totalCount": 1, "records": []}] * 2
