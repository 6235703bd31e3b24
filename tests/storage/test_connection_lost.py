"""Which database errors count as "the database is away" (retry, answer service_unavailable) and which do
not, checked against real failures of the embedded PostgreSQL rather than constructed exceptions."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import asyncpg
import pytest

from gateway.devstack import find_free_port
from storage.db import CONNECTION_LOST
from tests.conftest import Stack


async def _error_of(coro: Awaitable[Any]) -> BaseException:
    try:
        await coro
    except Exception as exc:  # noqa: BLE001 - the test inspects whatever was raised
        return exc
    pytest.fail("the statement was expected to fail")


def test_a_connection_the_server_terminates_counts_as_lost(stack: Stack) -> None:
    async def go() -> tuple[BaseException, bool]:
        conn = await asyncpg.connect(stack.db.dsn)
        try:
            pid = conn.get_server_pid()
            async with stack.db.pool.acquire() as admin:
                assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
            return await _error_of(conn.fetchval("SELECT 1")), conn.is_closed()
        finally:
            conn.terminate()

    error, closed = stack.db.run(go())
    assert isinstance(error, CONNECTION_LOST), repr(error)
    assert closed


def test_a_database_nobody_listens_on_counts_as_lost(stack: Stack) -> None:
    port = find_free_port()
    error = stack.db.run(_error_of(asyncpg.connect(host="127.0.0.1", port=port, user="x", database="x", timeout=5)))
    assert isinstance(error, CONNECTION_LOST), repr(error)


@pytest.mark.parametrize(
    "sql",
    [
        "SELEC 1",  # a syntax error: our bug, not an outage
        "SELECT 1/0",
        "SELECT pg_sleep(2)",  # cancelled by statement_timeout below
        "SELECT 'x'::uuid",
    ],
)
def test_errors_in_a_statement_are_not_mistaken_for_an_outage(stack: Stack, sql: str) -> None:
    async def go() -> BaseException:
        async with stack.db.pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL statement_timeout = 100")
            return await _error_of(conn.fetchval(sql))

    error = stack.db.run(go())
    assert isinstance(error, asyncpg.PostgresError), repr(error)
    assert not isinstance(error, CONNECTION_LOST), repr(error)
