"""An image that does not decode whole (a JPEG or PNG cut short after its header) is refused at upload with
invalid_input, whichever way it comes (plain form, spec multipart, URL, new content of a stored identifier),
and nothing is stored: no row, no object, no orphan record. A whole image of the same photo is taken."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from sampledata import digits
from tests.api.conftest import assert_clean_error_text, identifier_rows, org_keys
from tests.api.test_content_check import assert_nothing_stored, identifier_query
from tests.api.test_uploads import entity  # noqa: F401 - the fixture
from tests.graphql_client import GraphQLClient


def photo(fmt: str) -> bytes:
    """A real handwritten digit (sampledata), enlarged to a photo's size and encoded as ``fmt``."""
    first = digits.load().train[0]
    image = Image.open(io.BytesIO(first.data)).convert("RGB").resize((480, 480), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return out.getvalue()


def cut(data: bytes) -> bytes:
    return data[: len(data) * 2 // 3]


@pytest.mark.parametrize("fmt, mime", [("JPEG", "image/jpeg"), ("PNG", "image/png")])
def test_a_truncated_image_sent_as_a_form_file_is_refused_and_nothing_is_stored(org, entity, stack, bucket, fmt, mime):
    reply = org.client.upload_form(identifier_query(entity), cut(photo(fmt)), mime, filename="photo")
    assert reply.error_code == "invalid_input", reply.body
    assert reply.errors[0]["extensions"]["data"]["reason"] == "corrupt"
    assert "does not decode whole" in reply.error_message
    assert_clean_error_text(reply.body)
    assert_nothing_stored(org, stack, bucket)


def test_a_truncated_jpeg_sent_as_a_spec_multipart_upload_is_refused(org, entity, stack, bucket):
    reply = org.client.upload_spec(
        "mutation($input: CreateEntityIdentifier!) { createEntityIdentifier(input: $input) { id } }",
        {"input": {"entityId": entity, "identifierTypeId": "face", "file": None}},
        {"input.file": (cut(photo("JPEG")), "image/jpeg")},
    )
    assert reply.error_code == "invalid_input" and "does not decode whole" in reply.error_message, reply.body
    assert_nothing_stored(org, stack, bucket)


def test_the_whole_photo_is_stored(org, entity, stack, bucket):
    data = photo("JPEG")
    created = org.client.upload_form(identifier_query(entity), data, "image/jpeg").ok()["createEntityIdentifier"]
    assert created["contentLength"] == len(data)
    assert len(identifier_rows(stack, org)) == 1 and len(org_keys(bucket, org)) == 1


def test_a_url_serving_a_truncated_jpeg_is_refused_for_new_and_replaced_content(
    org, entity, stack, bucket, file_server, private_fetch_gateway,
):
    url = file_server.add("/cut.jpg", cut(photo("JPEG")), "image/jpeg")
    client = GraphQLClient(private_fetch_gateway.url, org.token)
    try:
        reply = client.query("mutation($i: CreateEntityIdentifier!) { createEntityIdentifier(input: $i) { id } }",
                             i={"entityId": entity, "identifierTypeId": "face", "url": url})
        assert reply.error_code == "invalid_input" and "does not decode whole" in reply.error_message, reply.body
        assert_nothing_stored(org, stack, bucket)
        # As the new content of a stored identifier: refused, and the old content stays.
        good = org.client.upload_form(identifier_query(entity), photo("PNG"), "image/png").ok()["createEntityIdentifier"]
        update = client.query('mutation($id: ID!, $u: String!) { updateEntityIdentifier(input: {id: $id, url: $u}) { id } }',
                              id=good["id"], u=url)
        assert update.error_code == "invalid_input" and "does not decode whole" in update.error_message, update.body
        (row,) = identifier_rows(stack, org)
        assert row["content_type"] == "image/png" and org_keys(bucket, org) == [row["storage_key"]]
    finally:
        client.close()
