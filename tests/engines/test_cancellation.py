"""Cancelling a training task stops it promptly and leaves the decode pool free."""

from __future__ import annotations

import asyncio
import time

import pytest

from engines.classifier import ClassifierEngine
from engines.decode import decode_batch
from engines.gallery import GalleryEngine
from tests.engines.memory_context import MemoryContext


async def _cancel_after(task: asyncio.Task, delay: float) -> float:
    await asyncio.sleep(delay)
    started = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return time.perf_counter() - started


async def test_cancelling_a_training_with_slow_downloads_raises_cancelled_within_two_seconds(decode_pool, digit_library):
    engine = GalleryEngine()
    ctx = MemoryContext(
        digit_library.train[:100], config=engine.info.validate_config({}), decode_pool=decode_pool, fetch_delay=5.0
    )
    task = asyncio.create_task(engine.train(ctx))
    assert await _cancel_after(task, 0.3) < 2.0


async def test_cancelling_mid_decode_leaves_no_work_queued_in_the_pool(decode_pool, digit_library):
    engine = ClassifierEngine()
    entries = digit_library.train * 3
    ctx = MemoryContext(entries, config=engine.info.validate_config({"pageSize": 200}), decode_pool=decode_pool)
    task = asyncio.create_task(engine.train(ctx))
    while ctx.fetched < 300:
        await asyncio.sleep(0.005)
    assert await _cancel_after(task, 0.0) < 2.0
    started = time.perf_counter()
    await asyncio.get_running_loop().run_in_executor(decode_pool, decode_batch, [], 32, 1, 0, 0.0)
    assert time.perf_counter() - started < 1.0
