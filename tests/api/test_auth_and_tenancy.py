"""Who may call, and what they may see: tokens, scopes, and organizations that never see each other."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import assert_clean_error_text, identifier_rows, org_keys, random_bytes
from tests.graphql_client import GraphQLClient

QUERY = "query { libraries { count } }"


def post(gateway_url: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(gateway_url + "/v3/graphql", json={"query": QUERY}, headers=headers, timeout=30)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer\t-"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Token es_abc"},
        {"Authorization": "Bearer es_" + "x" * 600},
        {"Authorization": "Bearer es_this-token-was-never-issued"},
    ],
    ids=["none", "empty", "scheme-only", "scheme-tab", "basic", "other-scheme", "too-long", "unknown"],
)
def test_a_missing_malformed_or_unknown_token_is_401_authentication_error(gateway, headers):
    response = post(gateway.url, headers)
    assert response.status_code == 401
    body = response.json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "authentication_error"
    assert body["errors"][0]["name"] == "authentication_error"
    assert response.headers.get("www-authenticate", "").startswith("Bearer")
    assert_clean_error_text(body)


def test_an_unauthenticated_mutation_is_401_and_creates_nothing(gateway, org):
    client = GraphQLClient(gateway.url, None)
    try:
        reply = client.query('mutation { createLibrary(input: {name: "sneaky", libraryTypeId: "people"}) { id } }')
    finally:
        client.close()
    assert reply.status == 401
    assert reply.error_code == "authentication_error"
    assert org.client.query(QUERY).ok()["libraries"]["count"] == 0


def test_an_unauthenticated_upload_is_401_and_stores_nothing(gateway, org, stack, bucket):
    entity = org.create_entity(org.create_library(), "Ada")
    client = GraphQLClient(gateway.url, "es_unknown")
    try:
        reply = client.upload_form(
            f'mutation {{ createEntityIdentifier(input: {{entityId: "{entity}", identifierTypeId: "face"}}) {{ id }} }}',
            b"data", "image/png",
        )
    finally:
        client.close()
    assert reply.status == 401
    assert identifier_rows(stack, org) == []
    assert org_keys(bucket, org) == []


def test_the_bearer_scheme_is_case_insensitive(gateway, org):
    response = post(gateway.url, {"Authorization": f"bearer {org.token}"})
    assert response.status_code == 200
    assert response.json()["data"]["libraries"]["count"] == 0


def test_a_read_token_may_query_but_not_mutate(org):
    library_id = org.create_library("mine")
    entity_id = org.create_entity(library_id, "Ada")
    reader = org.client_for("read")
    assert reader.query(f'query {{ library(id: "{library_id}") {{ name }} }}').ok()["library"]["name"] == "mine"
    mutations = [
        'mutation { createLibrary(input: {name: "x", libraryTypeId: "people"}) { id } }',
        f'mutation {{ updateLibrary(input: {{id: "{library_id}", name: "renamed"}}) {{ id }} }}',
        f'mutation {{ deleteLibrary(id: "{library_id}") {{ id }} }}',
        f'mutation {{ publishLibrary(id: "{library_id}") {{ id }} }}',
        f'mutation {{ createEntity(input: {{libraryId: "{library_id}", name: "x"}}) {{ id }} }}',
        f'mutation {{ updateEntity(input: {{id: "{entity_id}", name: "y"}}) {{ id }} }}',
        f'mutation {{ deleteEntity(id: "{entity_id}") {{ id }} }}',
    ]
    for mutation in mutations:
        reply = reader.query(mutation)
        assert reply.error_code == "not_allowed", mutation
    upload = reader.upload_form(
        f'mutation {{ createEntityIdentifier(input: {{entityId: "{entity_id}", identifierTypeId: "face"}}) {{ id }} }}', b"x", "image/png"
    )
    assert upload.error_code == "not_allowed"
    after = org.client.query(
        f'query {{ library(id: "{library_id}") {{ name version entities {{ count records {{ name }} }} }} libraries {{ count }} }}'
    ).ok()
    assert after["library"] == {"name": "mine", "version": 0, "entities": {"count": 1, "records": [{"name": "Ada"}]}}
    assert after["libraries"]["count"] == 1


class TestTenancy:
    @pytest.fixture
    def theirs(self, other_org):
        library_id = other_org.create_library("secret")
        entity_id = other_org.create_entity(library_id, "Hidden", jsondata={"k": 1})
        identifier_id = other_org.add_identifier(entity_id, random_bytes())
        return {"library": library_id, "entity": entity_id, "identifier": identifier_id}

    def snapshot(self, other_org, theirs):
        return other_org.client.query(
            f'query {{ library(id: "{theirs["library"]}") {{ name description version '
            f'entities {{ records {{ name jsondata identifiers {{ records {{ id title }} }} }} }} }} }}'
        ).ok()

    def test_another_organizations_objects_are_not_found_for_reads(self, org, theirs):
        for query in (
            f'query {{ library(id: "{theirs["library"]}") {{ id }} }}',
            f'query {{ entity(id: "{theirs["entity"]}") {{ id }} }}',
            f'query {{ entityIdentifier(id: "{theirs["identifier"]}") {{ id }} }}',
        ):
            reply = org.client.query(query)
            assert reply.error_code == "not_found", query
            assert reply.error_message == "The requested object was not found"
        listing = org.client.query(
            f'query {{ libraries {{ count }} entities(libraryIds: "{theirs["library"]}") {{ count totalCount }} '
            f'byId: entities(ids: ["{theirs["entity"]}"]) {{ count }} libraries2: libraries(id: "{theirs["library"]}") {{ count }} }}'
        ).ok()
        assert listing == {"libraries": {"count": 0}, "entities": {"count": 0, "totalCount": 0}, "byId": {"count": 0}, "libraries2": {"count": 0}}

    def test_another_organizations_objects_are_not_found_for_updates_and_nothing_changes(self, org, other_org, theirs):
        before = self.snapshot(other_org, theirs)
        for mutation in (
            f'mutation {{ updateLibrary(input: {{id: "{theirs["library"]}", name: "pwned", description: null}}) {{ id }} }}',
            f'mutation {{ publishLibrary(id: "{theirs["library"]}") {{ id }} }}',
            f'mutation {{ updateEntity(input: {{id: "{theirs["entity"]}", name: "pwned", jsondata: {{}}}}) {{ id }} }}',
            f'mutation {{ updateEntityIdentifier(input: {{id: "{theirs["identifier"]}", title: "pwned"}}) {{ id }} }}',
            f'mutation {{ createEntity(input: {{libraryId: "{theirs["library"]}", name: "intruder"}}) {{ id }} }}',
        ):
            reply = org.client.query(mutation)
            assert reply.error_code == "not_found", mutation
        upload = org.client.upload_form(
            f'mutation {{ createEntityIdentifier(input: {{entityId: "{theirs["entity"]}", identifierTypeId: "face"}}) {{ id }} }}',
            b"intruder", "image/png",
        )
        assert upload.error_code == "not_found"
        assert self.snapshot(other_org, theirs) == before

    def test_another_organizations_objects_are_not_found_for_deletes_and_nothing_is_removed(self, org, other_org, theirs, stack, bucket):
        before = self.snapshot(other_org, theirs)
        keys_before = org_keys(bucket, other_org)
        for mutation in (
            f'mutation {{ deleteEntityIdentifier(id: "{theirs["identifier"]}") {{ id }} }}',
            f'mutation {{ deleteEntity(id: "{theirs["entity"]}") {{ id }} }}',
            f'mutation {{ deleteLibrary(id: "{theirs["library"]}") {{ id }} }}',
        ):
            reply = org.client.query(mutation)
            assert reply.error_code == "not_found", mutation
        assert self.snapshot(other_org, theirs) == before
        assert len(keys_before) == 1
        assert org_keys(bucket, other_org) == keys_before
        assert stack.db.fetchval("SELECT count(*) FROM blob_deletions WHERE storage_key = $1", keys_before[0]) == 0

    @pytest.mark.parametrize("bad_id", ["not-a-uuid", "", "1", "'; DROP TABLE libraries; --", "00000000-0000-0000-0000-00000000000g"])
    def test_malformed_ids_are_not_found(self, org, bad_id):
        for query in (
            "query($id: ID!) { library(id: $id) { id } }",
            "query($id: ID!) { entity(id: $id) { id } }",
            "query($id: ID!) { entityIdentifier(id: $id) { id } }",
            "mutation($id: ID!) { deleteLibrary(id: $id) { id } }",
            "mutation($id: ID!) { deleteEntity(id: $id) { id } }",
            "mutation($id: ID!) { deleteEntityIdentifier(id: $id) { id } }",
            "mutation($id: ID!) { updateLibrary(input: {id: $id, name: \"x\"}) { id } }",
        ):
            reply = org.client.query(query, id=bad_id)
            assert reply.status == 200
            assert reply.error_code == "not_found", (query, reply.body)
            assert_clean_error_text(reply.body)


def test_tokens_are_stored_only_as_hashes(org, stack):
    read_token = org.token_for("read")
    rows = stack.db.fetch("SELECT * FROM api_tokens WHERE org_id = $1", org.id)
    assert len(rows) == 2
    for row in rows:
        for column, value in dict(row).items():
            text = value.hex() if isinstance(value, (bytes, bytearray, memoryview)) else str(value)
            raw = bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else str(value).encode()
            for token in (org.token, read_token):
                assert token not in text, column
                assert token.encode() not in raw, column
    # And the table as PostgreSQL renders it, every column as text.
    dumped = stack.db.fetchval("SELECT string_agg(t::text, '|') FROM api_tokens t WHERE org_id = $1", org.id)
    assert org.token not in dumped and read_token not in dumped
