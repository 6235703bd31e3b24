"""A small round-robin TCP proxy: ``engineshed devstack proxy`` puts several gateways behind one port.

compose.yaml uses it where no registry image of a load balancer can be pulled; in production nginx, HAProxy or
Traefik do this job (health checks, TLS, access logs). It forwards bytes, so HTTP, keep-alive and the GraphQL
WebSocket subscriptions all pass; a backend that refuses the connection is skipped for the next one, so a
stopped gateway costs its clients nothing but the connections it already held.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import signal
import sys

from gateway.settings import Settings

log = logging.getLogger("engineshed.proxy")
CONNECT_TIMEOUT_SECONDS = 5.0
CHUNK = 64 * 1024


def parse_backends(entries: tuple[str, ...]) -> list[tuple[str, int]]:
    """``host:port`` entries; raises ValueError naming the bad one."""
    backends = []
    for entry in entries:
        host, sep, port = entry.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"ENGINESHED_PROXY_BACKENDS: {entry!r} is not host:port")
        backends.append((host.strip("[]"), int(port)))
    if not backends:
        raise ValueError("ENGINESHED_PROXY_BACKENDS must name at least one host:port")
    return backends


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # half-close: the other side may still be answering
    except (ConnectionError, OSError):
        writer.close()


class Proxy:
    def __init__(self, backends: list[tuple[str, int]]) -> None:
        self.backends = backends
        self._next = itertools.cycle(range(len(backends)))

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """The next backend that accepts a connection, trying each at most once."""
        for _ in range(len(self.backends)):
            host, port = self.backends[next(self._next)]
            try:
                return await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT_SECONDS)
            except (TimeoutError, OSError) as exc:
                log.warning("backend %s:%s refused a connection (%s); trying the next", host, port, exc)
        return None

    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream = await self._connect()
        if upstream is None:
            client_writer.write(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            with contextlib.suppress(ConnectionError, OSError):
                await client_writer.drain()
            client_writer.close()
            return
        backend_reader, backend_writer = upstream
        try:
            await asyncio.gather(_pipe(client_reader, backend_writer), _pipe(backend_reader, client_writer))
        finally:
            for writer in (backend_writer, client_writer):
                writer.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await writer.wait_closed()


async def serve_proxy(host: str, port: int, backends: list[tuple[str, int]]) -> None:
    proxy = Proxy(backends)
    server = await asyncio.start_server(proxy.handle, host, port, reuse_address=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    targets = ", ".join(f"{h}:{p}" for h, p in backends)
    print(f"engineshed: proxy listening on {host}:{port}, forwarding to {targets}", flush=True)
    async with server:
        await stop.wait()
        server.close()  # stops accepting; connections in flight finish or are dropped when the process exits


def run_proxy(settings: Settings) -> int:
    try:
        backends = parse_backends(settings.proxy_backends)
    except ValueError as exc:
        sys.exit(f"engineshed: {exc}")
    asyncio.run(serve_proxy(settings.host, settings.port, backends))
    return 0
