"""PostgreSQL connections: the pool, transactions, the LISTEN connection and per-request SQL counting."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

# Incremented for every statement run while a counter is installed (one per GraphQL request when
# settings.expose_sql_count is on): tests and benchmarks check that a page costs a constant number.
sql_counter: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("sql_counter", default=None)


# The database unreachable, restarting or gone from under a connection: worth retrying, never a bug in
# the request. OSError covers refused and reset connections and timeouts (TimeoutError is one). A
# connection the server ended can fail its next statement with InternalClientError (tests/storage/
# test_connection_lost.py); the connection is closed by then and the pool replaces it.
CONNECTION_LOST: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)


def connection_name(role: str) -> str:
    """How a process's connections are named in pg_stat_activity: engineshed-gateway, engineshed-worker."""
    return f"engineshed-{role}"


def _count_query(_record: Any) -> None:
    counter = sql_counter.get()
    if counter is not None:
        counter[0] += 1


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb in and out as Python objects; json.dumps keeps non-ASCII text as is.
    await conn.set_type_codec("jsonb", encoder=_dump_json, decoder=json.loads, schema="pg_catalog", format="text")
    await conn.set_type_codec("json", encoder=_dump_json, decoder=json.loads, schema="pg_catalog", format="text")
    conn.add_query_logger(_count_query)


def _dump_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@asynccontextmanager
async def connect_pool(
    dsn: str, *, min_size: int = 2, max_size: int = 20, application_name: str = "engineshed"
) -> AsyncIterator[asyncpg.Pool]:
    """A pool for the process, closed when the block ends.

    ``application_name`` shows in ``pg_stat_activity``, so an operator can tell gateways from workers.
    """
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        # asyncpg's default reset runs one more statement on every release (advisory unlocks, CLOSE ALL,
        # UNLISTEN *, RESET ALL): a round trip per checkout, a tenth of an upload's gateway CPU. Pooled
        # connections hold none of that state: no SET, no session advisory locks (claims take
        # transaction-level ones), cursors only inside transactions, LISTEN on its own connection
        # (``listen``). An open transaction is still rolled back, as asyncpg always does first.
        reset=_nothing_to_reset,
        command_timeout=60,
        max_inactive_connection_lifetime=300,
        server_settings={"application_name": application_name},
    )
    try:
        yield pool
    finally:
        await asyncio.wait_for(pool.close(), timeout=10)


async def _nothing_to_reset(_conn: asyncpg.Connection) -> None:
    return None


@asynccontextmanager
async def listen(
    dsn: str,
    channels: list[str],
    callback: Callable[[str, str], Awaitable[None] | None],
    *,
    application_name: str = "engineshed",
) -> AsyncIterator[Callable[[], bool]]:
    """LISTEN on ``channels`` on a dedicated connection (pooled ones run ``UNLISTEN *`` on release).

    Reconnects in the background when the connection drops (a PostgreSQL restart): callers keep polling
    as their fallback, so a missed notification only costs latency. Yields a function that says whether
    the connection is currently up.
    """
    state: dict[str, Any] = {"conn": None}
    stop = asyncio.Event()

    def on_notify(_conn: Any, _pid: int, channel: str, payload: str) -> None:
        result = callback(channel, payload)
        if asyncio.iscoroutine(result):
            asyncio.ensure_future(result)

    async def keep_connected() -> None:
        delay = 0.2
        while not stop.is_set():
            conn = state["conn"]
            if conn is None or conn.is_closed():
                try:
                    conn = await asyncpg.connect(dsn, timeout=5, server_settings={"application_name": application_name})
                    for channel in channels:
                        await conn.add_listener(channel, on_notify)
                    state["conn"] = conn
                    delay = 0.2
                except (OSError, asyncpg.PostgresError, asyncio.TimeoutError) as exc:
                    log.debug("LISTEN connection failed: %s", exc)
                    delay = min(delay * 2, 5.0)
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay if state["conn"] is None else 1.0)
            except asyncio.TimeoutError:
                pass

    task = asyncio.create_task(keep_connected())
    try:
        yield lambda: state["conn"] is not None and not state["conn"].is_closed()
    finally:
        stop.set()
        await task
        if state["conn"] is not None and not state["conn"].is_closed():
            await state["conn"].close(timeout=5)
