"""The seed's multipart `curl -d` example, pasted: bare LF line endings and no blank line after each part's
headers. It works as sent, byte for byte and through real curl; the limits hold for such bodies as strictly
as for canonical ones, and a refused one stores nothing."""

from __future__ import annotations

import json
import shutil
import subprocess

import httpx
import pytest

from tests.api.conftest import (
    assert_clean_error_text,
    identifier_rows,
    org_keys,
    random_bytes,
)
from tests.conftest import TEST_UPLOAD_LIMIT
from tests.support.images import bmp, png
from tests.support.requirements import need, shared_file
from tests.worker.conftest import create_model, download

SEED_MODEL_ID = "4ae6d34d-8f4a-4e4e-aefa-12964cbf29c9"
BOUNDARY = "---------------------------9051914041544843365972754266"

# An image with no CR or LF byte in it (a tiny BMP; PNG and JPEG headers hold both): the body it rides in has
# every LF turned into CRLF.
IMAGE_WITHOUT_LF = next(data for data in (bmp(seed) for seed in range(1000)) if b"\n" not in data and b"\r" not in data)


def seed_curl() -> tuple[str, str]:
    """(the Content-Type header, the -d argument) exactly as the seed's curl command gives them."""
    text = shared_file("seeds", "000-library-training-graphql.txt").read_text()
    start = text.index("curl -X POST")
    command = text[start : text.index("--'", start) + 3]
    content_type = command.split("-H 'content-type: ", 1)[1].split("'", 1)[0]
    data = command.split("-d '", 1)[1][:-1]
    return content_type, data


def post(org, body: bytes, content_type: str = f"multipart/form-data; boundary={BOUNDARY}") -> httpx.Response:
    return httpx.post(org.client.url, content=body, timeout=60,
                      headers={"Authorization": f"Bearer {org.token}", "Content-Type": content_type})


def typed_form(query: str, data: bytes, content_type: str = "image/png", *, blank: bool = False, extra: str = "") -> bytes:
    """A plain form as a person types it for `curl -d`: LF line endings, no blank line after the headers."""
    gap = "\n" if blank else ""
    return (
        f"--{BOUNDARY}\nContent-Disposition: form-data; name=\"query\"\n{gap}{query}\n{extra}"
        f"--{BOUNDARY}\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\nContent-Type: {content_type}\n{gap}"
    ).encode() + data + f"\n--{BOUNDARY}--".encode()


def identifier_query(entity_id: str) -> str:
    return f'mutation {{\ncreateEntityIdentifier(input: {{entityId: "{entity_id}", identifierTypeId: "face"}}) {{\nid\n}}\n}}'


def test_the_seed_text_is_what_this_test_sends():
    content_type, data = seed_curl()
    assert content_type == f"multipart/form-data; boundary={BOUNDARY}"
    assert "\r" not in data and data.startswith(f"--{BOUNDARY}\nContent-Disposition") and data.endswith(f"--{BOUNDARY}--")
    assert 'name="query"\nmutation {' in data  # no blank line after the part headers
    assert SEED_MODEL_ID in data


def test_the_seed_bytes_store_the_model_file(org):
    model_id = create_model(org, org.create_library())
    content_type, data = seed_curl()
    response = post(org, data.replace(SEED_MODEL_ID, model_id).encode(), content_type)
    assert response.status_code == 200, response.text
    saved = response.json()["data"]["updateLibraryEngineModel"]
    assert saved["id"] == model_id and saved["trainStatus"] == "complete"
    assert saved["jsondata"] == {"fingerprints": 3, "contentType": "text/plain"}
    assert download(saved["dataUrl"]) == b"contents of file1.txt"


def test_the_seed_command_through_real_curl(org):
    if shutil.which("curl") is None:
        need("curl", "curl is not installed: the seed's curl command cannot be run")
    model_id = create_model(org, org.create_library())
    content_type, data = seed_curl()
    done = subprocess.run(
        ["curl", "-s", "-X", "POST", org.client.url, "-H", f"authorization: Bearer {org.token}",
         "-H", f"content-type: {content_type}", "-d", data.replace(SEED_MODEL_ID, model_id)],
        capture_output=True, timeout=60, check=True,
    )
    saved = json.loads(done.stdout)["data"]["updateLibraryEngineModel"]
    assert saved["trainStatus"] == "complete" and download(saved["dataUrl"]) == b"contents of file1.txt"


