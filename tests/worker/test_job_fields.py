"""Jobs as Vertex's training jobs have them (issue #15): display names, labels (and their rules), a label
filter and ordering, done/progress/times/error, a bounded wait, and cancel refused once a job finished."""

from __future__ import annotations

import pytest

from tests.worker.conftest import SLEEPER, count_jobs, create_model, library_with_faces

FIELDS = "id status displayName labels done progress startedDateTime completedDateTime error outputModel { id trainStatus }"
CREATE = f"mutation($t: [CreateTask!], $d: String, $l: JSONData) {{ createJob(input: {{tasks: $t, displayName: $d, labels: $l}}) {{ {FIELDS} }} }}"


def _tasks(library_id: str, model_id: str, **config) -> list[dict]:
    payload = {"mode": "library-train", "libraryId": library_id, "libraryEngineModelId": model_id}
    if config:
        payload["config"] = config
    return [{"engineId": SLEEPER, "payload": payload}]


def _create(org, library_id: str, display_name: str | None = None, labels: dict | None = None, **config):
    model_id = create_model(org, library_id)
    return org.client.query(CREATE, t=_tasks(library_id, model_id, **config), d=display_name, l=labels)


def _job(org, job_id: str, wait: int | None = None) -> dict:
    if wait is None:
        return org.client.query(f"query($id: ID!) {{ job(id: $id) {{ {FIELDS} }} }}", id=job_id).ok()["job"]
    return org.client.query(f"query($id: ID!, $w: Int) {{ job(id: $id, waitSeconds: $w) {{ {FIELDS} }} }}",
                            id=job_id, w=wait).ok()["job"]


def test_display_name_and_labels_are_kept_filtered_and_ordered(org):
    library_id = library_with_faces(org)
    a = _create(org, library_id, "bravo run", {"team": "vision", "stage": "dev"}).ok()["createJob"]
    b = _create(org, library_id, "alpha run", {"team": "vision", "stage": "prod"}).ok()["createJob"]
    c = _create(org, library_id, None, None).ok()["createJob"]
    assert (a["displayName"], a["labels"]) == ("bravo run", {"team": "vision", "stage": "dev"})
    assert (c["displayName"], c["labels"]) == (None, {})
    assert a["done"] is False and a["progress"] == 0.0 and a["startedDateTime"] is None and a["error"] is None
    assert a["outputModel"]["trainStatus"] == "queued"

    listed = "query($l: JSONData, $o: [JobSortField!]) { jobs(labels: $l, orderBy: $o) { totalCount records { id } } }"
    both = org.client.query(listed, l={"team": "vision"}, o=[{"field": "displayName", "direction": "asc"}]).ok()["jobs"]
    assert [r["id"] for r in both["records"]] == [b["id"], a["id"]] and both["totalCount"] == 2
    prod = org.client.query(listed, l={"team": "vision", "stage": "prod"}).ok()["jobs"]
    assert [r["id"] for r in prod["records"]] == [b["id"]]
    assert org.client.query(listed, l={"team": "audio"}).ok()["jobs"]["totalCount"] == 0
    everything = org.client.query(listed).ok()["jobs"]
    assert {a["id"], b["id"], c["id"]} <= {r["id"] for r in everything["records"]}


BAD_LABELS = [
    ({"Team": "x"}, "'Team'"),  # uppercase key
    ({"1team": "x"}, "'1team'"),  # key not starting with a letter
    ({"-team": "x"}, "'-team'"),
    ({"team": "Vision"}, "'team'"),  # uppercase value
    ({"team": "a b"}, "'team'"),  # space
    ({"team.name": "x"}, "'team.name'"),
    ({"k" * 65: "x"}, "longer than 64"),
    ({"team": "v" * 65}, "longer than 64"),
    ({"team": 3}, "must be a string"),
    ({"équipe": "x"}, "'équipe'"),  # international characters: refused here (see gateway/services/access/job_labels.py)
    ({f"k{i}": "v" for i in range(65)}, "at most 64 labels"),
]


