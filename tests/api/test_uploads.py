"""Upload bodies: the size limit (413), malformed multipart (400), and file names that look like paths."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.api.conftest import (
    assert_clean_error_text,
    identifier_rows,
    org_keys,
    random_bytes,
    tagged_png,
)
from tests.conftest import TEST_UPLOAD_LIMIT

BOUNDARY = "engineshed-test-boundary"


def multipart(parts: list[tuple[str, str | None, str | None, bytes]]) -> bytes:
    """A multipart/form-data body by hand: (name, filename, content type, data) per part."""
    out = bytearray()
    for name, filename, content_type, data in parts:
        out += f"--{BOUNDARY}\r\n".encode()
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"Content-Disposition: {disposition}\r\n".encode()
        if content_type:
            out += f"Content-Type: {content_type}\r\n".encode()
        out += b"\r\n" + data + b"\r\n"
    out += f"--{BOUNDARY}--\r\n".encode()
    return bytes(out)


def post_raw(org, body: bytes, content_type: str = f"multipart/form-data; boundary={BOUNDARY}") -> httpx.Response:
    return httpx.post(
        org.client.url, content=body, timeout=60,
        headers={"Authorization": f"Bearer {org.token}", "Content-Type": content_type},
    )


def plain_query(entity_id: str) -> bytes:
    return (
        f'mutation {{ createEntityIdentifier(input: {{entityId: "{entity_id}", identifierTypeId: "face"}}) {{ id }} }}'
    ).encode()


@pytest.fixture
def entity(org):
    return org.create_entity(org.create_library(), "Ada")


def assert_nothing_stored(org, stack, bucket):
    assert identifier_rows(stack, org) == []
    assert org_keys(bucket, org) == []


def assert_bad_request(response: httpx.Response, status: int = 400) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == "invalid_input"
    assert body["errors"][0]["name"] == "invalid_input"
    assert_clean_error_text(body)
    return body


class TestSizeLimit:
    def test_a_file_just_over_the_upload_limit_is_413_and_leaves_no_row_or_object(self, org, entity, stack, bucket):
        reply = org.client.upload_form(plain_query(entity).decode(), random_bytes(TEST_UPLOAD_LIMIT + 1), "image/png")
        assert reply.status == 413
        assert reply.error_code == "invalid_input"
        assert_nothing_stored(org, stack, bucket)
        assert stack.db.fetchval("SELECT count(*) FROM blob_deletions WHERE storage_key LIKE $1", f"{org.id}/%") == 0

    def test_a_file_of_exactly_the_limit_is_accepted(self, org, entity, stack, bucket):
        reply = org.client.upload_form(plain_query(entity).decode(), random_bytes(TEST_UPLOAD_LIMIT), "image/png")
        reply.ok()
        (row,) = identifier_rows(stack, org)
        assert row["content_length"] == TEST_UPLOAD_LIMIT
        assert org_keys(bucket, org) == [row["storage_key"]]

    def test_a_body_far_over_the_limit_is_413_whether_its_length_is_declared_or_streamed(self, org, entity, stack, bucket):
        body = multipart([("query", None, None, plain_query(entity)), ("file", "big.png", "image/png", random_bytes(TEST_UPLOAD_LIMIT * 2))])
        declared = post_raw(org, body)
        assert_bad_request(declared, 413)

        def chunks():  # no Content-Length: chunked transfer, counted as it arrives
            for start in range(0, len(body), 256 * 1024):
                yield body[start : start + 256 * 1024]

        streamed = httpx.post(
            org.client.url, content=chunks(), timeout=60,
            headers={"Authorization": f"Bearer {org.token}", "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        )
        assert_bad_request(streamed, 413)
        assert_nothing_stored(org, stack, bucket)

    def test_a_spec_multipart_file_over_the_limit_is_413(self, org, entity, stack, bucket):
        reply = org.client.upload_spec(
            "mutation($input: CreateEntityIdentifier!) { createEntityIdentifier(input: $input) { id } }",
            {"input": {"entityId": entity, "identifierTypeId": "face", "file": None}},
            {"input.file": (random_bytes(TEST_UPLOAD_LIMIT + 10), "image/png")},
        )
        assert reply.status == 413
        assert reply.error_code == "invalid_input"
        assert_nothing_stored(org, stack, bucket)


class TestMalformedMultipart:
    def test_a_truncated_body_is_400(self, org, entity, stack, bucket):
        body = multipart([("query", None, None, plain_query(entity)), ("file", "a.png", "image/png", b"x" * 5000)])
        assert_bad_request(post_raw(org, body[: len(body) - 2000]))
        assert_nothing_stored(org, stack, bucket)

    def test_a_multipart_content_type_without_a_boundary_is_400(self, org, entity, stack, bucket):
        body = multipart([("query", None, None, plain_query(entity)), ("file", "a.png", "image/png", b"x")])
        assert_bad_request(post_raw(org, body, "multipart/form-data"))
        assert_nothing_stored(org, stack, bucket)

    def test_a_map_naming_a_missing_part_is_400(self, org, entity, stack, bucket):
        operations = {
            "query": "mutation($input: CreateEntityIdentifier!) { createEntityIdentifier(input: $input) { id } }",
            "variables": {"input": {"entityId": entity, "identifierTypeId": "face", "file": None}},
        }
        body = multipart([
            ("operations", None, None, json.dumps(operations).encode()),
            ("map", None, None, json.dumps({"1": ["variables.input.file"]}).encode()),
            ("0", "a.png", "image/png", b"x"),
        ])
        reply = assert_bad_request(post_raw(org, body))
        assert "'1'" in reply["errors"][0]["message"]
        assert_nothing_stored(org, stack, bucket)

    def test_a_map_path_outside_the_variables_is_400(self, org, entity, stack, bucket):
        operations = {"query": "mutation($input: CreateEntityIdentifier!) { createEntityIdentifier(input: $input) { id } }",
                      "variables": {"input": {"entityId": entity, "identifierTypeId": "face", "file": None}}}
        body = multipart([
            ("operations", None, None, json.dumps(operations).encode()),
            ("map", None, None, json.dumps({"0": ["query"]}).encode()),
            ("0", "a.png", "image/png", b"x"),
        ])
        assert_bad_request(post_raw(org, body))
        assert_nothing_stored(org, stack, bucket)

    def test_operations_that_are_not_json_are_400(self, org, entity, stack, bucket):
        body = multipart([
            ("operations", None, None, b"{this is not json"),
            ("map", None, None, b'{"0": ["variables.input.file"]}'),
            ("0", "a.png", "image/png", b"x"),
        ])
        reply = assert_bad_request(post_raw(org, body))
        assert "operations" in reply["errors"][0]["message"]
        assert_nothing_stored(org, stack, bucket)

    def test_a_map_that_is_not_json_is_400(self, org, entity, stack, bucket):
        operations = {"query": "mutation($input: CreateEntityIdentifier!) { createEntityIdentifier(input: $input) { id } }",
                      "variables": {"input": {"entityId": entity, "identifierTypeId": "face", "file": None}}}
        body = multipart([
            ("operations", None, None, json.dumps(operations).encode()),
            ("map", None, None, b"[nope"),
            ("0", "a.png", "image/png", b"x"),
        ])
        assert_bad_request(post_raw(org, body))
        assert_nothing_stored(org, stack, bucket)

    def test_two_file_parts_in_the_plain_form_are_400(self, org, entity, stack, bucket):
        body = multipart([
            ("query", None, None, plain_query(entity)),
            ("file", "a.png", "image/png", b"one"),
            ("file", "b.png", "image/png", b"two"),
        ])
        reply = assert_bad_request(post_raw(org, body))
        assert "one file part" in reply["errors"][0]["message"]
        assert_nothing_stored(org, stack, bucket)

    def test_a_plain_form_file_part_with_another_name_is_400(self, org, entity, stack, bucket):
        body = multipart([("query", None, None, plain_query(entity)), ("upload", "a.png", "image/png", b"one")])
        assert_bad_request(post_raw(org, body))
        assert_nothing_stored(org, stack, bucket)

    def test_a_form_with_neither_query_nor_operations_is_400(self, org, entity, stack, bucket):
        assert_bad_request(post_raw(org, multipart([("file", "a.png", "image/png", b"one")])))
        assert_nothing_stored(org, stack, bucket)

    def test_plain_form_variables_that_are_not_json_are_400(self, org, entity, stack, bucket):
        body = multipart([
            ("query", None, None, plain_query(entity)),
            ("variables", None, None, b"{oops"),
            ("file", "a.png", "image/png", b"one"),
        ])
        assert_bad_request(post_raw(org, body))
        assert_nothing_stored(org, stack, bucket)


@pytest.mark.parametrize("filename", ["../../x", "/etc/passwd", "..\\..\\evil.png", "a/../../b.png", "%2e%2e%2fx"])
def test_file_names_that_look_like_paths_are_stored_only_under_our_own_keys(org, entity, stack, bucket, filename):
    library_id = org.client.query(f'query {{ entity(id: "{entity}") {{ libraryId }} }}').ok()["entity"]["libraryId"]
    plain = org.client.upload_form(plain_query(entity).decode(), tagged_png(b"plain"), "image/png", filename=filename).ok()
    spec = org.client.upload_spec(
        "mutation($input: CreateEntityIdentifier!) { createEntityIdentifier(input: $input) { id } }",
        {"input": {"entityId": entity, "identifierTypeId": "face", "file": None}},
        {"input.file": (tagged_png(b"spec"), "image/png")},
        filename=filename,
    ).ok()
    assert plain and spec
    own_key = re.compile(rf"^{org.id}/identifiers/{library_id}/{entity}/[0-9a-f]{{32}}$")
    keys = org_keys(bucket, org)
    assert len(keys) == 2
    assert all(own_key.match(k) for k in keys), keys
    assert sorted(r["storage_key"] for r in identifier_rows(stack, org)) == sorted(keys)
    # Nothing landed outside the organization's prefix either.
    # (names as whole key segments: other tests' objects may end in anything, "…b.png" of a UUID among them)
    stray = [k for k in bucket.keys("") if "/../" in k or k.startswith(("..", "etc/", "/"))
             or k.endswith(("/x", "/passwd", "/b.png", "/evil.png"))]
    assert stray == []


@pytest.mark.parametrize("value", ["hello", 5, {"a": 1}, [1, 2], True])
def test_an_upload_variable_that_is_not_a_file_is_invalid_input(org, entity, stack, bucket, value):
    """JSON variables can say anything; only a multipart file part is a file."""
    reply = org.client.query(
        "mutation($f: Upload!, $e: ID!) { createEntityIdentifier(input: {entityId: $e, identifierTypeId: \"face\", file: $f}) { id } }",
        f=value, e=entity)
    assert reply.error_code == "invalid_input" and "file part of a multipart request" in reply.error_message
    assert_clean_error_text(reply.error_message)
    assert_nothing_stored(org, stack, bucket)


@pytest.mark.parametrize("operation", [
    'mutation {{ createEntityIdentifier(input: {{entityId: "{entity}", identifierTypeId: "face", file: "hello"}}) {{ id }} }}',
    'mutation {{ createEntityIdentifier(input: {{entityId: "{entity}", identifierTypeId: "face", file: {{a: 1}}}}) {{ id }} }}',
    'query {{ similarIdentifiers(file: "x") {{ score }} }}',
    'mutation {{ registerModel(input: {{name: "m", application: embedding, file: "x"}}) {{ id }} }}',
])
def test_a_file_written_into_the_query_is_invalid_input(org, entity, stack, bucket, operation):
    reply = org.client.query(operation.format(entity=entity))
    assert reply.error_code == "invalid_input" and "file part of a multipart request" in reply.error_message
    assert_nothing_stored(org, stack, bucket)


def test_a_file_part_with_an_operation_that_takes_no_file_is_refused_before_it_runs(org, stack, bucket):
    libraries_before = org.client.query("query { libraries { count } }").ok()["libraries"]["count"]
    reply = org.client.upload_form('mutation { createLibrary(input: {name: "x", libraryTypeId: "people"}) { id } }',
                                   tagged_png(b"photo"), "image/png")
    assert reply.status == 400 and reply.error_code == "invalid_input"
    assert "calls no field that takes a file" in reply.error_message and "createEntityIdentifier" in reply.error_message
    assert org.client.query("query { libraries { count } }").ok()["libraries"]["count"] == libraries_before
    assert_nothing_stored(org, stack, bucket)
    # A field whose name merely begins with an upload field's is no file-taking field either.
    typed = org.client.upload_form('mutation { createEntityIdentifierType(input: {id: "x-type", label: "X", labelPlural: "Xs", '
                                   'dataType: image}) { id } }', tagged_png(b"photo"), "image/png")
    assert typed.status == 400 and "calls no field that takes a file" in typed.error_message
