"""Shared pieces of the reliability tests: a private embedded stack for the tests that stop PostgreSQL or S3
(the session stack is never stopped), direct looks at the database and the bucket, and small builders."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from PIL import Image

from gateway.devstack import embedded_stack
from tests.conftest import (
    ROOT,
    TEST_ENGINES,
    TEST_UPLOAD_LIMIT,
    Gateway,
    Org,
    Process,
    Stack,
    make_org,
    start_gateway,
)
from tests.graphql_client import GraphQLClient
from tests.support.db import Database
from tests.support.waits import wait_for

SLEEPER = "test-sleeper"
GALLERY = "engineshed-gallery"
# What a body sent to a client must never carry: a stack trace, a source path, an unmasked internal error.
TRACE = r"Traceback|File \"|/site-packages/|\.py\", line|/work/"
LEAK = re.compile(TRACE + "|internal_error")


# ---------------------------------------------------------------------------------------- builders


def png(index: int = 0, size: int = 16) -> bytes:
    """A small PNG whose pixels differ with ``index`` (distinct bytes, so no cache dedupes them)."""
    image = Image.new("RGB", (size, size), ((index * 37) % 256, (index * 91) % 256, (index * 13 + 60) % 256))
    image.putpixel((index % size, (index // size) % size), (255 - index % 256, 0, 0))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def library_with_images(org: Org, identifiers: int = 1, per_entity: int = 5, name: str = "faces") -> str:
    library_id = org.create_library(name)
    entity_id = None
    for i in range(identifiers):
        if i % per_entity == 0:
            entity_id = org.create_entity(library_id, f"person {i // per_entity}")
        org.add_identifier(entity_id, png(i))
    return library_id


def create_model(client: GraphQLClient, library_id: str, engine_id: str = SLEEPER) -> str:
    reply = client.query(
        "mutation($e: ID!, $l: ID!) { createLibraryEngineModel(input: {engineId: $e, libraryId: $l}) { id } }",
        e=engine_id, l=library_id,
    )
    return reply.ok()["createLibraryEngineModel"]["id"]


def create_train_job(client: GraphQLClient, library_id: str, model_id: str, engine_id: str = SLEEPER, **config: Any) -> tuple[str, str]:
    """createJob for one library-train task; returns (job id, task id)."""
    payload: dict[str, Any] = {"mode": "library-train", "libraryId": library_id, "libraryEngineModelId": model_id}
    if config:
        payload["config"] = config
    reply = client.query(
        "mutation($t: [CreateTask!]) { createJob(input: {tasks: $t}) { id tasks { records { id } } } }",
        t=[{"engineId": engine_id, "payload": payload}],
    )
    job = reply.ok()["createJob"]
    return job["id"], job["tasks"]["records"][0]["id"]


def train(client: GraphQLClient, library_id: str, engine_id: str = SLEEPER, **config: Any) -> tuple[str, str, str]:
    """A new model and its train job: (job id, task id, model id)."""
    model_id = create_model(client, library_id, engine_id)
    job_id, task_id = create_train_job(client, library_id, model_id, engine_id, **config)
    return job_id, task_id, model_id


# ------------------------------------------------------------------------------ direct looks


def task_row(db: Database, task_id: str) -> Any:
    return db.fetch("SELECT * FROM tasks WHERE id = $1", uuid.UUID(task_id))[0]


def model_row(db: Database, model_id: str) -> Any:
    return db.fetch("SELECT * FROM library_engine_models WHERE id = $1", uuid.UUID(model_id))[0]


def job_status(db: Database, job_id: str) -> str:
    return db.fetchval("SELECT status FROM jobs WHERE id = $1", uuid.UUID(job_id))


def pending_deletions(db: Database, prefix: str) -> set[str]:
    rows = db.fetch("SELECT storage_key FROM blob_deletions WHERE storage_key LIKE $1", prefix + "%")
    return {r["storage_key"] for r in rows}


class HeldLock:
    """A transaction of the test's own that holds a lock until released."""

    def __init__(self, db: Any, sql: str, *args: Any) -> None:
        self.db = db

        async def take() -> Any:
            conn = await db.pool.acquire()
            tr = conn.transaction()
            await tr.start()
            await conn.execute(sql, *args)
            return conn, tr, await conn.fetchval("SELECT pg_backend_pid()")

        self.conn, self.tr, self.pid = db.run(take())

    def waiters(self, table: str) -> int:
        """Other sessions blocked behind a lock while running a statement on ``table``."""
        return self.db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE $1 AND pid <> $2",
            f"%{table}%", self.pid,
        )

    def release(self) -> None:
        if self.tr is None:
            return

        async def give_back() -> None:
            try:
                await self.tr.rollback()
            finally:
                await self.db.pool.release(self.conn)

        self.db.run(give_back())
        self.tr = None


def cut_connections(private: Any, application_name: str) -> int:
    """End every connection the named processes hold, as the server side would; returns how many."""
    return private.db.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", application_name
    )


