"""Retries with backoff, against real HTTP servers on loopback (no mock of our own code).

A small server answers 503 / ``service_unavailable`` a given number of times and then proxies to the real
gateway, or drops the connection without answering; the client's retries are counted by what the server saw.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from engineshed.client import AsyncClient, Client, ConnectionFailed, RetryPolicy, ServiceUnavailableError
from tests.client.helpers import cli, png

FAST = RetryPolicy(attempts=4, initial_delay=0.01, max_delay=0.05)


class Flaky:
    """What the loopback server does: ``unavailable`` replies first (HTTP 503 or a GraphQL service_unavailable
    error), ``drops`` closed connections, then it forwards to the gateway."""

    def __init__(self, upstream: str, *, unavailable: int = 0, drops: int = 0, style: str = "http") -> None:
        self.upstream = upstream
        self.unavailable = unavailable
        self.drops = drops
        self.style = style
        self.requests: list[bytes] = []
        self.lock = threading.Lock()


@contextmanager
def flaky_server(flaky: Flaky) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            with flaky.lock:
                flaky.requests.append(body)
                if flaky.drops > 0:
                    flaky.drops -= 1
                    self.connection.shutdown(socket.SHUT_RDWR)  # the request arrived; the reply never comes
                    self.close_connection = True
                    return
                unavailable = flaky.unavailable > 0
                if unavailable:
                    flaky.unavailable -= 1
            if unavailable:
                reply = json.dumps({"data": None, "errors": [{"message": "the database is unavailable; try again shortly",
                                                              "extensions": {"code": "service_unavailable"}}]}).encode()
                self.send_response(503 if flaky.style == "http" else 200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(reply)))
                if flaky.style == "http":
                    self.send_header("retry-after", "0")
                self.end_headers()
                self.wfile.write(reply)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            answer = httpx.post(flaky.upstream + self.path, content=body, headers=headers, timeout=60)
            self.send_response(answer.status_code)
            for key in ("content-type",):
                self.send_header(key, answer.headers[key])
            self.send_header("content-length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("style", ["http", "graphql"])
def test_service_unavailable_is_retried_until_the_service_answers(org, style):
    flaky = Flaky(org.gateway.url, unavailable=2, style=style)
    with flaky_server(flaky) as url, Client(url, org.token, retry=FAST) as client:
        library = client.create_library("after-outage", "people")  # a mutation: service_unavailable means it did not run
    assert len(flaky.requests) == 3
    with Client(org.gateway.url, org.token) as direct:
        assert [r["id"] for r in direct.libraries(name="after-outage")["records"]] == [library["id"]]


def test_service_unavailable_is_raised_once_the_attempts_are_spent(org):
    flaky = Flaky(org.gateway.url, unavailable=10)
    with flaky_server(flaky) as url, Client(url, org.token, retry=FAST) as client, pytest.raises(ServiceUnavailableError) as raised:
        client.me()
    assert raised.value.code == "service_unavailable" and len(flaky.requests) == FAST.attempts


def test_an_upload_is_sent_whole_again_after_service_unavailable(org):
    flaky = Flaky(org.gateway.url, unavailable=1)
    with Client(org.gateway.url, org.token) as direct:
        library = direct.create_library("uploads", "people")
        entity = direct.create_entity(library["id"], "gina")
    with flaky_server(flaky) as url, Client(url, org.token, retry=FAST) as client:
        created = client.create_entity_identifier(entity["id"], png(4), filename="gina.png")
    assert len(flaky.requests) == 2 and all(png(4) in request for request in flaky.requests)  # the whole file both times
    with Client(org.gateway.url, org.token) as direct:
        assert direct.library_contents(library["id"])["gina"]["sha256"] == {created["contentSha256"]}


def test_a_dropped_connection_is_retried_for_a_query_but_not_for_a_mutation(org):
    flaky = Flaky(org.gateway.url, drops=1)
    with flaky_server(flaky) as url, Client(url, org.token, retry=FAST) as client:
        assert client.me()["organizationId"] == str(org.id)
        assert len(flaky.requests) == 2
        flaky.drops = 1
        with pytest.raises(ConnectionFailed):
            client.create_library("maybe-created", "people")  # it may have run: never sent twice
    assert len(flaky.requests) == 3


async def test_the_async_client_retries_too(org):
    flaky = Flaky(org.gateway.url, unavailable=2)
    with flaky_server(flaky) as url:
        async with AsyncClient(url, org.token, retry=FAST) as client:
            assert (await client.me())["organizationId"] == str(org.id)
    assert len(flaky.requests) == 3


def test_the_cli_rides_out_a_short_outage(org):
    flaky = Flaky(org.gateway.url, unavailable=2)
    with flaky_server(flaky) as url:
        done = cli(org, "jobs", "list", "--json", url=url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [] and len(flaky.requests) == 3
