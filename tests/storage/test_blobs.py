"""BlobStore reads against the real SeaweedFS, and against a faulty endpoint for the retry policy."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gateway.devstack import find_free_port
from storage.blobs import BlobError, BlobStore, BlobTooLarge, connect_blobs

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def blobs(stack) -> AsyncIterator[BlobStore]:
    async with connect_blobs(
        endpoint_url=stack.env["S3_ENDPOINT_URL"], bucket=stack.env["S3_BUCKET"], region="us-east-1",
        access_key=stack.env["AWS_ACCESS_KEY_ID"], secret_key=stack.env["AWS_SECRET_ACCESS_KEY"],
    ) as store:
        yield store


def _store_at(endpoint: str):
    return connect_blobs(endpoint_url=endpoint, bucket="b", region="us-east-1", access_key="k", secret_key="s")


async def test_a_read_returns_the_stored_bytes_exactly(blobs: BlobStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)  # several reads' worth, not a round size
    await blobs.put_bytes("tests/blobs/exact", data, "application/octet-stream")
    assert await blobs.get_bytes("tests/blobs/exact") == data
    assert await blobs.get_bytes("tests/blobs/exact", max_bytes=len(data)) == data


async def test_gzip_content_is_not_decompressed_on_the_way(blobs: BlobStore) -> None:
    import gzip

    data = gzip.compress(b"x" * 10_000)
    await blobs.put_bytes("tests/blobs/data.gz", data, "application/gzip")
    assert await blobs.get_bytes("tests/blobs/data.gz") == data


async def test_an_object_over_the_limit_is_refused(blobs: BlobStore) -> None:
    await blobs.put_bytes("tests/blobs/big", b"y" * 5000, "application/octet-stream")
    with pytest.raises(BlobTooLarge):
        await blobs.get_bytes("tests/blobs/big", max_bytes=4999)


async def test_a_missing_key_is_a_blob_error_that_names_it(blobs: BlobStore) -> None:
    with pytest.raises(BlobError, match="tests/blobs/never-written.*404"):
        await blobs.get_bytes("tests/blobs/never-written")


async def test_an_unreachable_endpoint_is_a_blob_error_after_the_retries() -> None:
    async with _store_at(f"http://127.0.0.1:{find_free_port()}") as store:
        with pytest.raises(BlobError, match="S3 read of k1 failed"):
            await store.get_bytes("k1")


class _Flaky(BaseHTTPRequestHandler):
    """Answers 503 to the first ``failures`` GETs, then the body; counts what it saw."""

    failures = 0
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).seen.append(self.path)
        if len(type(self).seen) <= type(self).failures:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"finally"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[tuple[str, type[_Flaky]]]:
    handler = type("Handler", (_Flaky,), {"seen": [], "failures": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


async def test_two_unavailable_answers_are_retried_and_the_third_read_succeeds(flaky) -> None:
    endpoint, handler = flaky
    handler.failures = 2
    async with _store_at(endpoint) as store:
        assert await store.get_bytes("some/key") == b"finally"
    assert len(handler.seen) == 3
    assert all(path.startswith("/b/some/key?") and "X-Amz-Signature=" in path for path in handler.seen)


async def test_an_endpoint_that_stays_unavailable_fails_after_three_attempts(flaky) -> None:
    endpoint, handler = flaky
    handler.failures = 10
    async with _store_at(endpoint) as store:
        with pytest.raises(BlobError, match="HTTP 503"):
            await asyncio.wait_for(store.get_bytes("some/key"), 30)
    assert len(handler.seen) == 3
