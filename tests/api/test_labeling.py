"""The labeling loop's API: unassigned identifiers, the jobs' validation, deciding suggestions, and the seed's
REST shape. One organization and one worker for the module; small noise libraries trained with the classifier.
(Accuracy on real images is measured in tests/engines/test_labeling_digits.py.)"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Gateway, Org, Process, Stack, make_org
from tests.engines import api_helpers as api
from tests.support.waits import wait_for, wait_job

UNASSIGNED = 'mutation($l: ID!) { createEntityIdentifier(input: {libraryId: $l, identifierTypeId: "image"}) { id entityId libraryId annotationType hard hardCoefficient suggestions { id } } }'


@pytest.fixture(scope="module")
def lab(stack: Stack, gateway: Gateway) -> Iterator[Org]:
    org = make_org(stack, gateway, "labeling-api")
    yield org
    org.close()


@pytest.fixture(scope="module")
def worker(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    process = api.start_worker_process(stack, tmp_path_factory.mktemp("labeling-api"), "labeling-api-worker")
    yield process
    process.stop()


def add_unassigned(org: Org, library_id: str, seed: int) -> dict[str, Any]:
    reply = org.client.upload_form(UNASSIGNED, api.png(32, seed), "image/png", filename="u.png", variables={"l": library_id})
    return reply.ok()["createEntityIdentifier"]


@pytest.fixture(scope="module")
def trained(lab: Org, worker: Process) -> dict[str, Any]:
    """A 2-entity noise library with 3 unassigned identifiers beside its 10, trained with the classifier."""
    library_id, entity_ids = api.small_library(lab, "noise", entities=2, per_entity=5, seed=7)
    unassigned = [add_unassigned(lab, library_id, 900 + i)["id"] for i in range(3)]
    model, task = api.trained(lab, api.CLASSIFIER, library_id, worker=worker)
    assert model["trainStatus"] == "complete", model["jsondata"]
    return {"library": library_id, "entities": entity_ids, "unassigned": unassigned, "model": model}


# -- unassigned identifiers ---------------------------------------------------------------------------------


def test_an_upload_with_a_library_and_no_entity_is_unassigned_and_raw(lab: Org) -> None:
    library_id = lab.create_library("plain", "objects")
    entity_id = lab.create_entity(library_id, "someone")
    created = add_unassigned(lab, library_id, 1)
    assert created == {"id": created["id"], "entityId": None, "libraryId": library_id, "annotationType": "raw",
                       "hard": False, "hardCoefficient": None, "suggestions": []}
    placed = lab.client.upload_form(
        'mutation($e: ID!) { createEntityIdentifier(input: {entityId: $e, identifierTypeId: "image"}) { id annotationType entity { id } } }',
        api.png(32, 2), "image/png", variables={"e": entity_id},
    ).ok()["createEntityIdentifier"]
    assert placed["annotationType"] == "human" and placed["entity"]["id"] == entity_id
    listed = lab.client.query(
        "query($l: ID!) { unassignedIdentifiers(libraryId: $l) { totalCount records { id entity { id } annotationType } } }", l=library_id
    ).ok()["unassignedIdentifiers"]
    assert listed == {"totalCount": 1, "records": [{"id": created["id"], "entity": None, "annotationType": "raw"}]}
    # The entity's own listing and counts know nothing of it.
    entity = lab.client.query("query($e: ID!) { entity(id: $e) { identifiers { totalCount records { id } } } }", e=entity_id).ok()
    assert entity["entity"]["identifiers"] == {"totalCount": 1, "records": [{"id": placed["id"]}]}
    # Filters: by annotation type, and dates in the wrong order are refused.
    humans = lab.client.query(
        "query($l: ID!) { unassignedIdentifiers(libraryId: $l, filter: {annotationTypes: [human]}) { totalCount } }", l=library_id
    ).ok()
    assert humans["unassignedIdentifiers"]["totalCount"] == 0
    backwards = lab.client.query(
        "query($l: ID!) { unassignedIdentifiers(libraryId: $l, filter: {fromDateTime: 2000000000, toDateTime: 1000000000}) { totalCount } }",
        l=library_id,
    )
    api.assert_error(backwards, "invalid_input", "fromDateTime")
    # Deleting it works like any identifier's delete.
    lab.client.query("mutation($i: ID!) { deleteEntityIdentifier(id: $i) { id } }", i=created["id"]).ok()
    assert lab.client.query("query($l: ID!) { unassignedIdentifiers(libraryId: $l) { totalCount } }", l=library_id).ok()[
        "unassignedIdentifiers"]["totalCount"] == 0


@pytest.mark.parametrize(
    ("fields", "code", "fragment"),
    [
        ('identifierTypeId: "image"', "invalid_input", "entityId or libraryId"),
        ('identifierTypeId: "image", libraryId: "{other}", entityId: "{entity}"', "invalid_input", "is not in library"),
        ('identifierTypeId: "image", libraryId: "{library}", profileUpdateMode: always', "invalid_input", "needs an entity"),
        ('identifierTypeId: "audio-recording", libraryId: "{library}"', "invalid_input", "takes identifiers of type"),
        ('identifierTypeId: "image", libraryId: "00000000-0000-0000-0000-000000000000"', "not_found", ""),
    ],
)
def test_bad_unassigned_uploads_are_refused_and_store_nothing(lab: Org, stack: Stack, fields: str, code: str, fragment: str) -> None:
    library_id = lab.create_library("bad-uploads", "objects")
    other = lab.create_library("bad-uploads-other", "objects")
    entity_id = lab.create_entity(library_id, "e")
    before = stack.db.fetchval("SELECT count(*) FROM entity_identifiers WHERE org_id = $1", lab.id)
    document = "mutation { createEntityIdentifier(input: {" + fields.replace("{other}", other).replace(
        "{entity}", entity_id).replace("{library}", library_id) + "}) { id } }"
    reply = lab.client.upload_form(document, api.png(32, 3), "image/png")
    api.assert_error(reply, code, fragment)
    assert stack.db.fetchval("SELECT count(*) FROM entity_identifiers WHERE org_id = $1", lab.id) == before


def test_training_ignores_unassigned_identifiers(trained: dict[str, Any]) -> None:
    report = trained["model"]["jsondata"]
    assert report["identifiers"] == 10 and report["entities"] == 2  # the 3 unassigned were not read


# -- the jobs' validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "code", "fragment"),
    [
        ('findHardExamples(input: {libraryId: "{L}", confidenceScope: "0.9-0.1"})', "invalid_input", "lo < hi"),
        ('findHardExamples(input: {libraryId: "{L}", confidenceScope: "0.1-1.5"})', "invalid_input", "lo < hi"),
        ('findHardExamples(input: {libraryId: "{L}", confidenceScope: "low-high"})', "invalid_input", "lo-hi"),
        ('findHardExamples(input: {libraryId: "{L}", modelId: "no-such-model"})', "not_found", "no-such-model"),
        ('autoTag(input: {libraryId: "{L}", modelId: "no-such-model"})', "not_found", "no-such-model"),
        ('autoTag(input: {libraryId: "{L}", libraryEngineModelId: "00000000-0000-0000-0000-000000000000"})', "not_found", ""),
        ('autoTag(input: {libraryId: "{L}", identifierTypeId: "image"})', "invalid_input", "exactly one"),
        ("autoTag(input: {})", "invalid_input", "exactly one"),
        ('autoTag(input: {libraryId: "{L}", confidenceThreshold: 1.5})', "invalid_input", "between 0 and 1"),
        ('autoTag(input: {libraryId: "{L}", inputResolution: [300]})', "invalid_input", "two integers"),
        ('autoTag(input: {libraryId: "{L}", inputResolution: [300, 0]})', "invalid_input", "from 8 to 4096"),
        ('autoTag(input: {libraryId: "{L}", query: "annotation.colour=red"})', "invalid_input", "unknown field"),
        ('autoTag(input: {libraryId: "{L}", query: "entity.name"})', "invalid_input", "field=value"),
        ('autoTag(input: {libraryId: "{L}", query: "entity.name=\\"open"})', "invalid_input", "not closed"),
        ('autoTag(input: {libraryId: "{L}", query: "annotation.label=a OR annotation.label=b"})', "invalid_input", "only AND"),
        ('autoTag(input: {libraryId: "{L}", filter: {fromDateTime: 2000000000, toDateTime: 1000000000}})', "invalid_input", "fromDateTime"),
        ('autoTag(input: {libraryId: "{L}", filter: {annotationTypes: []}})', "invalid_input", "at least one"),
        ('autoTag(input: {identifierTypeId: "no-such-type", libraryEngineModelId: "{M}"})', "invalid_input", "unknown identifierTypeId"),
        ('autoTag(input: {identifierTypeId: "image"})', "invalid_input", "no model to label with"),
        ('autoGroup(input: {libraryId: "{L}", nClusters: 0})', "invalid_input", "at least 1"),
        ('autoGroup(input: {libraryId: "{L}", nClusters: 4})', "invalid_input", "more than the 3"),
        ('autoGroup(input: {libraryId: "{L}"})', "invalid_input", "nClusters"),
        ('autoGroup(input: {libraryId: "{L}", nClusters: 2, similarityThreshold: 0.5})', "invalid_input", "not both"),
        ('autoGroup(input: {libraryId: "{L}", similarityThreshold: 1.5})', "invalid_input", "strictly between"),
        ('autoGroup(input: {libraryId: "{L}", similarityThreshold: 0.5, feature: blur})', "invalid_input", "give nClusters"),
        ('autoGroup(input: {libraryId: "{L}", nClusters: 2, modelId: "no-such-model"})', "not_found", "no-such-model"),
        ('autoGroup(input: {libraryId: "{L}", nClusters: 2, feature: brightness, modelId: "x"})', "invalid_input", "uses none"),
        ('autoGroup(input: {libraryId: "00000000-0000-0000-0000-000000000000", nClusters: 1})', "not_found", ""),
    ],
)
def test_bad_labeling_jobs_are_refused_before_a_job_exists(
    lab: Org, stack: Stack, trained: dict[str, Any], document: str, code: str, fragment: str
) -> None:
    jobs_before = stack.db.fetchval("SELECT count(*) FROM jobs WHERE org_id = $1", lab.id)
    document = document.replace("{L}", trained["library"]).replace("{M}", trained["model"]["id"])
    reply = lab.client.query("mutation { " + document + " { id } }")
    api.assert_error(reply, code, fragment)
    assert stack.db.fetchval("SELECT count(*) FROM jobs WHERE org_id = $1", lab.id) == jobs_before


def test_create_job_refuses_the_labeling_queue(lab: Org, trained: dict[str, Any]) -> None:
    reply = lab.client.query(
        'mutation($p: JSONData) { createJob(input: {tasks: [{engineId: "engineshed-labeling", payload: $p}]}) { id } }',
        p={"mode": "labeling", "libraryId": trained["library"]},
    )
    api.assert_error(reply, "invalid_input", "autoTag")


# -- suggestions --------------------------------------------------------------------------------------------


SUGGESTIONS = "query($j: ID!) { suggestions(jobId: $j, limit: 100) { totalCount records { id identifierId entityId label confidence modelVersion status } } }"


def test_auto_tag_suggests_and_people_accept_or_reject_in_bulk(lab: Org, stack: Stack, worker: Process, trained: dict[str, Any]) -> None:
    # Threshold 0: every unassigned identifier gets its best entity; the query keeps the labeled ones out.
    job_id = lab.client.query(
        'mutation($l: ID!) { autoTag(input: {libraryId: $l, confidenceThreshold: 0, filter: {annotationTypes: [raw]}}) { id name } }',
        l=trained["library"],
    ).ok()["autoTag"]["id"]
    done = wait_job(lab, job_id, worker=worker)
    assert done["status"] == "complete", done
    suggestions = lab.client.query(SUGGESTIONS, j=job_id).ok()["suggestions"]["records"]
    assert sorted(s["identifierId"] for s in suggestions) == sorted(trained["unassigned"])
    assert all(s["entityId"] in trained["entities"] and s["status"] == "pending" and 0 <= s["confidence"] <= 1 for s in suggestions)
    assert all(s["modelVersion"] == f"{api.CLASSIFIER}:{trained['model']['id']}" for s in suggestions)
    first, second, third = suggestions
    # A suggested identifier is machine-annotated, still unassigned, and reads its suggestion.
    seen = lab.client.query(
        "query($i: ID!) { entityIdentifier(id: $i) { entityId annotationType suggestions { id } } }", i=first["identifierId"]
    ).ok()["entityIdentifier"]
    assert seen == {"entityId": None, "annotationType": "machine", "suggestions": [{"id": first["id"]}]}

    # All or none: one unknown id and nothing is accepted.
    missing = lab.client.query("mutation($ids: [ID!]!) { acceptSuggestions(ids: $ids) { id } }", ids=[first["id"], str(uuid.uuid4())])
    api.assert_error(missing, "not_found")
    assert lab.client.query(SUGGESTIONS, j=job_id).ok()["suggestions"]["records"][0]["status"] == "pending"

    accepted = lab.client.query(
        "mutation($ids: [ID!]!) { acceptSuggestions(ids: $ids) { id status entityId } }", ids=[first["id"], second["id"]]
    ).ok()["acceptSuggestions"]
    assert [a["status"] for a in accepted] == ["accepted", "accepted"]
    for s in (first, second):
        row = lab.client.query("query($i: ID!) { entityIdentifier(id: $i) { entityId annotationType } }", i=s["identifierId"]).ok()
        assert row["entityIdentifier"] == {"entityId": s["entityId"], "annotationType": "human"}
    rejected = lab.client.query("mutation($ids: [ID!]!) { rejectSuggestions(ids: $ids) { status } }", ids=[third["id"]]).ok()
    assert rejected["rejectSuggestions"] == [{"status": "rejected"}]
    row = lab.client.query("query($i: ID!) { entityIdentifier(id: $i) { entityId annotationType } }", i=third["identifierId"]).ok()
    assert row["entityIdentifier"] == {"entityId": None, "annotationType": "raw"}
    again = lab.client.query("mutation($ids: [ID!]!) { acceptSuggestions(ids: $ids) { id } }", ids=[third["id"]])
    api.assert_error(again, "invalid_input", "rejected already")
    empty = lab.client.query("mutation { rejectSuggestions(ids: []) { id } }")
    api.assert_error(empty, "invalid_input", "at least one")
    listed = lab.client.query(
        "query($l: ID!) { suggestions(libraryId: $l, status: accepted) { totalCount } }", l=trained["library"]
    ).ok()["suggestions"]["totalCount"]
    assert listed == 2


def test_accepting_a_label_with_no_entity_in_the_library_creates_it(lab: Org, worker: Process, trained: dict[str, Any]) -> None:
    # Every image library of the organization: a library with no entities gets labels, not entities.
    bare = lab.create_library("bare", "objects")
    ids = [add_unassigned(lab, bare, 700 + i)["id"] for i in range(2)]
    job_id = lab.client.query(
        'mutation($m: ID) { autoTag(input: {identifierTypeId: "image", libraryEngineModelId: $m, confidenceThreshold: 0, '
        'query: "identifier.contentType=image/png"}) { id } }', m=trained["model"]["id"],
    ).ok()["autoTag"]["id"]
    assert wait_job(lab, job_id, worker=worker)["status"] == "complete"
    mine = [s for s in lab.client.query(SUGGESTIONS, j=job_id).ok()["suggestions"]["records"] if s["identifierId"] in ids]
    assert len(mine) == 2 and all(s["entityId"] is None and s["label"].startswith("noise-") for s in mine)
    accepted = lab.client.query(
        "mutation($ids: [ID!]!) { acceptSuggestions(ids: $ids) { entityId } }", ids=[s["id"] for s in mine]
    ).ok()["acceptSuggestions"]
    entities = lab.client.query("query($l: ID!) { library(id: $l) { entities { records { id name } } } }", l=bare).ok()
    created = {e["name"]: e["id"] for e in entities["library"]["entities"]["records"]}
    assert set(created) == {s["label"] for s in mine}
    assert sorted(a["entityId"] for a in accepted) == sorted(created[s["label"]] for s in mine)


def test_auto_grouping_on_an_image_measure(lab: Org, worker: Process) -> None:
    library_id = lab.create_library("measures", "objects")
    ids = [add_unassigned(lab, library_id, 500 + i)["id"] for i in range(4)]
    job_id = lab.client.query(
        'mutation($l: ID!) { autoGroup(input: {libraryId: $l, nClusters: 2, feature: brightness}) { id } }', l=library_id
    ).ok()["autoGroup"]["id"]
    done = wait_job(lab, job_id, worker=worker)
    assert done["status"] == "complete", done
    assert done["tasks"]["records"][0]["output"]["feature"] == "brightness"
    groups = lab.client.query(
        "query($j: ID!) { identifierGroups(jobId: $j) { totalCount records { size members { records { id } } } } }", j=job_id
    ).ok()["identifierGroups"]
    assert groups["totalCount"] == 2
    assert sorted(m["id"] for g in groups["records"] for m in g["members"]["records"]) == sorted(ids)


# -- the seed's REST shape ----------------------------------------------------------------------------------


def rest(org_or_token: Org | str | None, gateway: Gateway, method: str, path: str, body: Any = None, raw: bytes | None = None) -> httpx.Response:
    token = org_or_token.token if isinstance(org_or_token, Org) else org_or_token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(timeout=30) as http:
        if raw is not None:
            return http.request(method, gateway.url + path, content=raw, headers={**headers, "Content-Type": "application/json"})
        return http.request(method, gateway.url + path, json=body, headers=headers)


SEED_BODIES = {
    "auto-label": {"task_type": "auto-label", "collect_key_sample": True, "config": {"algorithm_type": "fast"}},
    "pre-label": {"task_type": "pre-label", "model_id": "{M}", "collect_key_sample": True,
                  "config": {"inf_config_list": [{"specification": "modelarts.vm.cpu.2u", "instance_count": 1}]}},
    "auto-grouping": {"type": 2, "export_type": 1, "config": {"n_clusters": "2", "ambiguity": False, "image_brightness": False,
                                                                "image_colorfulness": False, "property": "size"}},
}


@pytest.fixture(scope="module")
def loose(lab: Org) -> str:
    """A library of four unassigned images, for the grouping bodies."""
    library_id = lab.create_library("loose", "objects")
    for i in range(4):
        add_unassigned(lab, library_id, 300 + i)
    return library_id


@pytest.mark.parametrize("task_type", list(SEED_BODIES))
def test_the_seeds_three_example_bodies_start_tasks(
    lab: Org, gateway: Gateway, worker: Process, trained: dict[str, Any], loose: str, task_type: str
) -> None:
    body = json.loads(json.dumps(SEED_BODIES[task_type]).replace("{M}", trained["model"]["id"]))
    dataset = loose if task_type == "auto-grouping" else trained["library"]
    path = f"/v2/{lab.id}/datasets/{dataset}/tasks"
    started = rest(lab, gateway, "POST", path, body)
    assert started.status_code == 200, started.text
    task_id = started.json()["task_id"]
    assert set(started.json()) == {"task_id"}
    wait_job(lab, task_id, worker=worker)
    status = rest(lab, gateway, "GET", f"{path}/{task_id}")
    assert status.status_code == 200, status.text
    answer = status.json()
    assert answer["task_id"] == task_id and answer["task_type"] == task_type and answer["status"] == "complete"
    assert answer["progress"] == 1.0 and answer["result"]


def test_rest_errors_are_json_with_the_right_status(lab: Org, other_org: Org, gateway: Gateway, loose: str) -> None:
    path = f"/v2/{lab.id}/datasets/{loose}/tasks"
    body = SEED_BODIES["auto-grouping"]
    cases = [
        (rest(None, gateway, "POST", path, body), 401, "authentication_error"),
        (rest("es_not-a-token", gateway, "POST", path, body), 401, "authentication_error"),
        (rest(lab.token_for("read"), gateway, "POST", path, body), 403, "not_allowed"),
        (rest(lab, gateway, "POST", path, raw=b"{not json"), 400, "invalid_input"),
        (rest(lab, gateway, "POST", path, raw=b"[1, 2]"), 400, "invalid_input"),
        (rest(lab, gateway, "POST", path, raw=b'{"task_type": "x"' + b" " * 70_000 + b"}"), 413, "invalid_input"),
        (rest(lab, gateway, "POST", path, {"task_type": "auto-label", "config": {"confidence_scope": "0.9-0.1"}}), 400, "invalid_input"),
        (rest(lab, gateway, "POST", path, {"task_type": "summarize"}), 400, "invalid_input"),
        (rest(lab, gateway, "POST", path, {"type": 2, "config": {"n_clusters": "many"}}), 400, "invalid_input"),
        (rest(lab, gateway, "POST", path, {"type": 2, "config": {"n_clusters": 2, "ambiguity": True, "image_brightness": True}}), 400, "invalid_input"),
        (rest(lab, gateway, "GET", f"{path}/{uuid.uuid4()}"), 404, "not_found"),
        (rest(lab, gateway, "GET", f"{path}/not-an-id"), 404, "not_found"),
        (rest(lab, gateway, "GET", path), 405, "not_allowed"),  # a method the route does not serve: JSON too
        (rest(lab, gateway, "DELETE", f"{path}/{uuid.uuid4()}"), 405, "not_allowed"),
    ]
    for response, status, code in cases:
        assert response.status_code == status, (status, response.status_code, response.text[:300])
        assert response.json()["error_code"] == code and response.json()["error_msg"], response.text
        assert "Traceback" not in response.text
    # Another organization: its own project id with this library, or this project id, reads like made-up ones.
    theirs = [
        rest(other_org, gateway, "POST", f"/v2/{other_org.id}/datasets/{loose}/tasks", body),
        rest(other_org, gateway, "POST", f"/v2/{other_org.id}/datasets/{uuid.uuid4()}/tasks", body),
    ]
    assert [r.status_code for r in theirs] == [404, 404] and theirs[0].json() == theirs[1].json()
    foreign_project = rest(other_org, gateway, "POST", path, body)
    assert foreign_project.status_code == 404 and foreign_project.json()["error_code"] == "not_found"
    started = rest(lab, gateway, "POST", path, body).json()["task_id"]
    peek = rest(other_org, gateway, "GET", f"/v2/{other_org.id}/datasets/{loose}/tasks/{started}")
    made_up = rest(other_org, gateway, "GET", f"/v2/{other_org.id}/datasets/{loose}/tasks/{uuid.uuid4()}")
    assert peek.status_code == made_up.status_code == 404 and peek.json() == made_up.json()


def test_rest_bad_values_are_400_in_the_seeds_own_names(lab: Org, gateway: Gateway, loose: str) -> None:
    path = f"/v2/{lab.id}/datasets/{loose}/tasks"
    cases = [
        ({"type": 2, "config": {"n_clusters": "\u00b2"}}, "config.n_clusters must be a whole number"),  # "²": isdigit() but no int
        ({"type": 2, "config": {"n_clusters": "\u0663"}}, "config.n_clusters must be a whole number"),  # an Arabic-Indic 3
        ({"type": 2, "config": {"n_clusters": 0}}, "config.n_clusters must be at least 1"),
        ({"type": 2, "config": {"n_clusters": 2, "similarity_threshold": 0.5}}, "config.n_clusters or config.similarity_threshold"),
        ({"type": 2, "config": {"similarity_threshold": "close"}}, "config.similarity_threshold must be a number"),
        ({"task_type": "auto-label", "model_id": "no\u0000model"}, "NUL"),
        ({"task_type": "pre-label", "model_id": "\ud800"}, "surrogate"),
    ]
    for body, fragment in cases:
        response = rest(lab, gateway, "POST", path, raw=json.dumps(body).encode())
        assert response.status_code == 400, (body, response.text)
        assert fragment in response.json()["error_msg"], (body, response.text)
        assert "nClusters" not in response.text and "similarityThreshold" not in response.text


def test_rest_grouping_without_a_count_chooses_one_and_the_project_id_ignores_case(
    lab: Org, gateway: Gateway, worker: Process, loose: str,
) -> None:
    started = rest(lab, gateway, "POST", f"/v2/{str(lab.id).upper()}/datasets/{loose}/tasks", {"type": 2})
    assert started.status_code == 200, started.text
    job_id = started.json()["task_id"]
    done = wait_job(lab, job_id, worker=worker)
    assert done["status"] == "complete", done
    groups = lab.client.query("query($j: ID!) { identifierGroups(jobId: $j) { totalCount } }", j=job_id).ok()
    assert groups["identifierGroups"]["totalCount"] == 2  # sqrt(4 / 2) groups of the four loose images
    by_similarity = rest(lab, gateway, "POST", f"/v2/{lab.id}/datasets/{loose}/tasks", {"type": 2, "config": {"similarity_threshold": 0.9}})
    assert by_similarity.status_code == 200, by_similarity.text


def test_rest_pre_label_suggests_only_for_unassigned_identifiers_and_a_rerun_replaces_its_suggestions(
    lab: Org, gateway: Gateway, worker: Process, trained: dict[str, Any],
) -> None:
    path = f"/v2/{lab.id}/datasets/{trained['library']}/tasks"
    body = {"task_type": "pre-label", "model_id": trained["model"]["id"], "config": {"confidence_threshold": 0}}
    jobs = []
    for _ in range(2):
        started = rest(lab, gateway, "POST", path, body)
        assert started.status_code == 200, started.text
        assert wait_job(lab, started.json()["task_id"], worker=worker)["status"] == "complete"
        jobs.append(started.json()["task_id"])
    first, second = ([s["identifierId"] for s in lab.client.query(SUGGESTIONS, j=job_id).ok()["suggestions"]["records"]] for job_id in jobs)
    assert second and first == []  # the rerun's suggestions took the place of the first run's
    pending = lab.client.query(
        "query($l: ID!) { suggestions(libraryId: $l, status: pending, limit: 1000) { records { identifierId } } }", l=trained["library"],
    ).ok()["suggestions"]["records"]
    ids = [p["identifierId"] for p in pending]
    assert len(ids) == len(set(ids))  # one pending suggestion per identifier
    for identifier_id in second:
        row = lab.client.query("query($i: ID!) { entityIdentifier(id: $i) { entityId } }", i=identifier_id).ok()["entityIdentifier"]
        assert row["entityId"] is None  # nothing a person placed is pre-labeled


def test_two_people_accepting_the_same_suggestions_at_once_one_wins_whole(lab: Org, worker: Process, trained: dict[str, Any]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    fresh = [add_unassigned(lab, trained["library"], 1200 + i)["id"] for i in range(4)]
    job_id = lab.client.query(
        'mutation($l: ID!) { autoTag(input: {libraryId: $l, confidenceThreshold: 0, filter: {annotationTypes: [raw]}}) { id } }',
        l=trained["library"],
    ).ok()["autoTag"]["id"]
    assert wait_job(lab, job_id, worker=worker)["status"] == "complete"
    ids = [s["id"] for s in lab.client.query(SUGGESTIONS, j=job_id).ok()["suggestions"]["records"] if s["identifierId"] in fresh]
    assert len(ids) == 4
    clients = [lab.client_for("admin"), lab.client_for("admin")]
    with ThreadPoolExecutor(2) as pool:
        # The same four in opposite orders: row locks taken in id order, so neither waits on the other forever.
        replies = list(pool.map(lambda pair: pair[0].query("mutation($ids: [ID!]!) { acceptSuggestions(ids: $ids) { id } }", ids=pair[1]),
                                [(clients[0], ids), (clients[1], ids[::-1])]))
    won = [r for r in replies if not r.errors]
    lost = [r for r in replies if r.errors]
    assert len(won) == 1 and len(lost) == 1, [r.body for r in replies]
    api.assert_error(lost[0], "invalid_input", "accepted already")
    statuses = lab.client.query(SUGGESTIONS, j=job_id).ok()["suggestions"]["records"]
    assert sorted(s["status"] for s in statuses if s["id"] in ids) == ["accepted"] * 4


def test_deleting_a_job_takes_identifier_locks_before_suggestion_locks_as_accepting_does(
    lab: Org, stack: Stack, worker: Process, trained: dict[str, Any]
) -> None:
    """acceptSuggestions locks identifiers, then suggestions. deleteJob must not hold a suggestion while it waits
    for an identifier (its trigger updates identifiers): the opposite order would deadlock."""
    import asyncio

    import asyncpg

    fresh = add_unassigned(lab, trained["library"], 1400)["id"]
    job_id = lab.client.query(
        'mutation($l: ID!) { autoTag(input: {libraryId: $l, confidenceThreshold: 0, query: "identifier.contentType=image/png", '
        'filter: {annotationTypes: [raw]}}) { id } }', l=trained["library"],
    ).ok()["autoTag"]["id"]
    assert wait_job(lab, job_id, worker=worker)["status"] == "complete"
    mine = [s for s in lab.client.query(SUGGESTIONS, j=job_id).ok()["suggestions"]["records"] if s["identifierId"] == fresh]
    assert len(mine) == 1

    async def race() -> tuple[bool, Any]:
        accepting, watching = await asyncpg.connect(stack.env["DATABASE_URL"]), await asyncpg.connect(stack.env["DATABASE_URL"])
        try:
            # An accept's first step, held: the identifier.
            tx = accepting.transaction()
            await tx.start()
            await accepting.execute("SELECT id FROM entity_identifiers WHERE id = $1 FOR UPDATE", uuid.UUID(fresh))
            pid = accepting.get_server_pid()
            loop = asyncio.get_running_loop()
            deleting = loop.run_in_executor(
                None, lambda: lab.client.query("mutation($id: ID!) { deleteJob(id: $id) { id } }", id=job_id))
            for _ in range(600):  # until deleteJob waits on the accept (bounded: 60 s)
                if await watching.fetchval("SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", pid):
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("deleteJob never waited for the held identifier")
            # The accept's second step: the suggestion. Free, so the accept can finish and deleteJob after it.
            try:
                await accepting.execute("SELECT id FROM identifier_suggestions WHERE id = $1 FOR UPDATE NOWAIT", uuid.UUID(mine[0]["id"]))
                free = True
            except asyncpg.LockNotAvailableError:
                free = False
            await tx.rollback()
            return free, await deleting
        finally:
            await accepting.close()
            await watching.close()

    free, deleted = asyncio.run(race())
    assert free, "deleteJob held the suggestion while waiting for its identifier"
    assert deleted.ok()["deleteJob"]["id"] == job_id
    row = lab.client.query("query($i: ID!) { entityIdentifier(id: $i) { annotationType } }", i=fresh).ok()["entityIdentifier"]
    assert row["annotationType"] == "raw"


def test_deleting_a_finished_auto_tag_job_takes_its_suggestions_and_leaves_its_identifiers_raw(
    lab: Org, worker: Process, trained: dict[str, Any]
) -> None:
    fresh = add_unassigned(lab, trained["library"], 1500)["id"]
    job_id = lab.client.query(
        'mutation($l: ID!) { autoTag(input: {libraryId: $l, confidenceThreshold: 0, query: "identifier.contentType=image/png", '
        'filter: {annotationTypes: [raw]}}) { id } }', l=trained["library"],
    ).ok()["autoTag"]["id"]
    assert wait_job(lab, job_id, worker=worker)["status"] == "complete"
    look = "query($i: ID!) { entityIdentifier(id: $i) { annotationType suggestions { jobId } } }"
    assert lab.client.query(look, i=fresh).ok()["entityIdentifier"]["annotationType"] == "machine"
    lab.client.query("mutation($id: ID!) { deleteJob(id: $id) { id } }", id=job_id).ok()
    after = lab.client.query(look, i=fresh).ok()["entityIdentifier"]
    assert after["annotationType"] == "raw" and job_id not in [s["jobId"] for s in after["suggestions"]]
    # Deleting the library takes its unassigned identifiers and everything hanging on them.
    lab.client.query("mutation($id: ID!) { deleteLibrary(id: $id) { id } }", id=trained["library"]).ok()
    assert lab.client.query("query($i: ID!) { entityIdentifier(id: $i) { id } }", i=fresh).error_code == "not_found"


# -- which model a labeling job runs, and what it holds -------------------------------------------------------

PAYLOAD = "query($id: ID!) { job(id: $id) { tasks { records { payload } } } }"


def test_a_job_naming_no_model_runs_the_default_model_not_the_newest(lab: Org, worker: Process) -> None:
    library_id, entity_ids = api.small_library(lab, "rolled-back", entities=2, per_entity=5, seed=31)
    fresh = add_unassigned(lab, library_id, 3100)["id"]
    first, _ = api.trained(lab, api.CLASSIFIER, library_id, worker=worker)
    newer, _ = api.trained(lab, api.CLASSIFIER, library_id, worker=worker)
    assert first["trainStatus"] == newer["trainStatus"] == "complete"
    # Roll back: the older model is the default again, the newer one stays the newest complete model.
    lab.client.query("mutation($m: ID!) { setDefaultModel(libraryEngineModelId: $m) { id } }", m=first["id"]).ok()
    job_id = lab.client.query(
        'mutation($l: ID!) { autoTag(input: {libraryId: $l, confidenceThreshold: 0, filter: {annotationTypes: [raw]}}) { id } }',
        l=library_id,
    ).ok()["autoTag"]["id"]
    payload = lab.client.query(PAYLOAD, id=job_id).ok()["job"]["tasks"]["records"][0]["payload"]
    assert payload["libraryEngineModelId"] == first["id"]
    assert wait_job(lab, job_id, worker=worker)["status"] == "complete"
    suggestions = lab.client.query(SUGGESTIONS, j=job_id).ok()["suggestions"]["records"]
    assert [(s["identifierId"], s["modelVersion"]) for s in suggestions] == [(fresh, f"{api.CLASSIFIER}:{first['id']}")]
    # Active learning chooses the same way.
    hard = lab.client.query(
        'mutation($l: ID!) { findHardExamples(input: {libraryId: $l}) { id } }', l=library_id,
    ).ok()["findHardExamples"]["id"]
    assert lab.client.query(PAYLOAD, id=hard).ok()["job"]["tasks"]["records"][0]["payload"]["libraryEngineModelId"] == first["id"]
    assert wait_job(lab, hard, worker=worker)["status"] == "complete"


def test_a_labeling_job_holds_the_registered_version_it_pinned(lab: Org, worker: Process) -> None:
    from sampledata import onnx_models as m
    from tests.engines import registered

    registered.register_org_model(lab, "pinned-embedder", "embedding", m.conv_net(dimension=8), m.normalised_manifest())
    # The module's worker may have claimed the trial inference: wait for it either way.
    status = 'query { model(name: "pinned-embedder", version: 1) { status error } }'
    ready = wait_for(lambda: (lambda v: v if v["status"] != "validating" else None)(lab.client.query(status).ok()["model"]),
                     timeout=60, interval=0.2, what="the trial inference")
    assert ready["status"] == "ready", ready
    library_id = lab.create_library("pinned", "objects")
    for i in range(3):
        add_unassigned(lab, library_id, 3300 + i)
    job_id = lab.client.query(
        'mutation($l: ID!) { autoGroup(input: {libraryId: $l, nClusters: 2, modelId: "pinned-embedder"}) { id } }', l=library_id,
    ).ok()["autoGroup"]["id"]
    delete = 'mutation { deleteModelVersion(name: "pinned-embedder", version: 1) { id } }'
    api.assert_error(lab.client.query(delete), "not_allowed", "1 job(s)")
    assert wait_job(lab, job_id, worker=worker)["status"] == "complete"
    assert lab.client.query('query { model(name: "pinned-embedder", version: 1) { status } }').ok()["model"]["status"] == "ready"
    # Once the job is gone, so is the hold.
    lab.client.query("mutation($id: ID!) { deleteJob(id: $id) { id } }", id=job_id).ok()
    lab.client.query(delete).ok()