@pytest.mark.parametrize("blank", [False, True], ids=["no-blank-line", "lf-with-blank-line"])
def test_a_typed_identifier_upload_keeps_its_bytes_exactly(org, stack, bucket, blank):
    entity_id = org.create_entity(org.create_library(), "Ada")
    data = png() + bytes(range(256)) + b"\n--almost\r\n"  # CR, LF and dashes inside the file (after its image)
    response = post(org, typed_form(identifier_query(entity_id), data, blank=blank))
    assert response.status_code == 200, response.text
    assert response.json()["data"]["createEntityIdentifier"]["id"]
    (row,) = identifier_rows(stack, org)
    assert row["content_type"] == "image/png" and row["content_length"] == len(data)
    assert bucket.read(row["storage_key"]) == data


def test_a_crlf_body_without_the_blank_lines_works_too(org, stack, bucket):
    entity_id = org.create_entity(org.create_library(), "Ada")
    body = typed_form(identifier_query(entity_id).replace("\n", " "), IMAGE_WITHOUT_LF).replace(b"\n", b"\r\n")
    response = post(org, body)
    assert response.status_code == 200, response.text
    (row,) = identifier_rows(stack, org)
    assert bucket.read(row["storage_key"]) == IMAGE_WITHOUT_LF


# --------------------------------------------------------------------------- the limits hold


def assert_refused(org, stack, bucket, response: httpx.Response, status: tuple[int, ...] = (400,)) -> None:
    assert response.status_code in status, response.text
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == "invalid_input"
    assert_clean_error_text(body)
    assert identifier_rows(stack, org) == [] and org_keys(bucket, org) == []


@pytest.fixture
def entity(org):
    return org.create_entity(org.create_library(), "Ada")


def test_a_typed_body_cut_short_is_400(org, stack, bucket, entity):
    body = typed_form(identifier_query(entity), b"x" * 5000)
    for cut in (len(body) - 3, len(body) - 100, len(body) // 2):
        assert_refused(org, stack, bucket, post(org, body[:cut]))


def test_a_typed_body_with_too_many_parts_is_400(org, stack, bucket, entity):
    many = "".join(f'--{BOUNDARY}\nContent-Disposition: form-data; name="f{i}"\nv\n' for i in range(100))
    assert_refused(org, stack, bucket, post(org, typed_form(identifier_query(entity), b"x", extra=many)))


def test_a_typed_body_with_a_huge_header_line_is_refused(org, stack, bucket, entity):
    huge = f'--{BOUNDARY}\nContent-Disposition: form-data; name="pad"\nX-Padding: {"a" * (1024 * 1024)}\nv\n'
    assert_refused(org, stack, bucket, post(org, typed_form(identifier_query(entity), b"x", extra=huge)), (400, 413))
    name = f'--{BOUNDARY}\nContent-Disposition: form-data; name="pad"\n{"N" * 100_000}: v\nv\n'
    assert_refused(org, stack, bucket, post(org, typed_form(identifier_query(entity), b"x", extra=name)), (400, 413))


def test_a_typed_file_over_the_upload_limit_is_413(org, stack, bucket, entity):
    assert_refused(org, stack, bucket, post(org, typed_form(identifier_query(entity), random_bytes(TEST_UPLOAD_LIMIT + 1))), (413,))
    assert stack.db.fetchval("SELECT count(*) FROM blob_deletions WHERE storage_key LIKE $1", f"{org.id}/%") == 0


def test_a_typed_query_part_over_the_field_limit_is_400(org, stack, bucket, entity):
    query = identifier_query(entity) + "\n#" + "x" * (1024 * 1024 + 10)
    assert_refused(org, stack, bucket, post(org, typed_form(query, b"x")))
