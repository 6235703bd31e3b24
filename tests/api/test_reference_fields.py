"""The reference schema's fields of the library domain that clients read and send: jsonstring beside
jsondata, a new url for an identifier, applicationId."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.api.conftest import identifier_rows, org_keys, random_bytes
from tests.graphql_client import GraphQLClient


@pytest.fixture
def library(org):
    return org.create_library()


class TestJsonstring:
    def test_an_entity_created_with_jsonstring_reads_back_as_jsondata_and_as_jsonstring(self, org, library):
        text = json.dumps({"born": 1815, "name": "Ada ✓"})
        created = org.client.query(
            "mutation($l: ID!, $s: String) { createEntity(input: {libraryId: $l, name: \"Ada\", jsonstring: $s}) { id jsondata jsonstring } }",
            l=library, s=text,
        ).ok()["createEntity"]
        assert created["jsondata"] == {"born": 1815, "name": "Ada ✓"}
        assert json.loads(created["jsonstring"]) == created["jsondata"]
        updated = org.client.query(
            "mutation($id: ID!) { updateEntity(input: {id: $id, jsonstring: \"[1, 2]\"}) { jsondata jsonstring } }", id=created["id"]
        ).ok()["updateEntity"]
        assert updated == {"jsondata": [1, 2], "jsonstring": "[1,2]"}

    def test_an_update_without_either_keeps_the_stored_jsondata(self, org, library):
        entity_id = org.create_entity(library, "Ada", {"a": 1})
        kept = org.client.query("mutation($id: ID!) { updateEntity(input: {id: $id, name: \"Ada L\"}) { jsondata } }", id=entity_id).ok()
        assert kept["updateEntity"]["jsondata"] == {"a": 1}

    def test_jsondata_and_jsonstring_together_are_invalid_input(self, org, library, stack):
        reply = org.client.query(
            "mutation($l: ID!) { createEntity(input: {libraryId: $l, name: \"Ada\", jsondata: {a: 1}, jsonstring: \"{}\"}) { id } }", l=library
        )
        assert reply.error_code == "invalid_input" and "not both" in reply.error_message
        assert stack.db.fetchval("SELECT count(*) FROM entities WHERE org_id = $1", org.id) == 0

    def test_a_jsonstring_that_is_not_json_is_invalid_input(self, org, library):
        entity_id = org.create_entity(library, "Ada", {"a": 1})
        reply = org.client.query("mutation($id: ID!) { updateEntity(input: {id: $id, jsonstring: \"{oops\"}) { id } }", id=entity_id)
        assert reply.error_code == "invalid_input" and "jsonstring" in reply.error_message
        read = org.client.query("query($id: ID!) { entity(id: $id) { jsondata } }", id=entity_id).ok()
        assert read["entity"]["jsondata"] == {"a": 1}

    def test_identifiers_take_and_give_jsonstring_too(self, org, library):
        entity_id = org.create_entity(library, "Ada")
        created = org.client.query(
            "mutation($e: ID!) { createEntityIdentifier(input: {entityId: $e, identifierTypeId: \"face\", contentType: \"image/png\", "
            "url: \"https://example.com/a.png\", storeReference: true, jsonstring: \"{\\\"pose\\\": \\\"left\\\"}\"}) { id jsondata jsonstring } }",
            e=entity_id,
        ).ok()["createEntityIdentifier"]
        assert created["jsondata"] == {"pose": "left"} and json.loads(created["jsonstring"]) == {"pose": "left"}
        updated = org.client.query(
            "mutation($id: ID!) { updateEntityIdentifier(input: {id: $id, jsonstring: \"{}\"}) { jsondata } }", id=created["id"]
        ).ok()["updateEntityIdentifier"]
        assert updated["jsondata"] == {}
        both = org.client.query(
            "mutation($id: ID!) { updateEntityIdentifier(input: {id: $id, jsondata: {a: 1}, jsonstring: \"{}\"}) { id } }", id=created["id"]
        )
        assert both.error_code == "invalid_input"


class TestIdentifierUrl:
    def _reference(self, org, library):
        entity_id = org.create_entity(library, "Ada")
        return org.client.query(
            "mutation($e: ID!) { createEntityIdentifier(input: {entityId: $e, identifierTypeId: \"face\", contentType: \"image/png\", "
            "url: \"https://example.com/a.png\", storeReference: true}) { id } }", e=entity_id,
        ).ok()["createEntityIdentifier"]["id"]

    def test_a_reference_identifier_refers_to_the_new_url(self, org, library, stack, bucket):
        identifier_id = self._reference(org, library)
        updated = org.client.query(
            "mutation($id: ID!) { updateEntityIdentifier(input: {id: $id, url: \"https://example.com/b.png\", title: \"b\"}) { url title contentType } }",
            id=identifier_id,
        ).ok()["updateEntityIdentifier"]
        assert updated == {"url": "https://example.com/b.png", "title": "b", "contentType": "image/png"}
        assert org_keys(bucket, org) == []

    def test_a_url_that_is_not_http_is_invalid_input_and_the_old_one_stays(self, org, library):
        identifier_id = self._reference(org, library)
        reply = org.client.query(
            "mutation($id: ID!) { updateEntityIdentifier(input: {id: $id, url: \"file:///etc/passwd\"}) { id } }", id=identifier_id)
        assert reply.error_code == "invalid_input"
        read = org.client.query("query($id: ID!) { entityIdentifier(id: $id) { url } }", id=identifier_id).ok()
        assert read["entityIdentifier"]["url"] == "https://example.com/a.png"

    def test_a_stored_identifier_stores_a_copy_of_the_new_url_and_its_old_object_goes(
        self, org, library, stack, bucket, file_server, private_fetch_gateway
    ):
        entity_id = org.create_entity(library, "Ada")
        identifier_id = org.add_identifier(entity_id, random_bytes(3000))
        (old_key,) = org_keys(bucket, org)
        data = random_bytes(50_000)
        url = file_server.add("/ada-new.jpg", data, "image/jpeg")
        client = GraphQLClient(private_fetch_gateway.url, org.token)
        try:
            updated = client.query(
                "mutation($id: ID!, $u: String) { updateEntityIdentifier(input: {id: $id, url: $u}) { url contentType } }",
                id=identifier_id, u=url,
            ).ok()["updateEntityIdentifier"]
        finally:
            client.close()
        assert updated["contentType"] == "image/jpeg"
        assert httpx.get(updated["url"], timeout=30).content == data
        (row,) = identifier_rows(stack, org)
        assert row["content_length"] == len(data) and row["storage_key"] != old_key
        assert org_keys(bucket, org) == [row["storage_key"]]

    def test_a_new_url_that_cannot_be_fetched_changes_nothing(self, org, library, stack, bucket, file_server, private_fetch_gateway):
        entity_id = org.create_entity(library, "Ada")
        identifier_id = org.add_identifier(entity_id, random_bytes(3000))
        before = identifier_rows(stack, org)
        client = GraphQLClient(private_fetch_gateway.url, org.token)
        try:
            reply = client.query(
                "mutation($id: ID!, $u: String) { updateEntityIdentifier(input: {id: $id, url: $u}) { id } }",
                id=identifier_id, u=file_server.base_url + "/missing.jpg",
            )
        finally:
            client.close()
        assert reply.error_code == "invalid_input"
        assert identifier_rows(stack, org) == before
        assert org_keys(bucket, org) == [before[0]["storage_key"]]


class TestApplicationId:
    def test_a_library_reports_its_organization_as_its_application(self, org, library):
        read = org.client.query("query($id: ID!) { library(id: $id) { applicationId organizationId } }", id=library).ok()["library"]
        assert read == {"applicationId": str(org.id), "organizationId": str(org.id)}

    def test_create_library_takes_the_callers_own_application_or_organization_id(self, org):
        for field in ("applicationId", "organizationId"):
            created = org.client.query(
                f"mutation($a: ID) {{ createLibrary(input: {{name: \"x\", libraryTypeId: \"people\", {field}: $a}}) {{ applicationId }} }}",
                a=str(org.id),
            ).ok()["createLibrary"]
            assert created["applicationId"] == str(org.id)

    def test_another_organizations_id_there_is_not_found_and_nothing_is_created(self, org, other_org, stack):
        for field in ("applicationId", "organizationId"):
            reply = org.client.query(
                f"mutation($a: ID) {{ createLibrary(input: {{name: \"x\", libraryTypeId: \"people\", {field}: $a}}) {{ id }} }}",
                a=str(other_org.id),
            )
            assert reply.error_code == "not_found"
        assert stack.db.fetchval("SELECT count(*) FROM libraries WHERE org_id = ANY($1::uuid[])", [org.id, other_org.id]) == 0
