"""An identifier's bytes must be what its type holds: an image type takes only the image formats the engines
decode (by their signature), and no type takes an empty file. Refused uploads leave no row, object or
orphan record; an accepted image whose declared type says nothing useful gets the type its bytes show."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from gateway.services.ingest import content_sniff
from tests.api.conftest import assert_clean_error_text, identifier_rows, org_keys
from tests.api.test_uploads import assert_nothing_stored as no_row_or_object
from tests.api.test_uploads import entity  # noqa: F401 - the fixture
from tests.graphql_client import GraphQLClient


def encoded(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(out, format=fmt)
    return out.getvalue()


def identifier_query(entity: str, type_id: str = "face", extra: str = "") -> str:
    return (f'mutation {{ createEntityIdentifier(input: {{entityId: "{entity}", identifierTypeId: "{type_id}"{extra}}}) '
            "{ id contentType contentLength } }")


def assert_nothing_stored(org, stack, bucket):
    no_row_or_object(org, stack, bucket)
    assert stack.db.fetchval("SELECT count(*) FROM blob_deletions WHERE storage_key LIKE $1", f"{org.id}/%") == 0


@pytest.mark.parametrize("fmt, mime", [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("GIF", "image/gif"), ("WEBP", "image/webp"),
                                       ("BMP", "image/bmp"), ("TIFF", "image/tiff")])
def test_every_format_the_engines_decode_is_known_by_its_signature(fmt, mime):
    data = encoded(fmt)
    assert content_sniff.image_type(data[:content_sniff.HEAD_BYTES]) == mime


@pytest.mark.parametrize("head", [b"", b"hello world!", b"<!DOCTYPE html>", b"%PDF-1.7\n", b"RIFF\0\0\0\0WAVE", b"\x89PNG not",
                                  b"PK\x03\x04", b"BMW service record 2024", b"BM"])
def test_other_bytes_are_not_an_image(head):
    assert content_sniff.image_type(head) is None


@pytest.mark.parametrize("data, declared, reason", [
    (b"", "image/jpeg", "empty"),
    (b"this is a text file, not a photo\n", "image/jpeg", "not-an-image"),
    (b"<html><body>404</body></html>", "text/html", "not-an-image"),
    (encoded("PNG")[:5], "image/png", "not-an-image"),  # shorter than the signature
])
def test_an_empty_or_non_image_file_for_a_face_is_refused_and_nothing_is_stored(org, entity, stack, bucket, data, declared, reason):
    reply = org.client.upload_form(identifier_query(entity), data, declared, filename="photo.jpg")
    assert reply.error_code == "invalid_input", reply.body
    assert reply.errors[0]["extensions"]["data"]["reason"] == reason
    assert_clean_error_text(reply.body)
    assert_nothing_stored(org, stack, bucket)


def test_the_spec_upload_is_checked_too(org, entity, stack, bucket):
    reply = org.client.upload_spec(
        "mutation($input: CreateEntityIdentifier!) { createEntityIdentifier(input: $input) { id } }",
        {"input": {"entityId": entity, "identifierTypeId": "image", "file": None}},
        {"input.file": (b"GIF88a not quite", "image/gif")},
    )
    assert reply.error_code == "invalid_input" and "not an image" in reply.error_message
    assert_nothing_stored(org, stack, bucket)


@pytest.mark.parametrize("declared", ["application/octet-stream", "text/plain"])
def test_an_image_declared_as_something_else_is_stored_as_the_image_it_is(org, entity, bucket, declared):
    data = encoded("JPEG")
    created = org.client.upload_form(identifier_query(entity), data, declared).ok()["createEntityIdentifier"]
    assert created["contentType"] == "image/jpeg" and created["contentLength"] == len(data)


def test_a_declared_image_type_is_kept_as_given(org, entity):
    """Upstream stores contentType as the client gives it; an image type stays even when the bytes are another one."""
    created = org.client.upload_form(identifier_query(entity, extra=', contentType: "image/png"'), encoded("JPEG"),
                                      "image/jpeg").ok()["createEntityIdentifier"]
    assert created["contentType"] == "image/png"


def test_a_recording_is_left_to_the_decoder_but_an_empty_one_is_refused(org, entity, stack, bucket):
    created = org.client.upload_form(identifier_query(entity, "audio-recording"), b"ID3\x04\0\0\0\0\0\0 some mp3", "audio/mpeg").ok()
    assert created["createEntityIdentifier"]["contentType"] == "audio/mpeg"
    reply = org.client.upload_form(identifier_query(entity, "audio-recording"), b"", "audio/wav")
    assert reply.error_code == "invalid_input" and reply.errors[0]["extensions"]["data"]["reason"] == "empty"
    assert len(identifier_rows(stack, org)) == 1 and len(org_keys(bucket, org)) == 1


def test_a_url_that_serves_a_web_page_is_not_stored_as_a_face(org, entity, stack, bucket, file_server, private_fetch_gateway):
    url = file_server.add("/photo.jpg", b"<!DOCTYPE html><html>Sign in to see this photo</html>", "text/html")
    client = GraphQLClient(private_fetch_gateway.url, org.token)
    try:
        reply = client.query("mutation($i: CreateEntityIdentifier!) { createEntityIdentifier(input: $i) { id } }",
                             i={"entityId": entity, "identifierTypeId": "face", "url": url})
        assert reply.error_code == "invalid_input" and "not an image" in reply.error_message
        assert_nothing_stored(org, stack, bucket)
        # The same page given as the new content of a stored identifier is refused, and the old content stays.
        good = org.client.upload_form(identifier_query(entity), encoded("PNG"), "image/png").ok()["createEntityIdentifier"]
        update = client.query('mutation($id: ID!, $u: String!) { updateEntityIdentifier(input: {id: $id, url: $u}) { id } }',
                              id=good["id"], u=url)
        assert update.error_code == "invalid_input"
        (row,) = identifier_rows(stack, org)
        assert row["content_type"] == "image/png" and org_keys(bucket, org) == [row["storage_key"]]
    finally:
        client.close()
