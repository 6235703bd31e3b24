"""REST ``/v1/trainings`` refusals (no worker runs here, so a training stays ``waiting``): bearer auth, scopes,
tenancy, bad bodies and their HTTP statuses, the body limit, DELETE of a waiting training, and a fuzz of
POST bodies. Every error is JSON ``{"error": {"code", "message"}}`` with no internals in it."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.conftest import LEAK, png

MADE_UP = "0b4f1f7e-8c1e-4c55-9a9e-4d2b9b8b1a11"


def _http(org, token: str | None = "admin") -> httpx.Client:
    headers = {}
    if token == "admin":
        headers["Authorization"] = f"Bearer {org.token}"
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=org.gateway.url, headers=headers, timeout=30)


def _library(org) -> str:
    library_id = org.create_library("rest", "objects")
    entity = org.create_entity(library_id, "one")
    org.add_identifier(entity, png(1), type_id="image")
    return library_id


def _error(response: httpx.Response, status: int, code: str, fragment: str = "") -> str:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"]["code"] == code, body
    assert fragment in body["error"]["message"], body
    assert not LEAK.search(response.text), response.text
    return body["error"]["message"]


def _trainings(stack, org) -> int:
    return stack.db.fetchval("SELECT count(*) FROM library_engine_models WHERE org_id = $1", org.id)


def test_a_waiting_training_reads_back_and_delete_cancels_it(org, stack):
    library_id = _library(org)
    with _http(org) as http:
        created = http.post("/v1/trainings", json={"source_dataset_id": library_id, "output_model_name": "m",
                                                   "labels": {"team": "vision"}, "auto_promote": True})
        assert created.status_code == 201, created.text
        training = created.json()
        assert (training["state"], training["progress"], training["duration"], training["error"]) == ("waiting", 0.0, 0.0, "")
        assert training["time_started"] is None and training["time_completed"] is None and training["output_model"] is None
        assert training["labels"] == {"team": "vision"}
        assert training["source_dataset"]["evaluation_state"] == 0 and training["source_dataset"]["evaluation_result"] == {}
        model = org.client.query('query($id: ID!) { job(id: $id) { displayName labels outputModel { name autoPromote trainStatus } } }',
                                 id=training["id"]).ok()["job"]
        assert model == {"displayName": "m", "labels": {"team": "vision"},
                         "outputModel": {"name": "m", "autoPromote": True, "trainStatus": "queued"}}

        cancelled = http.delete(f"/v1/trainings/{training['id']}")
        assert cancelled.status_code == 202, cancelled.text
        assert cancelled.json()["state"] == "failed" and cancelled.json()["error"] == "the training was cancelled"
        # Finished now: a second DELETE deletes it.
        assert http.delete(f"/v1/trainings/{training['id']}/").status_code == 204
        _error(http.get(f"/v1/trainings/{training['id']}"), 404, "not_found")


@pytest.mark.parametrize(("body", "code", "fragment"), [
    ({}, "invalid_input", "source_dataset_id is required"),
    ({"source_dataset_id": 5}, "invalid_input", "must be a string"),
    ({"source_dataset_id": "{L}", "config": {"unknownKey": 1}}, "invalid_input", "'unknownKey'"),
    ({"source_dataset_id": "{L}", "config": {"minSize": -1}}, "invalid_input", "minSize"),
    ({"source_dataset_id": "{L}", "config": []}, "invalid_input", "config must be a JSON object"),
    ({"source_dataset_id": "{L}", "labels": {"Bad": "x"}}, "invalid_input", "'Bad'"),
    ({"source_dataset_id": "{L}", "output_model_name": "n" * 129}, "invalid_input", "at most 128"),
    ({"source_dataset_id": "{L}", "output_model_changelog": 3}, "invalid_input", "must be a string"),
    ({"source_dataset_id": "{L}", "auto_promote": "yes"}, "invalid_input", "auto_promote"),
    # JSON can carry what PostgreSQL cannot store: refused up front, never a 500.
    ({"source_dataset_id": "{L}", "output_model_name": "\u0000x"}, "invalid_input", "output_model_name contains a NUL"),
    ({"source_dataset_id": "{L}", "output_model_description": "\u0000"}, "invalid_input", "NUL"),
    ({"source_dataset_id": "{L}", "output_model_changelog": "\ud800"}, "invalid_input", "lone surrogate"),
    ({"source_dataset_id": "{L}", "labels": {"team\u0000": "x"}}, "invalid_input", "a key in labels contains a NUL"),
])
def test_bad_bodies_are_400_with_the_reason_and_write_nothing(org, stack, body, code, fragment):
    library_id = _library(org)
    before = _trainings(stack, org)
    raw = json.dumps(body).replace("{L}", library_id).encode()  # json.dumps escapes NUL and lone surrogates
    with _http(org) as http:
        _error(http.post("/v1/trainings/", content=raw, headers={"content-type": "application/json"}), 400, code, fragment)
    assert _trainings(stack, org) == before


def test_malformed_requests_get_json_errors_with_the_right_status(org, stack):
    with _http(org) as http:
        _error(http.post("/v1/trainings", content=b"{not json", headers={"content-type": "application/json"}), 400,
               "invalid_input", "not valid JSON")
        _error(http.post("/v1/trainings", content=b"[1]", headers={"content-type": "application/json"}), 400,
               "invalid_input", "JSON object")
        _error(http.post("/v1/trainings", content=b"a=b", headers={"content-type": "application/x-www-form-urlencoded"}), 400,
               "invalid_input", "Content-Type")
        _error(http.post("/v1/trainings", content=b"[" * 100_000 + b"]" * 100_000,
                         headers={"content-type": "application/json"}), 400, "invalid_input")
        for constant in (b"NaN", b"Infinity", b"-Infinity"):
            _error(http.post("/v1/trainings", content=b'{"source_dataset_id": "x", "config": {"minSize": ' + constant + b"}}",
                             headers={"content-type": "application/json"}), 400, "invalid_input", "not a JSON value")
        _error(http.put("/v1/trainings", json={}), 405, "not_allowed")
        _error(http.patch(f"/v1/trainings/{MADE_UP}", json={}), 405, "not_allowed")
        _error(http.get("/v1/trainings", params={"limit": "ten"}), 400, "invalid_input", "limit")
        _error(http.get("/v1/trainings", params={"limit": 100_000}), 400, "invalid_input")
        for huge in ("9223372036854775808", "7168785019258537875827347947520", "-9223372036854775809"):
            _error(http.get("/v1/trainings", params={"offset": huge}), 400, "invalid_input", "offset")
        _error(http.post("/v1/trainings", json={"source_dataset_id": MADE_UP}), 404, "not_found")
        _error(http.post("/v1/trainings", json={"source_dataset_id": "not-an-id"}), 404, "not_found")  # names no object
        _error(http.get("/v1/trainings/not-an-id"), 404, "not_found")
        big = b'{"source_dataset_id": "' + b"x" * (9 * 1024 * 1024) + b'"}'
        _error(http.post("/v1/trainings", content=big, headers={"content-type": "application/json"}), 413, "invalid_input")
    # A library type whose identifier types no engine is the default for.
    suffix = uuid.uuid4().hex[:8]
    type_id = org.client.query('mutation($id: ID!) { createEntityIdentifierType(input: {id: $id, label: "L", labelPlural: "Ls", dataType: image}) { id } }',
                               id=f"logo-{suffix}").ok()["createEntityIdentifierType"]["id"]
    library_type = org.client.query(
        'mutation($id: ID!, $t: ID!) { createLibraryType(input: {id: $id, label: "Logos", entityIdentifierTypeIds: [$t], '
        'entityType: {name: "logo", namePlural: "logos", schema: {}}}) { id } }', id=f"logos-{suffix}", t=type_id,
    ).ok()["createLibraryType"]["id"]
    library_id = org.create_library("logos", library_type)
    with _http(org) as http:
        _error(http.post("/v1/trainings", json={"source_dataset_id": library_id}), 400, "invalid_input", "no installed engine is the default")


def test_auth_scopes_and_tenancy(org, other_org, stack):
    library_id = _library(org)
    with _http(org) as http:
        training = http.post("/v1/trainings", json={"source_dataset_id": library_id}).json()
    routes = [("GET", "/v1/trainings/", None), ("POST", "/v1/trainings/", {"source_dataset_id": library_id}),
              ("GET", f"/v1/trainings/{training['id']}", None), ("DELETE", f"/v1/trainings/{training['id']}", None)]
    before = _trainings(stack, org)
    for token in (None, "es_not-a-real-token", "es_" + "A" * 64):
        with _http(org, token) as http:
            for method, path, body in routes:
                response = http.request(method, path, json=body)
                _error(response, 401, "authentication_error")
                assert response.headers["www-authenticate"].startswith("Bearer")
    reader = org.token_for("read")
    with _http(org, reader) as http:
        assert http.get("/v1/trainings/").status_code == 200
        assert http.get(f"/v1/trainings/{training['id']}").status_code == 200
        _error(http.post("/v1/trainings/", json={"source_dataset_id": library_id}), 403, "not_allowed")
        _error(http.delete(f"/v1/trainings/{training['id']}"), 403, "not_allowed")
    # Another organization: the first one's IDs answer exactly like made-up ones.
    with _http(other_org) as http:
        assert http.get("/v1/trainings/").json()["total_count"] == 0
        for method, path in (("GET", "/v1/trainings/{}"), ("DELETE", "/v1/trainings/{}")):
            real = http.request(method, path.format(training["id"]))
            fake = http.request(method, path.format(MADE_UP))
            assert (real.status_code, real.json()) == (fake.status_code, fake.json()) == (404, fake.json())
        real = http.post("/v1/trainings/", json={"source_dataset_id": library_id})
        fake = http.post("/v1/trainings/", json={"source_dataset_id": MADE_UP})
        assert (real.status_code, real.json()) == (fake.status_code, fake.json())
        assert real.status_code == 404
    assert _trainings(stack, org) == before
    with _http(org) as http:
        assert http.get(f"/v1/trainings/{training['id']}").json()["state"] == "waiting"


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**9, 10**9), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
FIELDS = ["source_dataset_id", "output_model_name", "output_model_description", "output_model_changelog", "config",
          "labels", "auto_promote"]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), json_values, max_size=6) | json_values)
def test_fuzzed_post_bodies_get_a_clean_json_reply(org, body):
    with _http(org) as http:
        response = http.post("/v1/trainings/", json=body)
    assert response.status_code < 500, response.text
    assert not LEAK.search(response.text), response.text
    assert "error" in response.json() or response.status_code == 201


@pytest.mark.parametrize(("library_type", "engine_id", "training_type"), [
    # The face engine lists "face" first, the gallery second; this session registers no face models (an offline
    # install), so the face engine is passed over for the gallery (tests/api/test_trainings_offline_face.py).
    ("people", "engineshed-gallery", "face"),
    ("objects", "engineshed-gallery", "image"),
    ("speakers", "engineshed-speaker", "audio-recording"),
])
def test_a_training_uses_the_default_engine_of_the_librarys_first_identifier_type(org, library_type, engine_id, training_type):
    library_id = org.create_library("typed", library_type)
    with _http(org) as http:
        created = http.post("/v1/trainings/", json={"source_dataset_id": library_id})
    assert created.status_code == 201, created.text
    assert created.json()["type"] == training_type and created.json()["source_dataset"]["type"] == training_type
    job = org.client.query('query($id: ID!) { job(id: $id) { tasks { records { engineId } } } }', id=created.json()["id"]).ok()
    assert job["job"]["tasks"]["records"][0]["engineId"] == engine_id


def test_an_external_engines_training_has_the_type_its_engine_reads(org):
    engine_id = f"ext-{uuid.uuid4().hex[:8]}"
    org.client.query('mutation($id: ID!) { createEngine(input: {id: $id, identifierTypeIds: ["image"], modes: ["library-train"]}) { id } }',
                     id=engine_id).ok()
    library_id = _library(org)
    model_id = org.client.query("mutation($e: ID!, $l: ID!) { createLibraryEngineModel(input: {engineId: $e, libraryId: $l}) { id } }",
                                e=engine_id, l=library_id).ok()["createLibraryEngineModel"]["id"]
    job_id = org.client.query(
        "mutation($t: [CreateTask!]) { createJob(input: {tasks: $t}) { id } }",
        t=[{"engineId": engine_id, "payload": {"mode": "library-train", "libraryId": library_id, "libraryEngineModelId": model_id}}],
    ).ok()["createJob"]["id"]
    with _http(org) as http:
        training = http.get(f"/v1/trainings/{job_id}").json()
    assert training["type"] == "image" and training["source_dataset"]["type"] == "image", training
