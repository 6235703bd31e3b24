"""The pipeline reads library pages ahead of use: errors still surface, and nothing is left open."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from engines.gallery import GalleryEngine
from engines.interface import IdentifierRef
from tests.engines.memory_context import MemoryContext


class PagingFails(MemoryContext):
    """The database goes away after the first page."""

    async def pages(self, page_size: int) -> AsyncIterator[list[IdentifierRef]]:
        first = True
        async for page in super().pages(page_size):
            if not first:
                raise ConnectionResetError("the database connection was lost")
            first = False
            yield page


class TracksPaging(MemoryContext):
    """Records whether its page generator was closed, and how far ahead of use it was read."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.closed = False
        self.pages_read = 0

    async def pages(self, page_size: int) -> AsyncIterator[list[IdentifierRef]]:
        try:
            async for page in super().pages(page_size):
                self.pages_read += 1
                yield page
        finally:
            self.closed = True


async def test_a_paging_error_after_the_first_page_fails_the_training_with_that_error(decode_pool, digit_library):
    engine = GalleryEngine()
    ctx = PagingFails(digit_library.train[:90], config=engine.info.validate_config({"pageSize": 30}), decode_pool=decode_pool)
    with pytest.raises(ConnectionResetError, match="connection was lost"):
        await asyncio.wait_for(engine.train(ctx), 60)


async def test_cancelling_closes_the_page_reader_and_reads_only_a_few_pages_ahead(decode_pool, digit_library):
    engine = GalleryEngine()
    ctx = TracksPaging(
        digit_library.train[:300], config=engine.info.validate_config({"pageSize": 10, "fetchConcurrency": 1}),
        decode_pool=decode_pool, fetch_delay=5.0,
    )
    task = asyncio.create_task(engine.train(ctx))
    await asyncio.sleep(0.5)
    # One fetch in flight and a fetch queue of 2 hold the producer; it may have read at most 2 pages more.
    assert 1 <= ctx.pages_read <= 4
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ctx.closed


async def test_a_library_read_ahead_is_embedded_whole(decode_pool, digit_library):
    engine = GalleryEngine()
    entries = digit_library.train[:95]
    ctx = TracksPaging(entries, config=engine.info.validate_config({"pageSize": 10}), decode_pool=decode_pool)
    artifact = await asyncio.wait_for(engine.train(ctx), 120)
    assert ctx.pages_read == 10 and ctx.closed
    assert artifact.jsondata["identifiers"] == 95
    assert artifact.jsondata["embeddings"] == {"cached": 0, "computed": 95}
