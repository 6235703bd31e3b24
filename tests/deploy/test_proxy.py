"""`engineshed devstack proxy`, the round-robin TCP proxy compose.yaml puts in front of the gateways: connections
alternate between backends, a backend that refuses is skipped, none left is a 502, and bad backends are refused
by name."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.devstack.processes import find_free_port
from gateway.devstack.proxy import Proxy, parse_backends


async def _echo_server(name: bytes) -> asyncio.Server:
    """Answers each line with its name and the line, until the client closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(name + b":" + line)
            await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def _ask(port: int, line: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(line)
    await writer.drain()
    answer = await reader.readline()
    writer.write_eof()
    rest = await reader.read()  # the proxy passes the close through
    writer.close()
    await writer.wait_closed()
    return answer + rest


@pytest.fixture
async def backends() -> AsyncIterator[list[tuple[asyncio.Server, int]]]:
    servers = [await _echo_server(b"a"), await _echo_server(b"b")]
    yield [(s, s.sockets[0].getsockname()[1]) for s in servers]
    for server in servers:
        server.close()
        await server.wait_closed()


async def _proxy(targets: list[tuple[str, int]]) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(Proxy(targets).handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_connections_alternate_and_a_refusing_backend_is_skipped(backends: list[tuple[asyncio.Server, int]]) -> None:
    (a, a_port), (_, b_port) = backends
    proxy, port = await _proxy([("127.0.0.1", a_port), ("127.0.0.1", b_port)])
    try:
        answers = [await _ask(port, b"hello %d\n" % i) for i in range(4)]
        assert answers == [b"a:hello 0\n", b"b:hello 1\n", b"a:hello 2\n", b"b:hello 3\n"]
        a.close()
        await a.wait_closed()
        assert [await _ask(port, b"again\n") for _ in range(3)] == [b"b:again\n"] * 3
    finally:
        proxy.close()
        await proxy.wait_closed()


async def test_no_backend_left_is_a_502() -> None:
    proxy, port = await _proxy([("127.0.0.1", find_free_port()), ("127.0.0.1", find_free_port())])
    try:
        answer = await _ask(port, b"GET / HTTP/1.1\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    finally:
        proxy.close()
        await proxy.wait_closed()


def test_backends_are_host_port_pairs() -> None:
    assert parse_backends(("127.0.0.1:8001", "gw2.internal:80", "[::1]:8002")) == [
        ("127.0.0.1", 8001), ("gw2.internal", 80), ("::1", 8002)]
    for bad in (("127.0.0.1",), ("127.0.0.1:http",), (":8001",), ("host:0",), ("host:70000",), ()):
        with pytest.raises(ValueError, match="ENGINESHED_PROXY_BACKENDS"):
            parse_backends(bad)
