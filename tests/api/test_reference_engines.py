"""Engines and engine categories with the reference schema's fields, filters and sorting."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

SLEEPER = "test-sleeper"


def engines(client, args: str = "", fields: str = "id", **variables):
    reply = client.query(f"query{variables and '(' + ', '.join(f'${k}: {v[0]}' for k, v in variables.items()) + ')' or ''} "
                         f"{{ engines({args}) {{ totalCount records {{ {fields} }} }} }}",
                         **{k: v[1] for k, v in variables.items()})
    return reply


def ids(reply) -> list[str]:
    return [e["id"] for e in reply.ok()["engines"]["records"]]


@pytest.fixture
def external(org):
    engine_id = f"ext-{uuid.uuid4().hex[:8]}"
    org.client.query(
        "mutation($id: ID!) { createEngine(input: {id: $id, name: \"Outside\", categoryId: \"outside-vision\", "
        "identifierTypeIds: [\"face\"], description: \"Runs on our own GPUs\"}) { id } }", id=engine_id).ok()
    return engine_id


def test_installed_and_external_engines_describe_themselves_as_upstream_names_it(org, external):
    fields = ("id name displayName description ownerOrganizationId ownerOrganization { id name } isPublic applicationId "
              "createsTDO state deploymentModel mode runtimeType libraryRequired validStateActions")
    reply = engines(org.client, "limit: 100", fields).ok()["engines"]["records"]
    found = {e["id"]: e for e in reply}
    sleeper, outside = found[SLEEPER], found[external]
    assert sleeper["displayName"] == sleeper["name"] == "Sleeper (test engine)"
    assert sleeper["isPublic"] is True and sleeper["ownerOrganization"] is None and sleeper["applicationId"] is None
    assert sleeper["ownerOrganizationId"] == "00000000-0000-0000-0000-000000000000"
    assert (sleeper["runtimeType"], sleeper["deploymentModel"], sleeper["mode"]) == ("worker", "MostlyNetworkIsolated", "Batch")
    assert sleeper["createsTDO"] is False and sleeper["state"] == "active" and sleeper["validStateActions"] == []
    assert outside["description"] == "Runs on our own GPUs"
    assert outside["ownerOrganizationId"] == outside["applicationId"] == str(org.id)
    assert outside["ownerOrganization"] == {"id": str(org.id), "name": org.name}
    assert (outside["isPublic"], outside["runtimeType"], outside["deploymentModel"]) == (False, "external", None)


def test_an_installed_engines_description_is_its_docstring_summary(org):
    # The gallery is this package's own entry point: a gateway without it is broken, not differently configured.
    gallery = org.client.query('{ engine(id: "engineshed-gallery") { description } }').ok()
    assert gallery["engine"]["description"].startswith("Recognises an image")


def test_engine_fields_describe_the_config_keys_a_task_payload_takes(org):
    fields = org.client.query(
        '{ engine(id: "test-sleeper") { fields { name label type min max step defaultValue info options { key value } } } }'
    ).ok()["engine"]["fields"]
    by_name = {f["name"]: f for f in fields}
    assert by_name["seconds"] == {"name": "seconds", "label": "seconds", "type": "Number", "min": 0.0, "max": 600.0, "step": None,
                                  "defaultValue": "0.0", "info": "how long training takes", "options": None}
    assert by_name["steps"]["step"] == 1.0 and by_name["steps"]["defaultValue"] == "10"
    assert by_name["fail"]["type"] == "Text"


def test_filters_owned_category_createsTDO_state_and_the_engine_filter(org, other_org, external):
    assert ids(engines(org.client, "owned: true")) == [external]
    assert external not in ids(engines(other_org.client, "limit: 100"))
    assert ids(engines(org.client, 'category: "Outside Vision"')) == [external]
    assert ids(engines(org.client, 'category: "outside-vision"')) == [external]
    assert ids(engines(org.client, "createsTDO: true")) == []
    assert external in ids(engines(org.client, "createsTDO: false, limit: 100"))
    assert ids(engines(org.client, "state: [disabled]")) == []
    assert external in ids(engines(org.client, "state: [active], limit: 100"))
    assert ids(engines(org.client, 'filter: {runtimeType: ["external"]}')) == [external]
    assert SLEEPER in ids(engines(org.client, "filter: {deploymentModel: MostlyNetworkIsolated}, limit: 100"))
    assert external not in ids(engines(org.client, "filter: {deploymentModel: MostlyNetworkIsolated}, limit: 100"))
    assert ids(engines(org.client, "filter: {mode: [Stream]}")) == []
    assert ids(engines(org.client, "filter: {type: [Ingestion]}")) == []
    trainable = ids(engines(org.client, "filter: {trainableViaApi: true}, limit: 100"))
    assert SLEEPER in trainable and external in trainable


def test_order_by_sorts_by_the_named_field_and_direction(org, external):
    asc = ids(engines(org.client, "orderBy: [{field: id, direction: asc}], limit: 100"))
    desc = ids(engines(org.client, "orderBy: [{field: id, direction: desc}], limit: 100"))
    assert asc == sorted(asc) and desc == sorted(asc, reverse=True)
    by_price = ids(engines(org.client, "orderBy: [{field: price}], limit: 100"))  # every engine ties: the default order
    assert by_price == ids(engines(org.client, "limit: 100"))


def test_engine_tasks_and_task_metrics_count_the_callers_own_tasks(org, other_org):
    library_id = org.create_library()
    model_id = org.client.query(
        "mutation($l: ID!) { createLibraryEngineModel(input: {engineId: \"test-sleeper\", libraryId: $l}) { id } }", l=library_id
    ).ok()["createLibraryEngineModel"]["id"]
    job = org.client.query(
        "mutation($t: [CreateTask!]) { createJob(input: {tasks: $t}) { id tasks { records { id } } } }",
        t=[{"engineId": SLEEPER, "testTask": True,
            "payload": {"mode": "library-train", "libraryId": library_id, "libraryEngineModelId": model_id}}],
    ).ok()["createJob"]
    task_id = job["tasks"]["records"][0]["id"]
    # The test gateway runs no worker: the task stays queued, or is claimed, but never vanishes.
    page = org.client.query(
        'query($id: ID) { engine(id: "test-sleeper") { tasks(id: $id) { totalCount records { id jobId testTask } } } }', id=task_id
    ).ok()["engine"]["tasks"]
    assert page["totalCount"] == 1 and page["records"] == [{"id": task_id, "jobId": job["id"], "testTask": True}]
    mine = org.client.query('{ engine(id: "test-sleeper") { tasks { totalCount } taskMetrics { queuedCount runningCount completedCount } } }').ok()["engine"]
    assert mine["tasks"]["totalCount"] >= 1
    metrics = mine["taskMetrics"]
    assert metrics["queuedCount"] + metrics["runningCount"] + metrics["completedCount"] >= 1
    theirs = other_org.client.query(
        'query($id: ID) { engine(id: "test-sleeper") { tasks(id: $id) { totalCount } taskMetrics { queuedCount runningCount } } }', id=task_id
    ).ok()["engine"]
    assert theirs == {"tasks": {"totalCount": 0}, "taskMetrics": {"queuedCount": 0, "runningCount": 0}}
    none = org.client.query('{ engine(id: "test-sleeper") { a: tasks(hasSourceAsset: true) { totalCount } '
                            'b: tasks(status: ["waiting"]) { totalCount } } }').ok()["engine"]
    assert none == {"a": {"totalCount": 0}, "b": {"totalCount": 0}}
    later = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    future = org.client.query('query($f: DateTime) { engine(id: "test-sleeper") { tasks(dateTimeFilter: [{field: createdDateTime, fromDateTime: $f}]) { totalCount } } }', f=later)
    assert future.ok()["engine"]["tasks"]["totalCount"] == 0


@pytest.mark.parametrize(
    "args, words",
    [
        ('fromDateTime: "2026-01-01T00:00:00Z", toDateTime: "2026-01-09T00:00:00Z"', "at most 7 days"),
        ('fromDateTime: "2026-01-09T00:00:00Z", toDateTime: "2026-01-01T00:00:00Z"', "must not be after"),
    ],
)
def test_task_metrics_over_a_bad_range_are_invalid_input(org, args, words):
    reply = org.client.query(f'{{ engine(id: "test-sleeper") {{ taskMetrics({args}) {{ queuedCount }} }} }}')
    assert reply.error_code == "invalid_input" and words in reply.error_message


def test_engine_categories_list_their_engines_with_the_reference_fields(org, external):
    fields = ("id name engineIds totalEngines editable videoOnly exportFormats { format } dependencies { dependencyType } "
              "type { name } createdDateTime modifiedDateTime engines(limit: 10) { totalCount records { id } }")
    categories = org.client.query(f"{{ engineCategories(limit: 100) {{ records {{ {fields} }} }} }}").ok()["engineCategories"]["records"]
    outside = next(c for c in categories if c["id"] == "outside-vision")
    assert outside["engineIds"] == [external] and outside["totalEngines"] == 1
    assert outside["engines"] == {"totalCount": 1, "records": [{"id": external}]}
    assert (outside["editable"], outside["videoOnly"], outside["exportFormats"], outside["dependencies"]) == (False, False, [], [])
    assert outside["type"] == {"name": "Cognition"} and outside["createdDateTime"] <= outside["modifiedDateTime"]
    filtered = org.client.query('{ engineCategories(id: "outside-vision") { records { engines(filter: {runtimeType: ["worker"]}) { totalCount } } } }').ok()
    assert filtered["engineCategories"]["records"][0]["engines"]["totalCount"] == 0
    assert org.client.query('{ engineCategories(type: "Ingestion") { totalCount } }').ok()["engineCategories"]["totalCount"] == 0
    cognition = org.client.query('{ engineCategories(type: "cognition", limit: 100) { totalCount } }').ok()["engineCategories"]["totalCount"]
    assert cognition == len(categories)