@pytest.mark.parametrize(("labels", "named"), BAD_LABELS)
def test_each_label_rule_is_invalid_input_naming_the_label_and_writes_nothing(org, labels, named):
    library_id = library_with_faces(org)
    before = count_jobs(org)
    reply = _create(org, library_id, "x", labels)
    assert reply.error_code == "invalid_input", reply.body
    assert named in reply.error_message, reply.error_message
    assert count_jobs(org) == before
    # The same rules hold for the filter.
    filtered = org.client.query("query($l: JSONData) { jobs(labels: $l) { count } }", l=labels)
    assert filtered.error_code == "invalid_input" and named in filtered.error_message


def test_the_longest_allowed_labels_pass(org):
    library_id = library_with_faces(org)
    labels = {f"k{i}": "" for i in range(63)} | {"a" * 64: "z_-9" * 16}
    assert _create(org, library_id, "x" * 128, labels).ok()["createJob"]["labels"] == labels
    assert _create(org, library_id, "x" * 129, None).error_code == "invalid_input"


def test_wait_returns_when_the_job_is_done_with_progress_times_and_model(org, start_worker):
    library_id = library_with_faces(org)
    created = _create(org, library_id, "waited", None, seconds=1.0, steps=4).ok()["createJob"]
    start_worker()
    done = _job(org, created["id"], wait=60)
    assert done["status"] == "complete" and done["done"] is True, done
    assert done["progress"] == 1.0 and done["error"] is None
    assert done["startedDateTime"] and done["completedDateTime"] and done["completedDateTime"] >= done["startedDateTime"]
    assert done["outputModel"]["trainStatus"] == "complete"
    refused = org.client.query('mutation($id: ID!) { cancelJob(id: $id) { id } }', id=created["id"])
    assert refused.error_code == "not_allowed" and "cannot be cancelled" in refused.error_message


def test_wait_gives_up_when_the_wait_runs_out_and_is_bounded(org):
    library_id = library_with_faces(org)
    created = _create(org, library_id).ok()["createJob"]  # no worker: it stays queued
    waited = _job(org, created["id"], wait=1)
    assert waited["status"] == "queued" and waited["done"] is False and waited["completedDateTime"] is None
    for bad in (61, -1):
        reply = org.client.query("query($id: ID!, $w: Int) { job(id: $id, waitSeconds: $w) { id } }", id=created["id"], w=bad)
        assert reply.error_code == "invalid_input" and "waitSeconds" in reply.error_message
    made_up = org.client.query('query { job(id: "6d1e1a6c-0000-4000-8000-000000000000", waitSeconds: 5) { id } }')
    assert made_up.error_code == "not_found"


def test_a_failed_job_says_why_and_a_cancelled_one_says_so(org, start_worker):
    library_id = library_with_faces(org)
    failed = _create(org, library_id, None, None, fail="engine").ok()["createJob"]
    start_worker()
    result = _job(org, failed["id"], wait=60)
    assert result["status"] == "failed" and result["done"] is True
    assert "the sleeper was asked to fail" in result["error"]
    assert result["completedDateTime"] is not None

    running = _create(org, library_id, None, None, seconds=60, steps=60).ok()["createJob"]
    cancel = org.client.query('mutation($id: ID!) { cancelJob(id: $id) { id } }', id=running["id"])
    assert not cancel.errors, cancel.body
    cancelled = _job(org, running["id"], wait=60)
    assert cancelled["status"] == "cancelled" and cancelled["done"] is True and cancelled["error"] == "the job was cancelled"


def test_trainings_completing_at_once_on_two_workers_leave_exactly_one_default(org, start_worker):
    """Promotion is decided under a (library, engine) lock, so several gateways and workers finishing trainings
    of one library at the same moment leave one default, and every model completes."""
    library_id = library_with_faces(org)
    created = [_create(org, library_id, None, None, seconds=0.5, steps=1).ok()["createJob"] for _ in range(4)]
    start_worker(), start_worker()
    for job in created:
        assert _job(org, job["id"], wait=60)["status"] == "complete"
    models = org.client.query(
        'query($l: ID!) { library(id: $l) { engineModels { records { id trainStatus isDefault promotion } } } }', l=library_id,
    ).ok()["library"]["engineModels"]["records"]
    assert len(models) == 4 and all(m["trainStatus"] == "complete" for m in models)
    assert sum(m["isDefault"] for m in models) == 1
    assert all(m["promotion"] is not None for m in models)
