"""Entity identifiers: uploaded as curl's plain form, as the multipart spec, or copied from a URL."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.api.conftest import identifier_rows, org_keys, random_bytes, tagged_png
from tests.graphql_client import GraphQLClient

IDENTIFIER_FIELDS = "id entityId identifierTypeId title isPriority url contentType jsondata createdDateTime modifiedDateTime"

SPEC_MUTATION = (
    "mutation($input: CreateEntityIdentifier!) { createEntityIdentifier(input: $input) { " + IDENTIFIER_FIELDS + " } }"
)


def plain_form_mutation(entity_id: str, extra: str = "") -> str:
    return (
        f'mutation {{ createEntityIdentifier(input: {{entityId: "{entity_id}", identifierTypeId: "face"{extra}}}) '
        f"{{ {IDENTIFIER_FIELDS} }} }}"
    )


@pytest.fixture
def entity(org):
    return org.create_entity(org.create_library(), "Ada")


def test_a_plain_form_upload_takes_its_content_type_from_the_file_part_and_serves_the_exact_bytes(org, entity, stack, bucket):
    data = random_bytes(5000)
    reply = org.client.upload_form(plain_form_mutation(entity, ', title: "front", jsondata: {angle: 0}'), data, "image/jpeg", filename="a.jpg")
    created = reply.ok()["createEntityIdentifier"]
    assert created["contentType"] == "image/jpeg"
    assert created["entityId"] == entity
    assert created["identifierTypeId"] == "face"
    assert created["title"] == "front"
    assert created["jsondata"] == {"angle": 0}
    assert created["isPriority"] is False
    assert re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$", created["createdDateTime"])
    assert created["createdDateTime"] <= created["modifiedDateTime"]
    served = httpx.get(created["url"], timeout=30)
    assert served.status_code == 200
    assert served.content == data
    (row,) = identifier_rows(stack, org)
    assert row["content_length"] == len(data)
    assert org_keys(bucket, org) == [row["storage_key"]]


def test_an_explicit_content_type_wins_over_the_file_part(org, entity):
    reply = org.client.upload_form(plain_form_mutation(entity, ', contentType: "image/png"'), tagged_png(b"png?"), "application/octet-stream")
    assert reply.ok()["createEntityIdentifier"]["contentType"] == "image/png"


def test_a_plain_form_upload_may_carry_variables(org, entity):
    query = (
        "mutation($e: ID!, $t: String) { createEntityIdentifier(input: {entityId: $e, identifierTypeId: \"face\", title: $t}) "
        "{ entityId title } }"
    )
    reply = org.client.upload_form(query, tagged_png(b"bytes"), "image/png", variables={"e": entity, "t": "via variables"})
    assert reply.ok()["createEntityIdentifier"] == {"entityId": entity, "title": "via variables"}


def test_a_spec_multipart_upload_fills_the_upload_variable(org, entity):
    data = random_bytes(3000)
    reply = org.client.upload_spec(
        SPEC_MUTATION,
        {"input": {"entityId": entity, "identifierTypeId": "face", "isPriority": True, "file": None}},
        {"input.file": (data, "image/png")},
    )
    created = reply.ok()["createEntityIdentifier"]
    assert created["contentType"] == "image/png"
    assert created["isPriority"] is True
    assert httpx.get(created["url"], timeout=30).content == data


def test_an_identifier_can_be_read_updated_and_deleted(org, entity, stack, bucket):
    identifier = org.add_identifier(entity, tagged_png(b"abc"))
    read = org.client.query(f'query {{ entityIdentifier(id: "{identifier}") {{ id title entity {{ id name }} identifierType {{ id }} }} }}').ok()
    assert read["entityIdentifier"] == {"id": identifier, "title": None, "entity": {"id": entity, "name": "Ada"}, "identifierType": {"id": "face"}}
    updated = org.client.query(
        "mutation($input: UpdateEntityIdentifier!) { updateEntityIdentifier(input: $input) { title isPriority jsondata } }",
        input={"id": identifier, "title": "t", "isPriority": True, "jsondata": {"k": "v"}},
    ).ok()["updateEntityIdentifier"]
    assert updated == {"title": "t", "isPriority": True, "jsondata": {"k": "v"}}
    cleared = org.client.query(
        f'mutation {{ updateEntityIdentifier(input: {{id: "{identifier}", title: null, isPriority: false}}) {{ title isPriority jsondata }} }}'
    ).ok()["updateEntityIdentifier"]
    assert cleared == {"title": None, "isPriority": False, "jsondata": {"k": "v"}}
    deleted = org.client.query(f'mutation {{ deleteEntityIdentifier(id: "{identifier}") {{ id }} }}').ok()
    assert deleted["deleteEntityIdentifier"]["id"] == identifier
    assert identifier_rows(stack, org) == []
    assert org_keys(bucket, org) == []


def test_a_missing_url_and_file_is_refused_with_the_upstream_message(org, entity, stack):
    reply = org.client.query(
        f'mutation {{ createEntityIdentifier(input: {{entityId: "{entity}", identifierTypeId: "face", contentType: "image/png"}}) {{ id }} }}'
    )
    assert reply.error_code == "invalid_input"
    assert reply.error_message == "At least one of url or file must be provided"
    assert identifier_rows(stack, org) == []


def test_an_identifier_type_the_library_type_does_not_accept_is_invalid_input(org, stack, bucket):
    objects = org.create_entity(org.create_library("things", "objects"), "Chair")
    reply = org.client.upload_form(
        f'mutation {{ createEntityIdentifier(input: {{entityId: "{objects}", identifierTypeId: "audio-recording"}}) {{ id }} }}',
        b"sound", "audio/wav",
    )
    assert reply.error_code == "invalid_input"
    assert identifier_rows(stack, org) == []
    assert org_keys(bucket, org) == []


def test_a_people_library_takes_a_voice_recording_beside_a_face(org, entity, stack):
    face = org.client.upload_form(
        f'mutation {{ createEntityIdentifier(input: {{entityId: "{entity}", identifierTypeId: "face"}}) {{ id }} }}',
        random_bytes(100), "image/png",
    ).ok()["createEntityIdentifier"]
    voice = org.client.upload_form(
        f'mutation {{ createEntityIdentifier(input: {{entityId: "{entity}", identifierTypeId: "audio-recording"}}) '
        f'{{ id identifierTypeId contentType }} }}',
        b"RIFF....WAVE", "audio/wav",
    ).ok()["createEntityIdentifier"]
    assert voice["identifierTypeId"] == "audio-recording" and voice["contentType"] == "audio/wav"
    assert len(identifier_rows(stack, org)) == 2 and face["id"] != voice["id"]


def test_an_unknown_identifier_type_is_invalid_input(org, entity, stack):
    reply = org.client.upload_form(
        f'mutation {{ createEntityIdentifier(input: {{entityId: "{entity}", identifierTypeId: "smell"}}) {{ id }} }}', b"x", "image/png"
    )
    assert reply.error_code == "invalid_input"
    assert identifier_rows(stack, org) == []


@pytest.mark.parametrize("content_type", ["not a mime", "image", "/png", "image/png/extra", "<script>/x"])
def test_a_bad_mime_type_is_invalid_input_and_nothing_is_stored(org, entity, stack, bucket, content_type):
    reply = org.client.query(
        "mutation($e: ID!, $c: String!) { createEntityIdentifier(input: {entityId: $e, identifierTypeId: \"face\", "
        "contentType: $c, url: \"https://example.com/a.png\", storeReference: true}) { id } }",
        e=entity, c=content_type,
    )
    assert reply.error_code == "invalid_input"
    assert "contentType" in reply.error_message
    assert identifier_rows(stack, org) == []
    assert org_keys(bucket, org) == []


def test_a_file_part_with_a_bad_content_type_is_invalid_input(org, entity, stack, bucket):
    reply = org.client.upload_form(plain_form_mutation(entity), b"x", "nonsense")
    assert reply.error_code == "invalid_input"
    assert identifier_rows(stack, org) == []
    assert org_keys(bucket, org) == []


def test_an_identifier_for_a_missing_entity_is_not_found(org, stack, bucket):
    reply = org.client.upload_form(plain_form_mutation("3f1e9c1a-2b47-4ad2-9a3f-1c2d3e4f5a6b"), b"x", "image/png")
    assert reply.error_code == "not_found"
    assert org_keys(bucket, org) == []


class TestByUrl:
    def test_store_reference_keeps_the_url_as_it_is_and_stores_no_object(self, org, entity, stack, bucket):
        url = "https://images.example.com/people/ada.png?size=large"
        created = org.client.query(
            SPEC_MUTATION,
            input={"entityId": entity, "identifierTypeId": "face", "contentType": "image/png", "url": url, "storeReference": True},
        ).ok()["createEntityIdentifier"]
        assert created["url"] == url
        (row,) = identifier_rows(stack, org)
        assert row["reference_url"] == url and row["storage_key"] is None
        assert org_keys(bucket, org) == []

    def test_store_reference_refuses_a_url_that_is_not_http(self, org, entity, stack):
        reply = org.client.query(
            SPEC_MUTATION,
            input={"entityId": entity, "identifierTypeId": "face", "contentType": "image/png", "url": "file:///etc/passwd", "storeReference": True},
        )
        assert reply.error_code == "invalid_input"
        assert identifier_rows(stack, org) == []

    def test_a_loopback_url_is_refused_by_default_and_nothing_is_stored(self, org, entity, stack, bucket, file_server):
        url = file_server.add("/private.png", b"secret", "image/png")
        before = len(file_server.requests)
        reply = org.client.query(SPEC_MUTATION, input={"entityId": entity, "identifierTypeId": "face", "url": url})
        assert reply.error_code == "invalid_input"
        assert "non-public" in reply.error_message
        assert len(file_server.requests) == before  # never even asked
        assert identifier_rows(stack, org) == []
        assert org_keys(bucket, org) == []

    @pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/x.png", "http://[::1]/x.png", "ftp://example.com/x.png"])
    def test_private_metadata_and_non_http_urls_are_refused(self, org, entity, stack, url):
        reply = org.client.query(SPEC_MUTATION, input={"entityId": entity, "identifierTypeId": "face", "url": url, "contentType": "image/png"})
        assert reply.error_code == "invalid_input"
        assert identifier_rows(stack, org) == []

    def test_a_url_is_copied_into_storage_when_private_fetches_are_allowed(self, org, entity, stack, bucket, file_server, private_fetch_gateway):
        data = random_bytes(70_000)
        url = file_server.add("/ada.jpg", data, "image/jpeg")
        client = GraphQLClient(private_fetch_gateway.url, org.token)
        try:
            created = client.query(SPEC_MUTATION, input={"entityId": entity, "identifierTypeId": "face", "url": url}).ok()[
                "createEntityIdentifier"
            ]
        finally:
            client.close()
        assert created["contentType"] == "image/jpeg"  # from the remote answer
        assert created["url"] != url
        assert httpx.get(created["url"], timeout=30).content == data
        (row,) = identifier_rows(stack, org)
        assert row["reference_url"] is None and row["content_length"] == len(data)
        assert org_keys(bucket, org) == [row["storage_key"]]
        assert bucket.read(row["storage_key"]) == data

    def test_a_url_that_answers_404_is_invalid_input_and_nothing_is_stored(self, org, entity, stack, bucket, file_server, private_fetch_gateway):
        client = GraphQLClient(private_fetch_gateway.url, org.token)
        try:
            reply = client.query(
                SPEC_MUTATION, input={"entityId": entity, "identifierTypeId": "face", "url": file_server.base_url + "/missing.png"}
            )
        finally:
            client.close()
        assert reply.error_code == "invalid_input"
        assert identifier_rows(stack, org) == []
        assert org_keys(bucket, org) == []
