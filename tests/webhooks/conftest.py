"""Webhook tests: a receiver on loopback that records what it is sent and answers as each test scripts it, a
gateway and workers that may send to loopback (ENGINESHED_FETCH_ALLOWED_HOSTS=127.0.0.1/32), and helpers."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import Gateway, Org, Process, Stack, make_org, start_gateway
from tests.support.waits import wait_for

LOOPBACK_ALLOWED = {
    "ENGINESHED_FETCH_ALLOWED_HOSTS": "127.0.0.1/32",
    "ENGINESHED_WEBHOOK_BACKOFF_SECONDS": "0.4",
    "ENGINESHED_WEBHOOK_TIMEOUT_SECONDS": "3",
}
HANG = -1  # a scripted "status": answer nothing for HANG_SECONDS
HANG_SECONDS = 6
MAX_PER_ORG = 4  # the hooks gateway's cap, small so reaching it is cheap
WEBHOOK_FIELDS = """id url events description enabled disabledReason createdDateTime modifiedDateTime lastDeliveryId
    lastEvent lastDeliveryStatus lastDeliveryAttempts lastResponseStatus lastError lastAttemptDateTime
    lastDeliveredDateTime"""
DELIVERY_FIELDS = """id webhookId event status attempts responseStatus lastError data createdDateTime lastAttemptDateTime
    nextAttemptDateTime deliveredDateTime"""
CREATE = f"""mutation($url: String!, $events: [WebhookEvent!]!, $d: String) {{
    createWebhook(input: {{url: $url, events: $events, description: $d}}) {{ {WEBHOOK_FIELDS} secret }} }}"""
DELIVERIES = f"""query($id: ID!) {{ webhookDeliveries(webhookId: $id) {{ count totalCount records {{ {DELIVERY_FIELDS} }} }} }}"""


@dataclass
class Received:
    at: float
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers each POST with the next scripted status (the last one once the script runs out)."""

    url: str
    script: list[int] = field(default_factory=lambda: [200])
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, statuses: list[int]) -> None:
        with self.lock:
            self.script = list(statuses)

    def next_status(self) -> int:
        with self.lock:
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    def record(self, item: Received) -> None:
        with self.lock:
            self.requests.append(item)

    def received(self) -> list[Received]:
        with self.lock:
            return list(self.requests)

    def wait_for_requests(self, count: int, *, timeout: float = 60, worker: Process | None = None) -> list[Received]:
        return wait_for(lambda: self.received() if len(self.received()) >= count else None, timeout=timeout,
                        what=f"{count} requests at the receiver", worker=worker)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            receiver.record(Received(time.monotonic(), self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            status = receiver.next_status()
            if status == HANG:
                time.sleep(HANG_SECONDS)  # past the sender's timeout; then the connection just closes
                return
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "/elsewhere")
            reply = b"receiver says no " * 100 if status >= 400 else b"ok"
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *_args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    holder: list[Receiver] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _handler(holder[0])(*a))
    holder.append(Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hooks/engineshed"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def hooks_gateway(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway that may register loopback URLs (the receiver's), with a small cap per organization."""
    env = {**stack.env, **LOOPBACK_ALLOWED, "ENGINESHED_WEBHOOK_MAX_PER_ORG": str(MAX_PER_ORG)}
    gw = start_gateway(env, tmp_path_factory.mktemp("hooks-logs"), name="hooks-gateway")
    try:
        yield gw
    finally:
        gw.process.stop()


@pytest.fixture
def hooks_org(stack: Stack, hooks_gateway: Gateway) -> Iterator[Org]:
    o = make_org(stack, hooks_gateway, "hooks")
    yield o
    o.close()


@pytest.fixture
def hooks_other_org(stack: Stack, hooks_gateway: Gateway) -> Iterator[Org]:
    o = make_org(stack, hooks_gateway, "hooks-other")
    yield o
    o.close()


@pytest.fixture
def sender(start_worker: Callable[..., Process]) -> Callable[..., Process]:
    """A worker that may send to loopback; extra env overrides."""

    def start(**extra: str) -> Process:
        return start_worker(**{**LOOPBACK_ALLOWED, **extra})

    return start


@pytest.fixture(autouse=True)
def nothing_left_to_send(stack: Stack) -> Iterator[None]:
    """What a test leaves waiting must not reach a later test's workers: tasks and deliveries end with the test."""
    yield
    stack.db.execute(
        """UPDATE tasks SET status = 'cancelled', lease_owner = NULL, lease_expires_at = NULL, completed_at = now()
        WHERE status IN ('queued', 'pending', 'running')"""
    )
    stack.db.execute("UPDATE webhook_deliveries SET status = 'failed', last_error = 'test ended' WHERE status = 'pending'")


def create_webhook(org: Org, url: str, events: list[str], description: str | None = None) -> dict[str, Any]:
    return org.client.query(CREATE, url=url, events=events, d=description).ok()["createWebhook"]


def deliveries(org: Org, webhook_id: str) -> list[dict[str, Any]]:
    return org.client.query(DELIVERIES, id=webhook_id).ok()["webhookDeliveries"]["records"]


def webhook(org: Org, webhook_id: str) -> dict[str, Any]:
    return org.client.query(f"query($id: ID!) {{ webhook(id: $id) {{ {WEBHOOK_FIELDS} }} }}", id=webhook_id).ok()["webhook"]


def verify(secret: str, received: Received, *, tolerance: float = 300) -> bool:
    """What a receiver does: recompute the signature over timestamp + "." + body, compare in constant time, and
    refuse old timestamps."""
    timestamp = received.headers["x-engineshed-timestamp"]
    expected = "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + received.body, hashlib.sha256).hexdigest()
    fresh = abs(time.time() - int(timestamp)) <= tolerance
    return fresh and hmac.compare_digest(expected, received.headers["x-engineshed-signature"])

