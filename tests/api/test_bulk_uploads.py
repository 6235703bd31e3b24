"""Several identifiers in one request, each with its own file: one document of aliased
createEntityIdentifier mutations whose `file` variables the GraphQL multipart `map` points at their parts.
(The reference schema has no bulk identifier mutation: this is the upstream way.) Each identifier is
all-or-nothing on its own, and the part limits hold."""

from __future__ import annotations

import json

import pytest

from tests.api.conftest import (
    assert_clean_error_text,
    identifier_rows,
    org_keys,
    random_bytes,
    tagged_png,
)
from tests.api.test_uploads import multipart, post_raw
from tests.conftest import ROOT

NULLABLE_RESULT = "createEntityIdentifier(input: CreateEntityIdentifier!): EntityIdentifier\n" in (ROOT / "schema.graphql").read_text()


def bulk_body(entity_ids: list[str], files: list[bytes], mapping: dict[str, list[str]] | None = None) -> bytes:
    declared = ", ".join(f"$e{i}: ID!, $f{i}: Upload!" for i in range(len(entity_ids)))
    fields = " ".join(
        f'a{i}: createEntityIdentifier(input: {{entityId: $e{i}, identifierTypeId: "face", file: $f{i}}}) {{ id entityId }}'
        for i in range(len(entity_ids))
    )
    variables: dict[str, object] = {}
    for i, entity_id in enumerate(entity_ids):
        variables[f"e{i}"] = entity_id
        variables[f"f{i}"] = None
    operations = {"query": f"mutation Bulk({declared}) {{ {fields} }}", "variables": variables}
    mapping = mapping if mapping is not None else {str(i): [f"variables.f{i}"] for i in range(len(files))}
    parts = [("operations", None, None, json.dumps(operations).encode()), ("map", None, None, json.dumps(mapping).encode())]
    parts += [(str(i), f"{i}.png", "image/png", data) for i, data in enumerate(files)]
    return multipart(parts)


@pytest.fixture
def entities(org):
    library_id = org.create_library()
    return [org.create_entity(library_id, f"person {i}") for i in range(5)]


def stored_bytes(stack, bucket, org) -> dict[str, bytes]:
    return {str(r["entity_id"]): bucket.read(r["storage_key"]) for r in identifier_rows(stack, org)}


def test_five_identifiers_with_their_own_files_in_one_request(org, entities, stack, bucket):
    files = [random_bytes(1000 + i) for i in range(5)]
    response = post_raw(org, bulk_body(entities, files))
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [data[f"a{i}"]["entityId"] for i in range(5)] == entities
    assert stored_bytes(stack, bucket, org) == dict(zip(entities, files))
    assert len(org_keys(bucket, org)) == 5


def test_one_part_mapped_to_two_identifiers_is_stored_whole_for_each(org, entities, stack, bucket):
    response = post_raw(org, bulk_body(entities[:2], [tagged_png(b"shared-bytes")], {"0": ["variables.f0", "variables.f1"]}))
    assert response.status_code == 200, response.text
    assert stored_bytes(stack, bucket, org) == {entities[0]: tagged_png(b"shared-bytes"), entities[1]: tagged_png(b"shared-bytes")}


def test_a_failing_identifier_leaves_nothing_while_the_others_are_stored(org, other_org, entities, stack, bucket):
    foreign = other_org.create_entity(other_org.create_library(), "not yours")
    ids = [entities[0], foreign, entities[1]]
    response = post_raw(org, bulk_body(ids, [tagged_png(b"zero"), tagged_png(b"one"), tagged_png(b"two")]))
    assert response.status_code == 200, response.text
    body = response.json()
    (error,) = body["errors"]
    assert error["path"] == ["a1"] and error["extensions"]["code"] == "not_found"
    # Upstream's nullable EntityIdentifier: the failing alias is null, the others run and answer their IDs (a
    # non-null result would null the whole reply, hiding the IDs of what was stored).
    assert NULLABLE_RESULT
    assert body["data"]["a1"] is None and body["data"]["a0"]["entityId"] == entities[0] and body["data"]["a2"]["entityId"] == entities[1]
    assert stored_bytes(stack, bucket, org) == {entities[0]: tagged_png(b"zero"), entities[1]: tagged_png(b"two")}
    assert {str(r["id"]) for r in identifier_rows(stack, org)} == {body["data"]["a0"]["id"], body["data"]["a2"]["id"]}
    assert len(org_keys(bucket, org)) == len(identifier_rows(stack, org))  # no object without its row
    assert identifier_rows(stack, other_org) == []
    assert stack.db.fetchval("SELECT count(*) FROM blob_deletions WHERE storage_key LIKE $1", f"{org.id}/%") == 0


def test_more_files_than_the_part_limit_is_400_and_stores_nothing(org, entities, stack, bucket):
    count = 33  # ENGINESHED_MULTIPART_MAX_PARTS is 32
    ids = [entities[i % 5] for i in range(count)]
    response = post_raw(org, bulk_body(ids, [b"x%d" % i for i in range(count)]))
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "invalid_input"
    assert_clean_error_text(response.json())
    assert identifier_rows(stack, org) == [] and org_keys(bucket, org) == []


def test_a_file_variable_left_unmapped_is_400_and_stores_nothing(org, entities, stack, bucket):
    response = post_raw(org, bulk_body(entities[:3], [b"a", b"b", b"c"], {"0": ["variables.f0"], "1": ["variables.f1"]}))
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "invalid_input"
    assert identifier_rows(stack, org) == [] and org_keys(bucket, org) == []
