"""A real HTTP server on loopback in front of the gateway: it answers 503 / ``service_unavailable`` or drops the
connection a given number of times, then forwards; it records every request body it saw (for counting retries
and batches). It stands in for a load balancer in front of a restarting gateway, not for our own code."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


class Flaky:
    """What the loopback server does: ``unavailable`` replies first (HTTP 503 or a GraphQL service_unavailable
    error), ``drops`` closed connections, then it forwards to the gateway."""

    def __init__(self, upstream: str, *, unavailable: int = 0, drops: int = 0, style: str = "http", stall: float = 0.0) -> None:
        self.upstream = upstream
        self.stall = stall  # seconds to wait before answering anything (a server too slow for the client's timeout)
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
            if flaky.stall:
                threading.Event().wait(flaky.stall)
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
