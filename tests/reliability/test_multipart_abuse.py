"""Malformed and hostile multipart bodies: each is refused with a clear error (a 4xx with an ``errors``
body, or a closed connection when the declared Content-Length lies) and nothing is stored."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import pytest

from tests.conftest import TEST_UPLOAD_LIMIT
from tests.reliability.conftest import assert_clean, png

BOUNDARY = "----reliability-boundary-7d1f"
SOCKET_TIMEOUT = 30.0


def _query(entity_id: str) -> str:
    return f'mutation {{ createEntityIdentifier(input: {{entityId: "{entity_id}", identifierTypeId: "face"}}) {{ id }} }}'


def _part(name: str, value: bytes, filename: str | None = None, content_type: str | None = None, extra_header: bytes = b"") -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
    if content_type:
        head += f"Content-Type: {content_type}\r\n".encode()
    return head + extra_header + b"\r\n" + value + b"\r\n"


def _body(entity_id: str, data: bytes = b"", filename: str = "x.png", extra_parts: bytes = b"", extra_header: bytes = b"") -> bytes:
    return (
        _part("query", _query(entity_id).encode())
        + extra_parts
        + _part("file", data or png(1), filename, "image/png", extra_header)
        + f"--{BOUNDARY}--\r\n".encode()
    )


def _raw(url: str, token: str, body: bytes, content_length: int | None = None, *, half_close: bool = False) -> tuple[int | None, bytes]:
    """POST ``body`` over a raw socket with any Content-Length; returns (status or None if closed, response bytes)."""
    parts = urlsplit(url)
    length = len(body) if content_length is None else content_length
    head = (
        f"POST /v3/graphql HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((parts.hostname, parts.port), timeout=SOCKET_TIMEOUT) as sock:
        try:
            sock.sendall(head + body)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        received = b""
        try:
            for _ in range(10_000):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        except ConnectionResetError:
            pass
        except socket.timeout:
            raise AssertionError(f"no answer and no close within {SOCKET_TIMEOUT}s; got {received[:300]!r}") from None
    if not received:
        return None, b""
    status = int(received.split(b" ", 2)[1])
    return status, received.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in received else b""


def _assert_error_body(status: int | None, payload: bytes, allowed: tuple[int, ...] = (400, 413, 415)) -> None:
    assert status in allowed, (status, payload[:400])
    if b"{" in payload:
        text = payload[payload.index(b"{"): payload.rindex(b"}") + 1]
        body = json.loads(text)
        assert body["errors"][0]["extensions"]["code"] == "invalid_input", body
        assert_clean(body)


@pytest.fixture
def target(org, stack, session_bucket):
    entity_id = org.create_entity(org.create_library(), "Ada")

    def stored() -> tuple[int, int]:
        rows = stack.db.fetchval("SELECT count(*) FROM entity_identifiers WHERE org_id = $1", org.id)
        return rows, len(session_bucket.keys(f"{org.id}/"))

    before = stored()
    yield org, entity_id
    assert stored() == before, "a refused upload stored something"


def test_a_truncated_multipart_body_is_refused(target):
    org, entity_id = target
    body = _body(entity_id, png(2) * 50)
    for cut in (len(body) // 3, len(body) - 40, len(body) - 3):
        status, payload = _raw(org.gateway.url, org.token, body[:cut])
        _assert_error_body(status, payload, (400,))


def test_a_one_megabyte_part_header_line_is_refused(target):
    org, entity_id = target
    huge = b"X-Padding: " + b"a" * (1024 * 1024) + b"\r\n"
    status, payload = _raw(org.gateway.url, org.token, _body(entity_id, extra_header=huge))
    _assert_error_body(status, payload)


def test_thousands_of_parts_are_refused(target):
    org, entity_id = target
    many = b"".join(_part(f"f{i}", b"v") for i in range(5000))
    status, payload = _raw(org.gateway.url, org.token, _body(entity_id, extra_parts=many))
    _assert_error_body(status, payload)
    files = b"".join(_part(f"f{i}", b"v", filename=f"{i}.png", content_type="image/png") for i in range(2000))
    status, payload = _raw(org.gateway.url, org.token, _body(entity_id, extra_parts=files))
    _assert_error_body(status, payload)


def test_a_content_length_larger_than_the_body_is_refused_or_the_connection_closed(target):
    org, entity_id = target
    body = _body(entity_id)
    status, payload = _raw(org.gateway.url, org.token, body, len(body) + 5000, half_close=True)
    if status is not None:
        _assert_error_body(status, payload)


def test_a_content_length_smaller_than_the_body_is_refused_or_the_connection_closed(target):
    org, entity_id = target
    body = _body(entity_id, png(3) * 20)
    for short in (len(body) - 10, len(body) // 2, 10):
        status, payload = _raw(org.gateway.url, org.token, body, short)
        if status is not None:
            _assert_error_body(status, payload)


def test_a_non_numeric_or_huge_content_length_is_refused(target):
    org, entity_id = target
    body = _body(entity_id)
    status, payload = _raw(org.gateway.url, org.token, body, 10**15)
    if status is not None:
        _assert_error_body(status, payload)


def test_a_file_larger_than_the_limit_is_413(target):
    org, entity_id = target
    big = b"\x89PNG\r\n\x1a\n" + b"\0" * TEST_UPLOAD_LIMIT  # a PNG's signature: refused for its size, not its kind
    reply = org.client.upload_form(_query(entity_id), big, "image/png")
    assert reply.status == 413 and reply.error_code == "invalid_input", (reply.status, reply.body)
    assert_clean(reply.body)
    # Without a Content-Length (chunked): the limit holds while streaming.
    import httpx

    def chunks():
        data = _body(entity_id, big)
        for i in range(0, len(data), 256 * 1024):
            yield data[i:i + 256 * 1024]

    with httpx.Client(timeout=60) as http:
        response = http.post(org.client.url, content=chunks(), headers={
            "Authorization": f"Bearer {org.token}", "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert response.status_code == 413, response.text[:300]
    assert response.json()["errors"][0]["extensions"]["code"] == "invalid_input"


@pytest.mark.parametrize("filename", ["../../x", "../../../../etc/passwd", "..\\..\\x.png", "/abs/path.png", "a/../../b.png", "%2e%2e%2fx"])
def test_a_path_like_file_name_never_reaches_the_storage_key(org, stack, session_bucket, filename):
    """Not refused (the name is only a label), but never used: the key is built from IDs alone."""
    entity_id = org.create_entity(org.create_library(), "Ada")
    reply = org.client.upload_form(_query(entity_id), png(4), "image/png", filename=filename)
    assert_clean(reply.body)
    if reply.errors:
        assert reply.status < 500 and reply.error_code == "invalid_input"
        assert session_bucket.keys(f"{org.id}/") == set()
        return
    identifier_id = reply.data["createEntityIdentifier"]["id"]
    key = stack.db.fetchval("SELECT storage_key FROM entity_identifiers WHERE id = $1::uuid", identifier_id)
    assert key.startswith(f"{org.id}/") and ".." not in key and "passwd" not in key and "\\" not in key, key
    assert session_bucket.keys(f"{org.id}/") == {key}
    assert session_bucket.keys("../") == set() and session_bucket.keys("etc/") == set()
