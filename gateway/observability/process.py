"""A gateway or worker process under observation: tracing set up, inference batches and the database pool
measured while it runs, and its live gauges dropped when it stops."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

import asyncpg

from engines import runtime
from gateway.observability import metrics, multiproc, tracing
from gateway.settings import Settings

POOL_SECONDS = 5.0  # how often the pool gauges are refreshed (a scrape reads what was last written)


def _batch_ran(provider: str, batch: int, start_ns: int, end_ns: int) -> None:
    metrics.inference_batch(provider, (end_ns - start_ns) / 1e9)
    tracing.inference_ran(start_ns, end_ns, batch)


async def _watch_pool(role: str, pool: asyncpg.Pool) -> None:
    while True:
        size = pool.get_size()
        metrics.pool_state(role, size, size - pool.get_idle_size())
        await asyncio.sleep(POOL_SECONDS)


@contextlib.asynccontextmanager
async def observed(settings: Settings, role: str, pool: asyncpg.Pool) -> AsyncIterator[None]:
    """``role``: gateway or worker (the service name of its traces, the label of its pool gauges)."""
    tracing.configure(settings, role)
    runtime.observe_runs(_batch_ran)
    watch = asyncio.create_task(_watch_pool(role, pool))
    try:
        yield
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
        runtime.observe_runs(None)
        await asyncio.to_thread(tracing.shutdown)
        multiproc.mark_dead(os.getpid())
