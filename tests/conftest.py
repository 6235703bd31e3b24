"""The real stack for tests: embedded PostgreSQL and SeaweedFS, the gateway over HTTP on loopback, and
worker processes started on demand. Each test gets its own organization, which isolates its data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from gateway.devstack import embedded_stack, find_free_port
from gateway.services.access import tokens
from sampledata import digits
from tests.graphql_client import GraphQLClient
from tests.support.db import Database

ROOT = Path(__file__).resolve().parent.parent
TEST_ENGINES = "tests.support.engines:SleeperEngine"
TEST_UPLOAD_LIMIT = 4 * 1024 * 1024  # small, so the 413 path is cheap to test


@dataclass
class Stack:
    env: dict[str, str]
    pg: object
    s3: object
    db: Database


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("stack")
    with embedded_stack(data_dir) as (pg, s3):
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("ENGINESHED_", "AWS_", "S3_", "OTEL_")) and key not in ("DATABASE_URL", "PORT")
        }
        env.update(
            DATABASE_URL=pg.url,
            S3_ENDPOINT_URL=s3.endpoint_url,
            S3_BUCKET=s3.bucket,
            AWS_ACCESS_KEY_ID=s3.access_key,
            AWS_SECRET_ACCESS_KEY=s3.secret_key,
            ENGINESHED_EXTRA_ENGINES=TEST_ENGINES,
            ENGINESHED_EXPOSE_SQL_COUNT="1",
            ENGINESHED_MAX_UPLOAD_BYTES=str(TEST_UPLOAD_LIMIT),
            ENGINESHED_LEASE_SECONDS="6",
            ENGINESHED_POLL_SECONDS="1",
            ENGINESHED_RETRY_BACKOFF_SECONDS="0.5",
            ENGINESHED_DECODE_PROCESSES="2",
            ENGINESHED_LOG_LEVEL="INFO",
            # Metric files of the test processes stay in the test's own folder, not the clone's .engineshed.
            PROMETHEUS_MULTIPROC_DIR=str(data_dir / "metrics"),
            PYTHONPATH=str(ROOT),
            PYTHONUNBUFFERED="1",
        )
        # Migrations run here once, so gateway and worker processes start on a ready schema.
        subprocess.run([sys.executable, "-m", "gateway.cli", "migrate"], env=env, check=True, cwd=ROOT, capture_output=True)
        db = Database(pg.url)
        try:
            yield Stack(env=env, pg=pg, s3=s3, db=db)
        finally:
            db.close()


class Process:
    """A gateway or worker subprocess whose output goes to a log file kept for failure reports."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path, cwd: Path = ROOT) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as when a machine dies."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 20) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class Gateway:
    url: str
    process: Process
    env: dict[str, str]


def start_gateway(env: dict[str, str], log_dir: Path, name: str = "gateway", workers: int = 1) -> Gateway:
    """`engineshed serve`; one process unless asked (tests share a small machine, and some watch the gateway's pid)."""
    port = find_free_port()
    args = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port), "--workers", str(workers)]
    process = Process(args, env, log_dir / f"{name}.log")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not process.alive():
            process.stop()  # closes its log
            raise RuntimeError("the gateway exited at start:\n" + process.output()[-4000:])
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return Gateway(url=url, process=process, env=env)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.stop()
    raise RuntimeError("the gateway did not become ready:\n" + process.output()[-4000:])


@pytest.fixture(scope="session")
def gateway(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(stack.env, tmp_path_factory.mktemp("logs"))
    try:
        yield gw
    finally:
        gw.process.stop()


@dataclass
class Org:
    """One organization with an admin token, and its clients."""

    id: uuid.UUID
    name: str
    token: str
    client: GraphQLClient
    stack: Stack
    gateway: Gateway
    _clients: list[GraphQLClient] = field(default_factory=list)

    def token_for(self, scope: str, engine_id: str | None = None) -> str:
        token, _ = self.stack.db.run(tokens.create_token(self.stack.db.pool, org_name=self.name, scope=scope, engine_id=engine_id))
        return token

    def client_for(self, scope: str, engine_id: str | None = None) -> GraphQLClient:
        client = GraphQLClient(self.gateway.url, self.token_for(scope, engine_id))
        self._clients.append(client)
        return client

    def close(self) -> None:
        """Close the admin client and every client made with client_for."""
        for client in (self.client, *self._clients):
            client.close()

    # Small builders for the common setup steps, through the public API.
    def create_library(self, name: str = "faces", type_id: str = "people") -> str:
        data = self.client.query(
            "mutation($n: String!, $t: ID!) { createLibrary(input: {name: $n, libraryTypeId: $t}) { id } }", n=name, t=type_id
        ).ok()
        return data["createLibrary"]["id"]

    def create_entity(self, library_id: str, name: str, jsondata: object = None) -> str:
        data = self.client.query(
            "mutation($l: ID!, $n: String!, $j: JSONData) { createEntity(input: {libraryId: $l, name: $n, jsondata: $j}) { id } }",
            l=library_id, n=name, j=jsondata,
        ).ok()
        return data["createEntity"]["id"]

    def add_identifier(self, entity_id: str, data: bytes, content_type: str = "image/png", type_id: str = "face") -> str:
        reply = self.client.upload_form(
            f'mutation {{ createEntityIdentifier(input: {{entityId: "{entity_id}", identifierTypeId: "{type_id}"}}) {{ id }} }}',
            data, content_type, filename="x.png",
        )
        return reply.ok()["createEntityIdentifier"]["id"]


def make_org(stack: Stack, gateway: Gateway, prefix: str = "org") -> Org:
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    token, org_id = stack.db.run(tokens.create_token(stack.db.pool, org_name=name, scope="admin"))
    return Org(id=org_id, name=name, token=token, client=GraphQLClient(gateway.url, token), stack=stack, gateway=gateway)


@pytest.fixture
def org(stack: Stack, gateway: Gateway) -> Iterator[Org]:
    o = make_org(stack, gateway)
    yield o
    o.close()


@pytest.fixture
def other_org(stack: Stack, gateway: Gateway) -> Iterator[Org]:
    o = make_org(stack, gateway, "other")
    yield o
    o.close()


@pytest.fixture
def start_worker(stack: Stack, tmp_path: Path) -> Iterator[Callable[..., Process]]:
    """Start worker processes (stopped at the end of the test). Extra env overrides settings per worker."""
    started: list[Process] = []

    def start(name: str | None = None, **extra_env: str) -> Process:
        env = dict(stack.env)
        env.update(extra_env)
        name = name or f"worker-{len(started)}"
        process = Process([sys.executable, "-m", "gateway.cli", "worker", "--id", name], env, tmp_path / f"{name}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture(scope="session")
def digit_library() -> digits.Digits:
    """scikit-learn's handwritten digits: 1,437 training digits in 10 entities and 360 held-out ones."""
    return digits.load()
