"""A 413 every client can read: clients that send the whole body before reading the reply (urllib,
http.client, a raw socket; none sends `Expect: 100-continue`) get the JSON 413, not a connection reset,
for JSON bodies over the body limit and for uploads over the upload limit. Past ENGINESHED_MAX_DISCARD_BYTES
the connection is closed; a client waiting for `100 Continue` is never asked for its body."""

from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.conftest import TEST_UPLOAD_LIMIT, Gateway, start_gateway
from tests.reliability.conftest import assert_clean

MiB = 1024 * 1024
BODY_LIMIT = 8 * MiB  # ENGINESHED_MAX_BODY_BYTES's default; the test stack keeps it
BOUNDARY = "readable-413-boundary"
TIMEOUT = 60


def upload_body(entity_id: str, data: bytes) -> bytes:
    query = f'mutation {{ createEntityIdentifier(input: {{entityId: "{entity_id}", identifierTypeId: "face"}}) {{ id }} }}'
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="query"\r\n\r\n{query}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\nContent-Type: image/png\r\n\r\n'
    ).encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def urllib_post(url: str, token: str, body: bytes, content_type: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def assert_json_413(status: int, body: dict) -> None:
    assert status == 413, (status, body)
    assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "invalid_input"
    assert "limit" in body["errors"][0]["message"]
    assert_clean(body)


def raw_exchange(url: str, head: str, chunks: Iterator[bytes]) -> tuple[int, bytes, bytes]:
    """Send the head and every chunk before reading anything; (status, headers, body) of the reply."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT) as sock:
        sock.sendall(head.encode())
        for chunk in chunks:
            sock.sendall(chunk)
        received = b""
        while b"\r\n\r\n" not in received or not _complete(received):
            data = sock.recv(65536)
            if not data:
                break
            received += data
    head_bytes, _, body = received.partition(b"\r\n\r\n")
    return int(head_bytes.split(b" ", 2)[1]), head_bytes.lower(), body


def _complete(received: bytes) -> bool:
    head, _, body = received.partition(b"\r\n\r\n")
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


@pytest.fixture
def target(org, stack, session_bucket):
    entity_id = org.create_entity(org.create_library(), "Ada")

    def stored() -> tuple[int, int]:
        rows = stack.db.fetchval("SELECT count(*) FROM entity_identifiers WHERE org_id = $1", org.id)
        return rows, len(session_bucket.keys(f"{org.id}/"))

    assert stored() == (0, 0)
    yield org, entity_id
    assert stored() == (0, 0), "a refused upload stored something"


def test_urllib_gets_the_413_for_a_json_body_over_the_limit(org):
    body = json.dumps({"query": "{ __typename }", "padding": "x" * (BODY_LIMIT + MiB)}).encode()
    assert_json_413(*urllib_post(org.client.url, org.token, body, "application/json"))


def test_urllib_gets_the_413_for_an_upload_over_the_limit(target):
    org, entity_id = target
    body = upload_body(entity_id, b"\0" * (TEST_UPLOAD_LIMIT + 2 * MiB))
    assert_json_413(*urllib_post(org.client.url, org.token, body, f"multipart/form-data; boundary={BOUNDARY}"))


@pytest.fixture(scope="module")
def large_upload_gateway(stack, tmp_path_factory) -> Iterator[Gateway]:
    """A gateway at the default upload limit (the test stack lowers it) and the default discard bound."""
    env = {k: v for k, v in stack.env.items() if k not in ("ENGINESHED_MAX_UPLOAD_BYTES", "ENGINESHED_MAX_DISCARD_BYTES")}
    gateway = start_gateway(env, tmp_path_factory.mktemp("large-upload-gateway"), name="gateway-large-upload")
    try:
        yield gateway
    finally:
        gateway.process.stop()


def test_urllib_gets_the_413_for_an_upload_ten_percent_over_the_default_limit(org, large_upload_gateway):
    # At the defaults (a 100 MiB limit), a 110 MiB file declared whole used to be cut off after the reply, which
    # urllib, requests and httpx read as a connection reset.
    entity_id = org.create_entity(org.create_library("big"), "someone")
    body = upload_body(entity_id, b"\0" * (110 * MiB))
    status, reply = urllib_post(large_upload_gateway.url + "/v3/graphql", org.token, body,
                                f"multipart/form-data; boundary={BOUNDARY}")
    assert_json_413(status, reply)


def test_a_chunked_upload_over_the_limit_sent_whole_gets_the_413(target):
    org, entity_id = target
    body = upload_body(entity_id, b"\0" * (TEST_UPLOAD_LIMIT + 3 * MiB))
    head = (f"POST /v3/graphql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {org.token}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 256 * 1024):
            piece = body[start : start + 256 * 1024]
            yield b"%x\r\n" % len(piece) + piece + b"\r\n"
        yield b"0\r\n\r\n"

    status, _, payload = raw_exchange(org.client.url, head, chunks())
    assert_json_413(status, json.loads(payload))


def test_after_a_drained_413_the_connection_serves_the_next_request(org):
    parts = urlsplit(org.client.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)
    headers = {"Authorization": f"Bearer {org.token}", "Content-Type": "application/json"}
    try:
        connection.request("POST", "/v3/graphql", body=b'{"query": "' + b" " * (BODY_LIMIT + 10) + b'"}', headers=headers)
        reply = connection.getresponse()
        assert_json_413(reply.status, json.loads(reply.read()))
        connection.request("POST", "/v3/graphql", body=b'{"query": "{ __typename }"}', headers=headers)
        reply = connection.getresponse()
        assert reply.status == 200 and json.loads(reply.read())["data"] == {"__typename": "Query"}
    finally:
        connection.close()


def test_a_client_waiting_for_100_continue_gets_the_413_without_sending_its_body(org):
    parts = urlsplit(org.client.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT) as sock:
        sock.sendall((f"POST /v3/graphql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {org.token}\r\n"
                      f"Content-Type: application/json\r\nContent-Length: {BODY_LIMIT + 1}\r\nExpect: 100-continue\r\n\r\n").encode())
        received = b""
        while not _complete(received):
            data = sock.recv(65536)
            if not data:
                break
            received += data
    assert received.startswith(b"HTTP/1.1 413"), received[:200]
    assert b"100 Continue" not in received
    assert_json_413(413, json.loads(received.partition(b"\r\n\r\n")[2]))


# --------------------------------------------------------------------------- past the bound

DISCARD = 2 * MiB


@pytest.fixture(scope="module")
def small_discard_gateway(stack, tmp_path_factory) -> Iterator[Gateway]:
    env = dict(stack.env, ENGINESHED_MAX_DISCARD_BYTES=str(DISCARD))
    gateway = start_gateway(env, tmp_path_factory.mktemp("discard-gateway"), name="gateway-discard")
    try:
        yield gateway
    finally:
        gateway.process.stop()


def test_a_declared_body_past_the_bound_gets_the_413_and_a_closed_connection_at_once(org, small_discard_gateway):
    length = BODY_LIMIT + DISCARD + MiB
    head = (f"POST /v3/graphql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {org.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n")
    status, headers, payload = raw_exchange(small_discard_gateway.url, head, iter([b"{"]))
    assert_json_413(status, json.loads(payload))
    assert b"connection: close" in headers


def test_a_streamed_body_past_the_bound_is_cut_off(org, small_discard_gateway):
    """Chunked, so its size is not known ahead: the gateway reads at most limit + bound, then closes."""
    parts = urlsplit(small_discard_gateway.url)
    sent = 0
    with socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT) as sock:
        sock.sendall((f"POST /v3/graphql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {org.token}\r\n"
                      "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode())
        piece = b"%x\r\n" % (256 * 1024) + b" " * (256 * 1024) + b"\r\n"
        with pytest.raises(OSError):  # reset or broken pipe once the gateway has closed
            while sent < 20 * (BODY_LIMIT + DISCARD):
                sock.sendall(piece)
                sent += len(piece)
    # The kernel buffers some bytes on both sides of loopback; far less than what was offered.
    assert sent < 3 * (BODY_LIMIT + DISCARD), sent


def test_a_discard_bound_that_is_negative_is_refused_at_start():
    from gateway.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="ENGINESHED_MAX_DISCARD_BYTES"):
        Settings.from_env({"ENGINESHED_MAX_DISCARD_BYTES": "-1"})
    # Unset, the bound follows the upload limit: a file just over it is answered, whatever the limit is.
    assert Settings.from_env({}).discard_bytes == 200 * MiB
    assert Settings.from_env({"ENGINESHED_MAX_UPLOAD_BYTES": str(4 * MiB)}).discard_bytes == 64 * MiB
    assert Settings.from_env({"ENGINESHED_MAX_UPLOAD_BYTES": str(1024 * MiB)}).discard_bytes == 2048 * MiB
    assert Settings.from_env({"ENGINESHED_MAX_DISCARD_BYTES": "0"}).discard_bytes == 0
