"""Every Query and Mutation field of the schema (found by introspection) called with minimal arguments:
without a token, with a bad token, with a ``read`` token, and with another organization's admin token on
the first organization's IDs, which must answer exactly as for an ID that does not exist."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.reliability.conftest import assert_clean, library_with_images, train

# field -> a document calling it with minimal arguments; {L} {E} {I} {M} {J} {T} are IDs filled in.
QUERIES = {
    "library": 'query { library(id: "{L}") { id } }',
    "libraries": "query { libraries { count } }",
    "entity": 'query { entity(id: "{E}") { id } }',
    "entities": 'query { entities(libraryIds: ["{L}"]) { count } }',
    "entityIdentifier": 'query { entityIdentifier(id: "{I}") { id } }',
    "libraryTypes": "query { libraryTypes { count } }",
    "libraryType": 'query { libraryType(id: "people") { id } }',
    "entityIdentifierTypes": "query { entityIdentifierTypes { count } }",
    "entityIdentifierType": 'query { entityIdentifierType(id: "face") { id } }',
    "libraryEngineModel": 'query { libraryEngineModel(id: "{M}") { id } }',
    "engine": 'query { engine(id: "test-sleeper") { id } }',
    "engines": "query { engines { count } }",
    "engineCategories": "query { engineCategories { count } }",
    "engineResults": 'query { engineResults(jobId: "{J}") { count } }',
    "job": 'query { job(id: "{J}") { id } }',
    "jobs": "query { jobs { count } }",
    "task": 'query { task(id: "{T}") { id } }',
    "recognize": 'query { recognize(libraryEngineModelId: "{M}", url: "http://192.0.2.1/x.png") { __typename } }',
    "me": "query { me { id organizationId organization { id } } }",
    "models": "query { models { count } }",
    "model": 'query { model(name: "{N}") { id } }',
    "tokens": "query { tokens { id } }",
    "webhooks": "query { webhooks { count } }",
    "webhook": 'query { webhook(id: "{W}") { id } }',
    "webhookDeliveries": 'query { webhookDeliveries(webhookId: "{W}") { count } }',
    "unassignedIdentifiers": 'query { unassignedIdentifiers(libraryId: "{L}") { count } }',
    "suggestions": 'query { suggestions(jobId: "{J}") { count } }',
    "identifierGroups": 'query { identifierGroups(jobId: "{J}") { count } }',
    "embeddingVectors": 'query { embeddingVectors(uniqueNames: ["matrix-none.png"], libraryId: "{L}") { uniqueName } }',
    "similarIdentifiers": 'query { similarIdentifiers(identifierId: "{I}", modelId: "{N}") { score } }',
    "getSignedWritableUrl": 'query { getSignedWritableUrl(key: "matrix.png") { key url } }',
    "getSignedWritableUrls": "query { getSignedWritableUrls(number: 2) { key url } }",
    "segments": 'query { segments(jobId: "{J}") { count } }',
}
MUTATIONS = {
    "createLibrary": 'mutation { createLibrary(input: {name: "x", libraryTypeId: "people"}) { id } }',
    "updateLibrary": 'mutation { updateLibrary(input: {id: "{L}", name: "renamed"}) { id } }',
    "deleteLibrary": 'mutation { deleteLibrary(id: "{L}") { id } }',
    "publishLibrary": 'mutation { publishLibrary(id: "{L}") { id } }',
    "createEntity": 'mutation { createEntity(input: {name: "x", libraryId: "{L}"}) { id } }',
    "updateEntity": 'mutation { updateEntity(input: {id: "{E}", name: "renamed"}) { id } }',
    "deleteEntity": 'mutation { deleteEntity(id: "{E}") { id } }',
    "createEntityIdentifier": 'mutation { createEntityIdentifier(input: {entityId: "{E}", identifierTypeId: "face", url: "http://192.0.2.1/x.png"}) { id } }',
    "updateEntityIdentifier": 'mutation { updateEntityIdentifier(input: {id: "{I}", title: "t"}) { id } }',
    "deleteEntityIdentifier": 'mutation { deleteEntityIdentifier(id: "{I}") { id } }',
    "createLibraryEngineModel": 'mutation { createLibraryEngineModel(input: {engineId: "test-sleeper", libraryId: "{L}"}) { id } }',
    "updateLibraryEngineModel": 'mutation { updateLibraryEngineModel(input: {id: "{M}", accuracy: 1}) { id } }',
    "deleteLibraryEngineModel": 'mutation { deleteLibraryEngineModel(id: "{M}") { id } }',
    "createJob": 'mutation { createJob(input: {tasks: [{engineId: "test-sleeper", payload: {mode: "library-train", libraryId: "{L}", libraryEngineModelId: "{M}"}}]}) { id } }',
    "cancelJob": 'mutation { cancelJob(id: "{J}") { id } }',
    "retryJob": 'mutation { retryJob(id: "{J}") { id } }',
    "deleteJob": 'mutation { deleteJob(id: "{J}") { id } }',
    "createEngine": 'mutation { createEngine(input: {id: "matrix-engine", identifierTypeIds: ["face"]}) { id } }',
    "claimTasks": 'mutation { claimTasks(engineId: "test-sleeper") { __typename } }',
    "heartbeatTask": 'mutation { heartbeatTask(id: "{T}", progress: 0.5) { __typename } }',
    "completeTask": 'mutation { completeTask(id: "{T}") { id } }',
    "failTask": 'mutation { failTask(id: "{T}") { id } }',
    "releaseTask": 'mutation { releaseTask(id: "{T}") { id } }',
    "createEntityIdentifierType": 'mutation { createEntityIdentifierType(input: {id: "matrix-logo", label: "Logo", labelPlural: "Logos", dataType: image}) { id } }',
    "updateEntityIdentifierType": 'mutation { updateEntityIdentifierType(input: {id: "{IT}", label: "renamed"}) { id } }',
    "createLibraryType": 'mutation { createLibraryType(input: {id: "matrix-brands", label: "Brands", entityIdentifierTypeIds: ["image"], entityType: {name: "brand", namePlural: "brands", schema: {}}}) { id } }',
    "updateLibraryType": 'mutation { updateLibraryType(input: {id: "{LT}", label: "renamed"}) { id } }',
    "registerModel": 'mutation { registerModel(input: {name: "x", application: embedding, url: "http://192.0.2.1/x.onnx"}) { id } }',
    "updateModel": 'mutation { updateModel(input: {name: "{N}", description: "d"}) { id } }',
    "setModelAlias": 'mutation { setModelAlias(name: "{N}", version: 1, alias: "stable") { id } }',
    "deleteModelVersion": 'mutation { deleteModelVersion(name: "{N}", version: 1) { id } }',
    "createToken": "mutation { createToken(input: {scope: read}) { id token } }",
    "revokeToken": 'mutation { revokeToken(id: "{K}") { id } }',
    "createWebhook": 'mutation { createWebhook(input: {url: "https://93.184.215.14/hook", events: [job_complete]}) { id secret } }',
    "updateWebhook": 'mutation { updateWebhook(input: {id: "{W}", description: "renamed"}) { id } }',
    "deleteWebhook": 'mutation { deleteWebhook(id: "{W}") { id } }',
    "rotateWebhookSecret": 'mutation { rotateWebhookSecret(id: "{W}") { id secret } }',
    "redeliverWebhook": 'mutation { redeliverWebhook(deliveryId: "{WD}") { id } }',
    "setDefaultModel": 'mutation { setDefaultModel(libraryEngineModelId: "{M}") { id } }',
    "autoTag": 'mutation { autoTag(input: {libraryId: "{L}", libraryEngineModelId: "{M}"}) { id } }',
    "findHardExamples": 'mutation { findHardExamples(input: {libraryId: "{L}", libraryEngineModelId: "{M}"}) { id } }',
    "autoGroup": 'mutation { autoGroup(input: {libraryId: "{L}", nClusters: 1}) { id } }',
    "acceptSuggestions": 'mutation { acceptSuggestions(ids: ["{S}"]) { id } }',
    "rejectSuggestions": 'mutation { rejectSuggestions(ids: ["{S}"]) { id } }',
    "createEntityFromGroup": 'mutation { createEntityFromGroup(groupId: "{G}", name: "named") { id } }',
    "mergeGroupIntoEntity": 'mutation { mergeGroupIntoEntity(groupId: "{G}", entityId: "{E}") { id } }',
    "mergeEntities": 'mutation { mergeEntities(targetId: "{E}", sourceIds: ["{E2}"]) { id } }',
    "markIdentifierNotEntity": 'mutation { markIdentifierNotEntity(identifierId: "{I}", entityId: "{E2}") { unassigned } }',
    "unmarkIdentifierNotEntity": 'mutation { unmarkIdentifierNotEntity(identifierId: "{I}", entityId: "{E2}") { id } }',
    "generateEmbeddings": 'mutation { generateEmbeddings(libraryId: "{L}", modelId: "{N}") { id } }',
    "insertEmbeddings": 'mutation { insertEmbeddings(modelId: "{N}", vectorDimension: [2], embeddings: [{uniqueName: "x.png", embeddings: [1, 2]}], libraryId: "{L}") { inserted } }',
    "recognizeMedia": 'mutation { recognizeMedia(libraryEngineModelId: "{M}", url: "http://192.0.2.1/x.mp4") { id } }',
}
# REST routes (gateway/rest/): method, path, JSON body; the same IDs filled in. What a read token may not do
# answers 403 not_allowed; another organization's IDs answer 404 exactly like made-up ones.
REST_ROUTES = {
    "list trainings": ("GET", "/v1/trainings/", None),
    "start training": ("POST", "/v1/trainings/", {"source_dataset_id": "{L}"}),
    "get training": ("GET", "/v1/trainings/{J}", None),
    "delete training": ("DELETE", "/v1/trainings/{J}", None),
    # Seed 004's intelligent tasks: {P} is the caller's own project (organization) id, so another organization
    # asks with its own project for the first one's dataset and task.
    "start labeling task": ("POST", "/v2/{P}/datasets/{L}/tasks", {"task_type": "pre-label", "model_id": "{M}"}),
    "get labeling task": ("GET", "/v2/{P}/datasets/{L}/tasks/{LJ}", None),
    # A job's timeline page (HTML; JSON errors): read like the job itself.
    "job timeline": ("GET", "/v3/jobs/{J}/timeline", None),
    # A video as the raw body, recognized as a job: a write, refused before the (here empty) body is read.
    "upload media": ("POST", "/v3/media?libraryEngineModelId={M}", None),
}
REST_WRITES = {"start training", "delete training", "start labeling task", "upload media"}
REST_NO_FOREIGN_ID = {"list trainings"}
# Routes whose capability is a signature in the URL, not a token (gateway/web/files.py): {K} is the storage key
# of the first organization's identifier, the signature a made-up one.
SIGNED_ROUTES = {
    "file link": ("GET", "/v3/files/{K}?expires=9999999999&signature=" + "A" * 43),
    "file link head": ("HEAD", "/v3/files/{K}?expires=9999999999&signature=" + "A" * 43),
}
# Fields that take none of the first organization's IDs: no tenancy question to ask of them.
NO_FOREIGN_ID = {"libraries", "libraryTypes", "libraryType", "entityIdentifierTypes", "entityIdentifierType",
                 "engine", "engines", "engineCategories", "jobs", "createLibrary", "createEngine", "claimTasks",
                 "createEntityIdentifierType", "createLibraryType", "me",
                 "models", "registerModel", "tokens", "createToken", "getSignedWritableUrl", "getSignedWritableUrls"}
# Fields only an engine or task token may call: an admin token of any organization is refused for its
# scope before the ID is looked at (the same answer for a real and a made-up ID, so nothing leaks).
ENGINE_ONLY = {"claimTasks", "heartbeatTask", "completeTask", "failTask", "releaseTask"}
# Queries a read token may not call either: managing the organization's tokens is for admin tokens.
ADMIN_ONLY_QUERIES = {"tokens", "getSignedWritableUrl", "getSignedWritableUrls"}  # writable URLs: uploads are writes
# List fields filtered by the first organization's IDs: an empty page, as for made-up IDs.
EMPTY_LIST = {"entities", "suggestions"}
# Webhooks are managed by admin tokens only; listing and creating name none of the first organization's IDs.
NO_FOREIGN_ID |= {"webhooks", "createWebhook"}
ADMIN_ONLY_QUERIES |= {"webhooks", "webhook", "webhookDeliveries"}


def _doc(template: str, ids: dict[str, str]) -> str:
    for key, value in ids.items():
        template = template.replace("{" + key + "}", value)
    return template


@pytest.fixture
def first_org_ids(org, stack) -> dict[str, str]:
    library_id = library_with_images(org, 1)
    entity_id = org.client.query('query($l: ID!) { library(id: $l) { entities { records { id identifiers { records { id } } } } } }',
                                 l=library_id).ok()["library"]["entities"]["records"][0]
    job_id, task_id, model_id = train(org.client, library_id, seconds=0)
    token_id = org.client.query("mutation { createToken(input: {scope: read}) { id } }").ok()["createToken"]["id"]
    suffix = uuid.uuid4().hex[:8]
    identifier_type = org.client.query(
        'mutation($id: ID!) { createEntityIdentifierType(input: {id: $id, label: "Mark", labelPlural: "Marks", dataType: image}) { id } }',
        id=f"mark-{suffix}").ok()["createEntityIdentifierType"]["id"]
    library_type = org.client.query(
        'mutation($id: ID!, $t: ID!) { createLibraryType(input: {id: $id, label: "Marks", entityIdentifierTypeIds: [$t], '
        'entityType: {name: "mark", namePlural: "marks", schema: {}}}) { id } }', id=f"marks-{suffix}", t=identifier_type,
    ).ok()["createLibraryType"]["id"]
    identifier_id = entity_id["identifiers"]["records"][0]["id"]
    suggestion_id, group_id = _labeling_rows(stack, org, library_id, job_id, identifier_id, entity_id["id"])
    labeling_job = _labeling_job(stack, org, library_id)
    # A second entity of the library: what mergeEntities merges and markIdentifierNotEntity names (marked already,
    # so unmarkIdentifierNotEntity has something to take back).
    second = org.client.query('mutation($l: ID!) { createEntity(input: {libraryId: $l, name: "second"}) { id } }',
                              l=library_id).ok()["createEntity"]["id"]
    stack.db.execute("INSERT INTO identifier_negatives (org_id, identifier_id, entity_id, library_id) VALUES ($1, $2, $3, $4)",
                     org.id, uuid.UUID(identifier_id), uuid.UUID(second), uuid.UUID(library_id))
    webhook_id, delivery_id = _webhook_rows(stack, org)
    return {"W": webhook_id, "WD": delivery_id,
            "L": library_id, "E": entity_id["id"], "E2": second, "I": identifier_id, "M": model_id,
            "J": job_id, "T": task_id, "IT": identifier_type, "LT": library_type,
            "N": _registered_model(org), "K": token_id, "S": suggestion_id, "G": group_id,
            "LJ": labeling_job, "P": str(org.id)}


def _labeling_rows(stack, org, library_id: str, job_id: str, identifier_id: str, entity_id: str) -> tuple[str, str]:
    """A suggestion and an auto-grouping group of the first organization, as a labeling job leaves them (written
    directly: running a model here would only slow the matrix down)."""
    suggestion, group = uuid.uuid4(), uuid.uuid4()
    lid, jid, iid = uuid.UUID(library_id), uuid.UUID(job_id), uuid.UUID(identifier_id)
    stack.db.execute(
        "INSERT INTO identifier_suggestions (id, org_id, job_id, identifier_id, library_id, entity_id, label, confidence) "
        "VALUES ($1, $2, $3, $4, $5, $6, 'person 0', 0.9)", suggestion, org.id, jid, iid, lid, uuid.UUID(entity_id),
    )
    stack.db.execute(
        "INSERT INTO identifier_groups (id, org_id, job_id, library_id, position, representative_id) VALUES ($1, $2, $3, $4, 0, $5)",
        group, org.id, jid, lid, iid,
    )
    stack.db.execute("INSERT INTO identifier_group_members (group_id, identifier_id, distance) VALUES ($1, $2, 0)", group, iid)
    return str(suggestion), str(group)



def _labeling_job(stack, org, library_id: str) -> str:
    """A queued auto-grouping job with its one task, as autoGroup leaves it (written directly, like the rows above)."""
    job, task = uuid.uuid4(), uuid.uuid4()
    stack.db.execute("INSERT INTO jobs (id, org_id, status, library_id) VALUES ($1, $2, 'queued', $3)",
                     job, org.id, uuid.UUID(library_id))
    stack.db.execute(
        "INSERT INTO tasks (id, org_id, job_id, engine_id, status, payload) "
        "VALUES ($1, $2, $3, 'engineshed-labeling', 'queued', '{\"mode\": \"auto-group\"}'::jsonb)", task, org.id, job,
    )
    return str(job)


def _webhook_rows(stack, org) -> tuple[str, str]:
    """A webhook of the first organization (disabled: nothing is ever sent to it) and one finished delivery of it
    (written directly, as a worker leaves it)."""
    webhook_id = org.client.query(
        'mutation { createWebhook(input: {url: "https://93.184.215.14/hook", events: [job_cancelled]}) { id } }'
    ).ok()["createWebhook"]["id"]
    org.client.query('mutation($id: ID!) { updateWebhook(input: {id: $id, enabled: false}) { id } }', id=webhook_id).ok()
    delivery = uuid.uuid4()
    stack.db.execute(
        "INSERT INTO webhook_deliveries (id, org_id, webhook_id, event, data, status, attempts) "
        "VALUES ($1, $2, $3, 'job_cancelled', '{}'::jsonb, 'failed', 1)", delivery, org.id, uuid.UUID(webhook_id),
    )
    return webhook_id, str(delivery)


def _registered_model(org) -> str:
    """A model of the first organization (validating is enough: nothing here runs it)."""
    from sampledata.onnx_models import conv_net, normalised_manifest

    name = "matrix-model"
    org.client.upload_form(
        'mutation($input: RegisterModel!) { registerModel(input: $input) { id } }', conv_net(), "application/octet-stream",
        filename="m.onnx", variables={"input": {"name": name, "application": "embedding", "manifest": normalised_manifest()}},
    ).ok()
    return name


def test_the_matrix_covers_every_query_and_mutation_field(org):
    data = org.client.query("{ __schema { queryType { fields { name } } mutationType { fields { name } } } }").ok()
    assert {f["name"] for f in data["__schema"]["queryType"]["fields"]} == set(QUERIES)
    assert {f["name"] for f in data["__schema"]["mutationType"]["fields"]} == set(MUTATIONS)


@pytest.mark.parametrize("token", [None, "es_not-a-real-token", "Bearer-less garbage", "es_" + "A" * 64])
def test_every_field_without_a_valid_token_is_401_authentication_error(gateway, first_org_ids, token):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(headers=headers, timeout=30) as http:
        for name, template in {**QUERIES, **MUTATIONS}.items():
            response = http.post(gateway.url + "/v3/graphql", json={"query": _doc(template, first_org_ids)})
            assert response.status_code == 401, (name, response.status_code, response.text[:300])
            body = response.json()
            assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "authentication_error", (name, body)
            assert_clean(body)


# What a read token gets from each mutation: not_allowed, always (the scope is checked before arguments).
READ_TOKEN_MUTATION_CODE = {name: "not_allowed" for name in MUTATIONS}


def test_a_read_token_may_call_every_query_and_no_mutation(org, first_org_ids, stack):
    reader = org.client_for("read")
    counts_before = _counts(stack, org)
    for name, template in QUERIES.items():
        reply = reader.query(_doc(template, first_org_ids))
        assert_clean(reply.body)
        if name == "recognize":  # runs, and refuses the URL (a documentation address, never fetched)
            assert reply.error_code in ("invalid_input", "not_found"), reply.body
        elif name == "similarIdentifiers":  # runs, and refuses the model: no worker has run its trial yet
            assert reply.error_code == "invalid_input" and "only ready versions" in reply.error_message, reply.body
        elif name in ADMIN_ONLY_QUERIES:
            assert reply.error_code == "not_allowed" and not (reply.data or {}).get(name), (name, reply.body)
        else:
            assert reply.status == 200 and not reply.errors, (name, reply.body)
    for name, template in MUTATIONS.items():
        reply = reader.query(_doc(template, first_org_ids))
        assert_clean(reply.body)
        assert reply.error_code == READ_TOKEN_MUTATION_CODE[name], (name, reply.body)
        assert not (reply.data or {}).get(name), (name, reply.body)
    assert _counts(stack, org) == counts_before


def _counts(stack, org) -> tuple[int, ...]:
    return tuple(
        stack.db.fetchval(f"SELECT count(*) FROM {table} WHERE org_id = $1", org.id)
        for table in ("libraries", "entities", "entity_identifiers", "library_engine_models", "jobs", "tasks", "models",
                      "model_versions")
    )


def test_another_organization_gets_not_found_for_the_first_ones_ids_exactly_as_for_made_up_ids(org, other_org, first_org_ids, stack):
    made_up = {key: str(uuid.uuid4()) for key in first_org_ids}
    counts_before = _counts(stack, org)
    look = _doc('query { library(id: "{L}") { name version } entity(id: "{E}") { name } }', first_org_ids)
    before = org.client.query(look).ok()
    checked = 0
    for name, template in {**QUERIES, **MUTATIONS}.items():
        if name in NO_FOREIGN_ID:
            continue
        real = other_org.client.query(_doc(template, first_org_ids))
        fake = other_org.client.query(_doc(template, made_up))
        for reply in (real, fake):
            assert_clean(reply.body)
        if name in EMPTY_LIST:
            assert real.status == fake.status == 200 and not real.errors and not fake.errors, (name, real.body, fake.body)
            assert real.data == fake.data and real.data[name]["count"] == 0, (name, real.body, fake.body)
            checked += 1
            continue
        expected = "not_allowed" if name in ENGINE_ONLY else "not_found"
        assert (real.status, real.error_code) == (fake.status, fake.error_code) == (200, expected), (name, real.body, fake.body)
        assert real.errors[0]["message"] == fake.errors[0]["message"], (name, real.body, fake.body)
        checked += 1
    assert checked == len(QUERIES) + len(MUTATIONS) - len(NO_FOREIGN_ID)
    # Nothing of the first organization changed.
    assert _counts(stack, org) == counts_before
    assert org.client.query(look).ok() == before


def _code(response: httpx.Response) -> str:
    """The error code in either REST error shape: /v1's {"error": {"code"}} or seed 004's {"error_code"}."""
    body = response.json()
    return body["error"]["code"] if "error" in body else body["error_code"]


def _rest(http: httpx.Client, url: str, route: tuple, ids: dict[str, str]) -> httpx.Response:
    method, path, body = route
    body = None if body is None else {k: _doc(v, ids) for k, v in body.items()}
    return http.request(method, url + _doc(path, ids), json=body)


@pytest.mark.parametrize("token", [None, "es_not-a-real-token", "es_" + "A" * 64])
def test_every_rest_route_without_a_valid_token_is_401(gateway, first_org_ids, token):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(headers=headers, timeout=30) as http:
        for name, route in REST_ROUTES.items():
            response = _rest(http, gateway.url, route, first_org_ids)
            assert response.status_code == 401, (name, response.text)
            assert _code(response) == "authentication_error", (name, response.text)
            assert_clean(response.text)


def test_a_read_token_may_read_every_rest_route_and_write_none(org, first_org_ids, stack):
    counts_before = _counts(stack, org)
    with httpx.Client(headers={"Authorization": f"Bearer {org.token_for('read')}"}, timeout=30) as http:
        for name, route in REST_ROUTES.items():
            response = _rest(http, org.gateway.url, route, first_org_ids)
            assert_clean(response.text)
            if name in REST_WRITES:
                assert (response.status_code, _code(response)) == (403, "not_allowed"), (name, response.text)
            else:
                assert response.status_code == 200, (name, response.text)
    assert _counts(stack, org) == counts_before


@pytest.mark.parametrize("who", ["no token", "owner", "other organization"])
def test_signed_routes_grant_nothing_to_a_token_and_answer_a_real_key_as_a_made_up_one(org, other_org, first_org_ids,
                                                                                       stack, who):
    key = stack.db.fetchval("SELECT storage_key FROM entity_identifiers WHERE id = $1", uuid.UUID(first_org_ids["I"]))
    assert key and key.startswith(str(org.id))
    made_up = f"{org.id}/{uuid.uuid4()}/{uuid.uuid4().hex}"
    token = {"no token": None, "owner": org.token, "other organization": other_org.token}[who]
    with httpx.Client(headers={"Authorization": f"Bearer {token}"} if token else {}, timeout=30) as http:
        for name, (method, path) in SIGNED_ROUTES.items():
            real = http.request(method, org.gateway.url + path.replace("{K}", key))
            fake = http.request(method, org.gateway.url + path.replace("{K}", made_up))
            assert real.status_code == fake.status_code == 403, (name, real.text)
            assert real.content == fake.content, (name, real.text, fake.text)
            if method == "GET":
                assert_clean(real.text)
                assert real.json()["error"]["code"] == "not_allowed", (name, real.text)


def test_another_organization_gets_404_on_rest_routes_exactly_as_for_made_up_ids(org, other_org, first_org_ids, stack):
    made_up = {key: str(uuid.uuid4()) for key in first_org_ids}
    # The other organization names its own project (the first one's would be refused before any ID is read).
    theirs = {**first_org_ids, "P": str(other_org.id)}
    made_up["P"] = str(other_org.id)
    counts_before = _counts(stack, org)
    with httpx.Client(headers={"Authorization": f"Bearer {other_org.token}"}, timeout=30) as http:
        for name, route in REST_ROUTES.items():
            if name in REST_NO_FOREIGN_ID:
                continue
            real = _rest(http, org.gateway.url, route, theirs)
            fake = _rest(http, org.gateway.url, route, made_up)
            assert_clean(real.text)
            assert (real.status_code, real.json()) == (fake.status_code, fake.json()), (name, real.text, fake.text)
            assert real.status_code == 404, (name, real.text)
    assert _counts(stack, org) == counts_before
