"""A plain form (`-F query=... -F file=@x`) whose query declares `$file: Upload`: the file part is that
variable, as well as `input.file` when the query names no file. Wrong declarations are clear 400s and
store nothing."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.api.conftest import assert_clean_error_text, identifier_rows, org_keys
from tests.api.test_uploads import multipart, post_raw
from tests.support.images import jpeg, png

JPEG, PNG = jpeg(), png()
DECLARED = 'mutation($file: Upload!) {{ createEntityIdentifier(input: {{entityId: "{e}", identifierTypeId: "face", file: $file}}) {{ id contentType }} }}'


def send(org, fields: dict[str, str], files: list[tuple[str, tuple[str, bytes, str]]]) -> httpx.Response:
    return httpx.post(org.client.url, data=fields, files=files, timeout=60, headers={"Authorization": f"Bearer {org.token}"})


@pytest.fixture
def entity(org):
    return org.create_entity(org.create_library(), "Ada")


def test_a_declared_file_variable_takes_the_file_part(org, entity, stack, bucket):
    response = send(org, {"query": DECLARED.format(e=entity)}, [("file", ("x.jpg", JPEG, "image/jpeg"))])
    assert response.status_code == 200, response.text
    created = response.json()["data"]["createEntityIdentifier"]
    assert created["contentType"] == "image/jpeg"
    (row,) = identifier_rows(stack, org)
    assert str(row["id"]) == created["id"] and bucket.read(row["storage_key"]) == JPEG


def test_a_nullable_file_variable_with_other_variables_and_an_operation_name(org, entity, stack, bucket):
    query = ('mutation Add($e: ID!, $file: Upload) { createEntityIdentifier(input: {entityId: $e, identifierTypeId: "face", file: $file}) { id } }'
             " query Other { __typename }")
    fields = {"query": query, "variables": json.dumps({"e": entity}), "operationName": "Add"}
    response = send(org, fields, [("file", ("x.png", PNG, "image/png"))])
    assert response.status_code == 200, response.text
    (row,) = identifier_rows(stack, org)
    assert bucket.read(row["storage_key"]) == PNG


def test_a_variables_part_with_a_null_file_placeholder_is_filled(org, entity, stack, bucket):
    fields = {"query": DECLARED.format(e=entity), "variables": json.dumps({"file": None})}
    response = send(org, fields, [("file", ("x.png", PNG, "image/png"))])
    assert response.status_code == 200, response.text
    assert len(identifier_rows(stack, org)) == 1


def assert_refused(response: httpx.Response, org, stack, bucket, words: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "invalid_input"
    assert words in body["errors"][0]["message"], body
    assert_clean_error_text(body)
    assert identifier_rows(stack, org) == [] and org_keys(bucket, org) == []


def test_declared_but_no_file_part_is_400(org, entity, stack, bucket):
    body = multipart([("query", None, None, DECLARED.format(e=entity).encode())])
    assert_refused(post_raw(org, body), org, stack, bucket, "$file")


def test_a_file_variable_of_another_type_is_400(org, entity, stack, bucket):
    query = 'mutation($file: String!) { createEntityIdentifier(input: {entityId: "%s", identifierTypeId: "face", title: $file}) { id } }' % entity
    response = send(org, {"query": query}, [("file", ("x.png", PNG, "image/png"))])
    assert_refused(response, org, stack, bucket, "Upload")
    listed = DECLARED.format(e=entity).replace("$file: Upload!", "$file: [Upload]")
    assert_refused(send(org, {"query": listed}, [("file", ("x.png", PNG, "image/png"))]), org, stack, bucket, "Upload")


def test_a_file_in_both_the_variables_and_the_file_part_is_400(org, entity, stack, bucket):
    fields = {"query": DECLARED.format(e=entity), "variables": json.dumps({"file": "something"})}
    assert_refused(send(org, fields, [("file", ("x.png", PNG, "image/png"))]), org, stack, bucket, "variables.file")


def test_two_file_parts_are_still_400(org, entity, stack, bucket):
    files = [("file", ("a.png", b"one", "image/png")), ("file", ("b.png", b"two", "image/png"))]
    assert_refused(send(org, {"query": DECLARED.format(e=entity)}, files), org, stack, bucket, "one file part")


def test_a_string_variable_the_variables_give_leaves_the_file_to_input_file(org, entity, stack, bucket):
    """`$file` may be an unrelated value: then the file part is input.file, as before."""
    query = 'mutation($file: String) { createEntityIdentifier(input: {entityId: "%s", identifierTypeId: "face", title: $file}) { id title } }' % entity
    fields = {"query": query, "variables": json.dumps({"file": "a title"})}
    response = send(org, fields, [("file", ("x.png", PNG, "image/png"))])
    assert response.status_code == 200, response.text
    assert response.json()["data"]["createEntityIdentifier"]["title"] == "a title"
    (row,) = identifier_rows(stack, org)
    assert bucket.read(row["storage_key"]) == PNG
