"""#14 through the client: LayerNext's auto-tagging (seed 002, 7.2 - 7.3), hard examples, grouping, suggestions, and
ModelArts' intelligent tasks over REST (seed 004).

NEEDS the `labeling` branch (autoTag, findHardExamples, autoGroup, suggestions, unassigned identifiers, REST /v2
tasks): it passes once the lead has merged it.
"""

from __future__ import annotations

import pytest

from engineshed.client import AuthenticationError, Client, NotFoundError
from tests.client.future import TAGGER, TAGS, image_library, register_tagger


@pytest.fixture
def client(org):
    with Client(org.gateway.url, org.token) as c:
        yield c


def test_auto_tag_collection_suggests_the_models_labels_and_they_are_accepted_or_rejected(client, start_worker, tmp_path):
    start_worker()
    register_tagger(client, tmp_path)
    library, made = image_library(client, "unsorted", 3, assigned=False)
    job = client.auto_tag_collection(library["id"], TAGGER, (32, 32), 0.0, None, {"annotation_types": ["raw"]}, "local")
    assert client.wait_for_job(job["id"], timeout=120)["status"] == "complete"
    suggestions = client.suggestions(job_id=job["id"], limit=100)["records"]
    assert {s["identifierId"] for s in suggestions} == {i["id"] for i in made}
    assert all(s["label"] in TAGS and 0.0 <= s["confidence"] <= 1.0 and s["status"] == "pending" for s in suggestions)
    accepted = client.accept_suggestions([suggestions[0]["id"]])
    assert accepted[0]["status"] == "accepted"
    rejected = client.reject_suggestions([suggestions[1]["id"]])
    assert rejected[0]["status"] == "rejected"
    assert client.suggestions(job_id=job["id"], status="pending")["totalCount"] == len(suggestions) - 2


def test_generate_auto_tags_to_metalake_tags_every_image_library(client, start_worker, tmp_path):
    start_worker()
    register_tagger(client, tmp_path)
    first, _ = image_library(client, "a", 1, assigned=False, seed=1)
    second, _ = image_library(client, "b", 1, assigned=False, seed=2)
    job = client.generate_auto_tags_to_metalake("image", TAGGER, confidence_threshold=0.0)
    assert client.wait_for_job(job["id"], timeout=120)["status"] == "complete"
    for library in (first, second):
        assert client.suggestions(library_id=library["id"])["totalCount"] >= 1


def test_hard_examples_and_grouping_run_as_jobs(client, start_worker, tmp_path):
    start_worker()
    register_tagger(client, tmp_path)
    library, _ = image_library(client, "hard", 4, assigned=False, seed=3)
    hard = client.find_hard_examples(library["id"], model_id=TAGGER, confidence_scope="0.00-1.00")
    assert client.wait_for_job(hard["id"], timeout=120)["status"] == "complete"
    grouped = client.auto_group(library["id"], n_clusters=2, feature="brightness")
    assert client.wait_for_job(grouped["id"], timeout=120)["status"] == "complete"


def test_intelligent_tasks_over_rest_start_a_job_and_report_it(client, org, other_org, start_worker, tmp_path):
    start_worker()
    register_tagger(client, tmp_path)
    library, _ = image_library(client, "modelarts", 2, assigned=False, seed=4)
    task_id = client.start_intelligent_task(library["id"], "pre-label", model_id=TAGGER, collect_key_sample=True)
    assert client.job(task_id)["id"] == task_id  # the task is the job
    status = client.get_intelligent_task(library["id"], task_id)
    assert isinstance(status, dict) and status
    with pytest.raises(NotFoundError):
        client.start_intelligent_task("00000000-0000-0000-0000-000000000004", "pre-label", model_id=TAGGER)
    with Client(other_org.gateway.url, other_org.token) as stranger, pytest.raises(NotFoundError):
        stranger.get_intelligent_task(library["id"], task_id)
    with Client(org.gateway.url, "wrong") as wrong, pytest.raises(AuthenticationError):
        wrong.start_intelligent_task(library["id"], "pre-label", project_id=str(org.id))