class Bucket:
    """The bucket read directly over S3 (not through the gateway)."""

    def __init__(self, stack: Stack) -> None:
        s3 = stack.s3
        self.name = s3.bucket
        self._client = botocore.session.get_session().create_client(
            "s3", endpoint_url=s3.endpoint_url, aws_access_key_id=s3.access_key, aws_secret_access_key=s3.secret_key,
            region_name="us-east-1",
        )

    def keys(self, prefix: str) -> set[str]:
        found: set[str] = set()
        for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix):
            found.update(obj["Key"] for obj in page.get("Contents", []))
        return found

    def exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.name, Key=key)
            return True
        except self._client.exceptions.ClientError:
            return False

    def close(self) -> None:
        self._client.close()


@pytest.fixture(scope="session")
def session_bucket(stack: Stack) -> Iterator[Bucket]:
    b = Bucket(stack)
    yield b
    b.close()


def assert_clean(body: Any, *, internal_error_ok: bool = False) -> None:
    """No stack trace or source path in a reply; no masked internal_error either unless allowed."""
    text = json.dumps(body) if not isinstance(body, str) else body
    pattern = re.compile(TRACE) if internal_error_ok else LEAK
    assert not pattern.search(text), f"a reply leaks internals: {text[:600]}"


@pytest.fixture(autouse=True)
def quiet_queue_after(request: pytest.FixtureRequest) -> Iterator[None]:
    """Work a test leaves queued or running on the session stack must not reach later tests' workers."""
    yield
    if "stack" in request.fixturenames:
        stack: Stack = request.getfixturevalue("stack")
        stack.db.execute(
            """UPDATE tasks SET status = 'cancelled', lease_owner = NULL, lease_expires_at = NULL, completed_at = now()
            WHERE status IN ('queued', 'pending', 'running')"""
        )


# ------------------------------------------------------------------ a private stack to break


def stack_env(pg: Any, s3: Any, **extra: str) -> dict[str, str]:
    import os

    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ENGINESHED_", "AWS_", "S3_")) and key not in ("DATABASE_URL", "PORT")
    }
    env.update(
        DATABASE_URL=pg.url, S3_ENDPOINT_URL=s3.endpoint_url, S3_BUCKET=s3.bucket,
        AWS_ACCESS_KEY_ID=s3.access_key, AWS_SECRET_ACCESS_KEY=s3.secret_key,
        ENGINESHED_EXTRA_ENGINES=TEST_ENGINES, ENGINESHED_MAX_UPLOAD_BYTES=str(TEST_UPLOAD_LIMIT),
        ENGINESHED_LEASE_SECONDS="6", ENGINESHED_POLL_SECONDS="1", ENGINESHED_RETRY_BACKOFF_SECONDS="0.5",
        ENGINESHED_DECODE_PROCESSES="1", ENGINESHED_LOG_LEVEL="INFO", PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@dataclass
class PrivateStack:
    stack: Stack
    gateway: Gateway
    log_dir: Path
    bucket: Bucket

    @property
    def db(self) -> Database:
        return self.stack.db

    def org(self, prefix: str = "priv") -> Org:
        return make_org(self.stack, self.gateway, prefix)


@pytest.fixture(scope="package")
def private_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateStack]:
    """An embedded PostgreSQL + S3 of its own, with a gateway, for the tests that stop or restart them."""
    data_dir = tmp_path_factory.mktemp("private-stack")
    log_dir = tmp_path_factory.mktemp("private-logs")
    with embedded_stack(data_dir) as (pg, s3):
        env = stack_env(pg, s3, ENGINESHED_MAX_ATTEMPTS="3")
        subprocess.run([sys.executable, "-m", "gateway.cli", "migrate"], env=env, check=True, cwd=ROOT, capture_output=True)
        db = Database(pg.url)
        stack = Stack(env=env, pg=pg, s3=s3, db=db)
        gateway = start_gateway(env, log_dir, "private-gateway")
        bucket = Bucket(stack)
        try:
            yield PrivateStack(stack=stack, gateway=gateway, log_dir=log_dir, bucket=bucket)
        finally:
            bucket.close()
            gateway.process.stop()
            db.close()


@pytest.fixture
def private(private_stack: PrivateStack) -> Iterator[PrivateStack]:
    """The private stack, with both services brought back up after the test whatever it did."""
    yield private_stack
    if not private_stack.stack.s3.is_running:
        private_stack.stack.s3.start()
    if not private_stack.stack.pg.is_running:
        private_stack.stack.pg.start()
    # Leave no queued work behind for the next test's workers.
    wait_for(lambda: _try(lambda: private_stack.db.execute(
        "UPDATE tasks SET status = 'cancelled', lease_owner = NULL, completed_at = now() WHERE status IN ('queued', 'pending', 'running')"
    )), timeout=30, what="the private database to answer")


def _try(fn: Callable[[], Any]) -> Any:
    try:
        return fn() or True
    except Exception:  # noqa: BLE001 - polled until it works
        return None


@pytest.fixture
def private_workers(private_stack: PrivateStack, tmp_path: Path) -> Iterator[Callable[..., Process]]:
    started: list[Process] = []

    def start(name: str | None = None, **extra_env: str) -> Process:
        env = dict(private_stack.stack.env)
        env.update(extra_env)
        name = name or f"pworker-{len(started)}"
        process = Process([sys.executable, "-m", "gateway.cli", "worker", "--id", name], env, tmp_path / f"{name}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.monotonic()
    return fn(), time.monotonic() - t0
