"""Identifiers created from URLs that point where a server-side fetch must not go, or that answer in ways
that must be bounded: each is refused with ``invalid_input`` and nothing is stored.

Direct private addresses are tried on the session gateway (no allowances). Redirects, slow and huge answers
need a reachable server: a local one, reached through a second gateway started with
``ENGINESHED_FETCH_ALLOWED_HOSTS=127.0.0.1/32`` (``FetchPolicy.host_allowed`` matches names without their
port, so a CIDR of exactly 127.0.0.1 is the narrowest allowance), a 2 s fetch timeout and 100000 bytes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import start_gateway
from tests.graphql_client import GraphQLClient
from tests.reliability.conftest import assert_clean, png

MAX_BYTES = 100_000
SLEEP = 6.0  # longer than the second gateway's 2 s fetch timeout


class _Server:
    def __init__(self) -> None:
        self.requests: list[str] = []
        requests = self.requests

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                requests.append(self.path)
                path = urlsplit(self.path).path
                query = parse_qs(urlsplit(self.path).query)
                if path == "/ok.png":
                    body = png(7)
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", query["to"][0])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif path == "/slow-headers":
                    time.sleep(SLEEP)
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif path == "/slow-body":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    self.wfile.write(b"\x89PNG" + b"\0" * 6)
                    self.wfile.flush()
                    time.sleep(SLEEP)
                    self.wfile.write(b"\0" * 990)
                elif path == "/trickle":  # one byte every 1.5 s: never idle for the 2 s timeout, 12 s in all
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", "8")
                    self.end_headers()
                    for byte in b"\x89PNGabcd":
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(1.5)
                elif path == "/huge-declared":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Content-Length", str(MAX_BYTES * 3))
                    self.end_headers()
                    self.wfile.write(b"\0" * MAX_BYTES * 3)
                elif path == "/huge-streamed":  # no Content-Length: the size is only known while reading
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    for _ in range(30):
                        self.wfile.write(b"\0" * 10_000)
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.close()


@pytest.fixture(scope="module")
def fetching_gateway(stack, server, tmp_path_factory):
    env = dict(stack.env, ENGINESHED_FETCH_ALLOWED_HOSTS="127.0.0.1/32", ENGINESHED_FETCH_TIMEOUT_SECONDS="2",
               ENGINESHED_FETCH_TOTAL_SECONDS="4", ENGINESHED_FETCH_MAX_BYTES=str(MAX_BYTES))
    gw = start_gateway(env, tmp_path_factory.mktemp("fetch-logs"), "fetching-gateway")
    yield gw
    gw.process.stop()


def _create(client: GraphQLClient, entity_id: str, url: str):
    return client.query(
        "mutation($e: ID!, $u: String!) { createEntityIdentifier(input: {entityId: $e, identifierTypeId: \"face\", url: $u}) { id } }",
        e=entity_id, u=url,
    )


def _stored(org, stack, session_bucket) -> tuple[int, int]:
    return (stack.db.fetchval("SELECT count(*) FROM entity_identifiers WHERE org_id = $1", org.id),
            len(session_bucket.keys(f"{org.id}/")))


def _refused(reply) -> None:
    assert reply.status == 200 and reply.error_code == "invalid_input", reply.body
    assert not reply.data or not reply.data.get("createEntityIdentifier")
    assert_clean(reply.body)


def test_urls_at_private_addresses_and_other_schemes_are_refused_without_a_request(org, stack, session_bucket, server):
    entity_id = org.create_entity(org.create_library(), "Ada")
    before = _stored(org, stack, session_bucket)
    seen = len(server.requests)
    urls = [
        f"{server.base}/ok.png", f"http://localhost:{server.port}/ok.png", f"http://[::1]:{server.port}/ok.png",
        f"http://127.1:{server.port}/ok.png", f"http://2130706433:{server.port}/ok.png", f"http://[::ffff:127.0.0.1]:{server.port}/ok.png",
        "http://10.0.0.1/x.png", "http://169.254.169.254/latest/meta-data/", "http://0.0.0.0/x.png", "http://[fd00::1]/x.png",
        "file:///etc/passwd", "ftp://127.0.0.1/x.png", "gopher://127.0.0.1:70/_x", "data:image/png;base64,AAAA",
        "http://user:pass@192.0.2.1/x.png", "//127.0.0.1/x.png", "not a url", "",
    ]
    for url in urls:
        reply = _create(org.client, entity_id, url)
        _refused(reply)
    assert server.requests[seen:] == [], "a refused URL was fetched"
    assert _stored(org, stack, session_bucket) == before


def test_a_second_gateway_fetches_from_the_allowed_test_server(org, stack, session_bucket, server, fetching_gateway):
    client = GraphQLClient(fetching_gateway.url, org.token)
    try:
        entity_id = org.create_entity(org.create_library(), "Ada")
        reply = _create(client, entity_id, f"{server.base}/ok.png")
        assert reply.ok()["createEntityIdentifier"]["id"]
        assert _stored(org, stack, session_bucket) == (1, 1)
    finally:
        client.close()


@pytest.mark.parametrize("case", [
    "redirect-10.0.0.1", "redirect-metadata", "redirect-ipv6-loopback", "redirect-file", "redirect-loop",
    "slow-headers", "huge-declared", "huge-streamed",
])
def test_redirects_into_private_addresses_and_slow_or_huge_answers_are_refused(org, stack, session_bucket, server, fetching_gateway, case):
    targets = {
        "redirect-10.0.0.1": "/redirect?to=http://10.0.0.1/x.png",
        "redirect-metadata": "/redirect?to=http://169.254.169.254/latest/meta-data/",
        "redirect-ipv6-loopback": f"/redirect?to=http://[::1]:{server.port}/ok.png",
        "redirect-file": "/redirect?to=file:///etc/passwd",
        "redirect-loop": "/redirect?to=/redirect%3Fto%3D/redirect",
        "slow-headers": "/slow-headers",
        "huge-declared": "/huge-declared",
        "huge-streamed": "/huge-streamed",
    }
    client = GraphQLClient(fetching_gateway.url, org.token)
    try:
        entity_id = org.create_entity(org.create_library(), "Ada")
        before = _stored(org, stack, session_bucket)
        _refused(_create(client, entity_id, server.base + targets[case]))
        assert _stored(org, stack, session_bucket) == before
    finally:
        client.close()


def test_a_response_that_stalls_in_the_middle_of_its_body_is_refused_as_a_timeout(org, stack, session_bucket, server, fetching_gateway):
    client = GraphQLClient(fetching_gateway.url, org.token)
    try:
        entity_id = org.create_entity(org.create_library(), "Ada")
        before = _stored(org, stack, session_bucket)
        reply = _create(client, entity_id, server.base + "/slow-body")
        assert _stored(org, stack, session_bucket) == before
        _refused(reply)
    finally:
        client.close()


def test_a_response_trickled_slower_than_the_fetch_deadline_in_total_is_refused(org, stack, session_bucket, server, fetching_gateway):
    """ENGINESHED_FETCH_TOTAL_SECONDS bounds the whole fetch, each read being within the read timeout (a slow-loris answer)."""
    client = GraphQLClient(fetching_gateway.url, org.token)
    try:
        entity_id = org.create_entity(org.create_library(), "Ada")
        before = _stored(org, stack, session_bucket)
        reply = _create(client, entity_id, server.base + "/trickle")
        assert _stored(org, stack, session_bucket) == before
        _refused(reply)
    finally:
        client.close()
