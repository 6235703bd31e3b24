"""Embedded PostgreSQL + SeaweedFS S3 (gateway.devstack): real processes, no mocks."""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest
from aiobotocore.session import get_session
from botocore.exceptions import ClientError, EndpointConnectionError

from gateway.devstack import (
    DevStackError,
    EmbeddedPostgres,
    EmbeddedS3,
    embedded_stack,
    find_free_port,
    s3_client_config,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedPostgres, EmbeddedS3]]:
    data_dir = tmp_path_factory.mktemp("devstack")
    t0 = time.monotonic()
    with embedded_stack(data_dir) as (pg, s3):
        print(
            f"devstack ready in {time.monotonic() - t0:.2f}s "
            f"(postgres {pg.last_start_seconds:.2f}s, s3 {s3.last_start_seconds:.2f}s)"
        )
        yield pg, s3
    assert not pg.is_running
    assert not s3.is_running


@pytest.fixture
def pg(stack: tuple[EmbeddedPostgres, EmbeddedS3]) -> EmbeddedPostgres:
    return stack[0]


@pytest.fixture
def s3(stack: tuple[EmbeddedPostgres, EmbeddedS3]) -> EmbeddedS3:
    return stack[1]


def _client(s3: EmbeddedS3, *, secret: str | None = None, **config: object):
    return get_session().create_client(
        "s3",
        endpoint_url=s3.endpoint_url,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=secret if secret is not None else s3.secret_key,
        region_name=s3.region,
        config=s3_client_config(**config),
    )


@pytest.fixture
async def client(s3: EmbeddedS3) -> AsyncIterator[object]:
    async with _client(s3) as c:
        yield c


def test_find_free_port_is_bindable() -> None:
    import socket

    port = find_free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


async def test_postgres_version(pg: EmbeddedPostgres) -> None:
    conn = await asyncpg.connect(pg.url)
    try:
        version = await conn.fetchval("SELECT version()")
    finally:
        await conn.close()
    assert version.startswith("PostgreSQL 16")


async def test_create_database(pg: EmbeddedPostgres) -> None:
    dsn = pg.create_database("engineshed-test")
    assert pg.create_database("engineshed-test") == dsn  # idempotent
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT current_database()") == "engineshed-test"
    finally:
        await conn.close()


async def test_s3_put_get_delete(s3: EmbeddedS3, client) -> None:
    await client.put_object(Bucket=s3.bucket, Key="dir/hello.txt", Body=b"hello world")
    obj = await client.get_object(Bucket=s3.bucket, Key="dir/hello.txt")
    async with obj["Body"] as body:
        assert await body.read() == b"hello world"
    await client.delete_object(Bucket=s3.bucket, Key="dir/hello.txt")
    with pytest.raises(ClientError) as info:
        await client.get_object(Bucket=s3.bucket, Key="dir/hello.txt")
    assert info.value.response["Error"]["Code"] in ("NoSuchKey", "404")


async def test_s3_wrong_secret_is_refused(s3: EmbeddedS3) -> None:
    async with _client(s3, secret="not-the-secret") as bad:
        with pytest.raises(ClientError) as info:
            await bad.put_object(Bucket=s3.bucket, Key="intruder", Body=b"x")
    assert info.value.response["Error"]["Code"] in ("AccessDenied", "SignatureDoesNotMatch", "403")


async def test_s3_unsigned_request_is_refused(s3: EmbeddedS3) -> None:
    async with httpx.AsyncClient() as http:
        resp = await http.get(f"{s3.endpoint_url}/{s3.bucket}")
    assert resp.status_code == 403


async def test_s3_presigned_get(s3: EmbeddedS3, client) -> None:
    payload = bytes(range(256)) * 64
    await client.put_object(Bucket=s3.bucket, Key="presigned.bin", Body=payload)
    url = await client.generate_presigned_url(
        "get_object", Params={"Bucket": s3.bucket, "Key": "presigned.bin"}, ExpiresIn=60
    )
    async with httpx.AsyncClient() as http:
        resp = await http.get(url)
    assert resp.status_code == 200
    assert resp.content == payload


def test_s3_listens_on_loopback_only(s3: EmbeddedS3) -> None:
    assert s3.pid is not None
    proc = psutil.Process(s3.pid)
    conns = proc.net_connections(kind="inet") if hasattr(proc, "net_connections") else proc.connections("inet")
    listening = [c for c in conns if c.status == psutil.CONN_LISTEN]
    assert listening
    assert {c.laddr.ip for c in listening} == {"127.0.0.1"}
    # Every TCP listener is one we chose (no stray fixed-port servers).
    assert {c.laddr.port for c in listening} == set(s3.ports.values())


async def test_s3_stop_and_restart_same_endpoint(s3: EmbeddedS3) -> None:
    endpoint = s3.endpoint_url
    async with _client(s3) as c:
        await c.put_object(Bucket=s3.bucket, Key="durable.txt", Body=b"still here")

    s3.stop()
    assert not s3.is_running
    async with _client(s3, connect_timeout=1, read_timeout=2, retries={"max_attempts": 1}) as c:
        with pytest.raises(EndpointConnectionError):
            await c.get_object(Bucket=s3.bucket, Key="durable.txt")

    s3.restart()
    assert s3.endpoint_url == endpoint
    async with _client(s3) as c:
        obj = await c.get_object(Bucket=s3.bucket, Key="durable.txt")
        async with obj["Body"] as body:
            assert await body.read() == b"still here"


async def _count_rows(pg: EmbeddedPostgres) -> int:
    conn = await asyncpg.connect(pg.url)
    try:
        return await conn.fetchval("SELECT count(*) FROM devstack_rows")
    finally:
        await conn.close()


async def test_postgres_restart_keeps_rows(pg: EmbeddedPostgres) -> None:
    conn = await asyncpg.connect(pg.url)
    try:
        await conn.execute("CREATE TABLE devstack_rows (id int PRIMARY KEY, note text)")
        await conn.executemany("INSERT INTO devstack_rows VALUES ($1, $2)", [(i, f"row {i}") for i in range(50)])
    finally:
        await conn.close()

    url = pg.url
    pg.stop()
    assert not pg.is_running
    with pytest.raises((OSError, asyncpg.PostgresError)):
        await asyncpg.connect(url, timeout=2)
    pg.restart()
    assert pg.url == url
    assert await _count_rows(pg) == 50

    # A second handle on the same data dir adopts the running server.
    other = EmbeddedPostgres(pg.data_dir)
    other.start()
    assert other.pid == pg.pid


async def test_postgres_starts_after_crash_with_stale_pidfile(pg: EmbeddedPostgres) -> None:
    assert await _count_rows(pg) == 50
    old_pid = pg.pid
    assert old_pid is not None
    psutil.Process(old_pid).send_signal(signal.SIGKILL)
    psutil.wait_procs([psutil.Process(old_pid)], timeout=5)
    assert (Path(pg.data_dir) / "postmaster.pid").exists()  # left behind by the crash
    assert not pg.is_running

    pg.start()
    assert pg.pid not in (None, old_pid)
    assert await _count_rows(pg) == 50  # crash recovery replayed the WAL


def test_s3_start_failure_reports_log_tail(tmp_path: Path) -> None:
    fake = tmp_path / "fake-weed"
    fake.write_text("#!/bin/sh\necho 'fake weed: cannot start' >&2\nexit 3\n")
    fake.chmod(0o755)
    s3 = EmbeddedS3(tmp_path / "s3", weed_binary=fake, ready_timeout=10)
    with pytest.raises(DevStackError, match="cannot start"):
        s3.start()
    assert not s3.is_running
