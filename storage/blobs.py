"""S3 objects: streamed and multipart uploads, reads, presigned GET URLs, deletes.

One aiobotocore client per process, entered in the app lifespan (or the worker's main) and shared, with
one aiohttp session beside it for reads (see ``BlobStore.get_bytes``).

Two endpoints may name the same S3: the one this process talks to, and a public one that the links handed
to clients are made for (``S3_PUBLIC_ENDPOINT_URL``), when clients on other machines cannot reach the first.
A SigV4 signature covers the Host header, so a link is signed for the host it names, never rewritten after.
Where clients cannot reach S3 at all, a ``link_maker`` given by the caller makes the links instead (the
gateway's own signed links, which it serves with ``open_read``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import mmap
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import yarl
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError
from cachetools import LRUCache

from storage.sigv4 import GetUrlSigner

log = logging.getLogger(__name__)

PART_SIZE = 8 * 1024 * 1024  # S3's minimum part is 5 MiB; 8 MiB keeps memory per upload small
PRESIGN_CACHE_SIZE = 50_000
READ_URL_SECONDS = 900  # a read's own signed URL; it is used at once
READ_ATTEMPTS = 3
READ_RETRY_DELAY = 0.1  # seconds before the second attempt, ×4 before each later one
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
LinkMaker = Callable[[str, int], Awaitable[str]]  # (key, seconds valid) -> a URL that serves the object


class BlobError(RuntimeError):
    """S3 refused or could not be reached."""


class BlobTooLarge(BlobError):
    """A stream ran past the size it was allowed."""


class BlobMissing(BlobError):
    """S3 answered that the object does not exist (HTTP 404): it was deleted, S3 itself is fine."""


@dataclass(frozen=True, slots=True)
class StoredBlob:
    key: str
    size: int
    sha256: str
    content_type: str


class BlobStore:
    def __init__(
        self,
        client: Any,
        bucket: str,
        http: aiohttp.ClientSession,
        signer: GetUrlSigner | None = None,
        *,
        public_client: Any = None,
        public_signer: GetUrlSigner | None = None,
        link_maker: LinkMaker | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self._client = client
        self._on_error = on_error  # told the operation (head, get, put, delete) of each S3 failure: metrics
        self._link_maker = link_maker
        self._http = http
        self._signer = signer  # static credentials: sign GET URLs directly (storage/sigv4.py)
        # Links for clients (presign_get) are signed for the public endpoint when there is one: by
        # public_signer with static credentials, else by public_client, a botocore client that only signs.
        self._public_client = public_client
        self._public_signer = public_signer
        self.bucket = bucket
        # Signing costs more than the rest of a GraphQL page of identifiers together (measured by
        # `make bench`); keys never change content, so a link is reused while at least half its life remains.
        self._presigned: LRUCache[tuple[str, int], tuple[str, float]] = LRUCache(PRESIGN_CACHE_SIZE)

    def _failed(self, operation: str, message: str) -> BlobError:
        if self._on_error is not None:
            self._on_error(operation)
        return BlobError(message)

    async def ping(self) -> None:
        try:
            await self._client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError, OSError) as exc:
            raise self._failed("head", f"S3 bucket {self.bucket!r} is not reachable: {exc}") from exc

    async def ensure_bucket(self) -> None:
        try:
            await self._client.head_bucket(Bucket=self.bucket)
        except ClientError:
            await self._client.create_bucket(Bucket=self.bucket)

    async def put_stream(
        self, key: str, chunks: AsyncIterator[bytes], content_type: str, *, max_bytes: int | None = None
    ) -> StoredBlob:
        """Store a stream without holding it in memory: one PUT when small, a multipart upload otherwise.

        Raises BlobTooLarge (and leaves nothing behind) when the stream passes ``max_bytes``.
        """
        digest = hashlib.sha256()
        buffer = bytearray()
        size = 0
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            async for chunk in _pieces(chunks):
                if not chunk:
                    continue
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise BlobTooLarge(f"the upload is larger than {max_bytes} bytes")
                digest.update(chunk)
                buffer += chunk
                while len(buffer) >= PART_SIZE:
                    if upload_id is None:
                        created = await self._client.create_multipart_upload(
                            Bucket=self.bucket, Key=key, ContentType=content_type
                        )
                        upload_id = created["UploadId"]
                    part = bytes(buffer[:PART_SIZE])
                    del buffer[:PART_SIZE]
                    number = len(parts) + 1
                    reply = await self._client.upload_part(
                        Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=part
                    )
                    parts.append({"ETag": reply["ETag"], "PartNumber": number})
            if upload_id is None and self._signer is not None:
                await self._put_signed(key, bytes(buffer), content_type)
            elif upload_id is None:
                await self._client.put_object(Bucket=self.bucket, Key=key, Body=bytes(buffer), ContentType=content_type)
            else:
                if buffer or not parts:
                    number = len(parts) + 1
                    reply = await self._client.upload_part(
                        Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=bytes(buffer)
                    )
                    parts.append({"ETag": reply["ETag"], "PartNumber": number})
                await self._client.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
                upload_id = None
        except BaseException as exc:
            if upload_id is not None:
                try:
                    await self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                except Exception:  # the original error matters more; an abandoned upload expires
                    log.warning("could not abort multipart upload of %s", key)
            if isinstance(exc, (ClientError, BotoCoreError, OSError)):
                raise self._failed("put", f"S3 upload failed: {exc}") from exc
            raise
        return StoredBlob(key=key, size=size, sha256=digest.hexdigest(), content_type=content_type)

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> StoredBlob:
        async def one() -> AsyncIterator[bytes]:
            yield data

        return await self.put_stream(key, one(), content_type)

    async def get_bytes(self, key: str, *, max_bytes: int | None = None) -> bytes:
        """The object's bytes; BlobTooLarge past ``max_bytes``, BlobMissing when there is no such object,
        BlobError when S3 refuses or stays unreachable.

        Reads go through a presigned URL on a plain aiohttp session rather than ``get_object``: botocore's
        request pipeline costs about 1 ms of CPU per GET, signing a URL and a bare GET about 0.45 ms
        (measured against SeaweedFS), and training reads every identifier of a library once. Transient
        failures (connection errors, 429, 5xx) are retried like botocore's standard mode would.
        """
        try:
            url = yarl.URL(await self._sign_get(key, READ_URL_SECONDS), encoded=True)  # sent exactly as signed
        except (BotoCoreError, ClientError) as exc:
            raise self._failed("get", f"S3 read of {key} failed: {exc}") from exc
        delay = READ_RETRY_DELAY
        for attempt in range(1, READ_ATTEMPTS + 1):
            try:
                async with self._http.get(url) as reply:
                    if reply.status == 200:
                        return await _read_capped(reply, key, max_bytes)
                    if reply.status == 404:
                        raise BlobMissing(f"S3 read of {key} failed: HTTP 404 (no such key)")
                    detail = f"HTTP {reply.status}"
                    transient = reply.status in RETRY_STATUSES
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                detail, transient = str(exc) or type(exc).__name__, True
            if not transient or attempt == READ_ATTEMPTS:
                raise self._failed("get", f"S3 read of {key} failed: {detail}")
            await asyncio.sleep(delay)
            delay *= 4
        raise AssertionError("unreachable")

    async def _put_signed(self, key: str, body: bytes, content_type: str) -> None:
        """One PUT through our own signed URL on the aiohttp session: for the same reason as reads, botocore's
        pipeline costs more CPU than the request itself. Retried like a read (a PUT of the same bytes to the
        same key is idempotent)."""
        assert self._signer is not None
        url = yarl.URL(self._signer.put_url(key, READ_URL_SECONDS), encoded=True)
        delay = READ_RETRY_DELAY
        for attempt in range(1, READ_ATTEMPTS + 1):
            try:
                async with self._http.put(url, data=body, headers={"Content-Type": content_type}) as reply:
                    await reply.read()
                    if reply.status == 200:
                        return
                    detail, transient = f"HTTP {reply.status}", reply.status in RETRY_STATUSES
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                detail, transient = str(exc) or type(exc).__name__, True
            if not transient or attempt == READ_ATTEMPTS:
                raise self._failed("put", f"S3 upload of {key} failed: {detail}")
            await asyncio.sleep(delay)
            delay *= 4

    async def _sign_get(self, key: str, expires_in: int) -> str:
        if self._signer is not None:
            return self._signer.get_url(key, expires_in)
        return await self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
        )

    @asynccontextmanager
    async def open_read(
        self, key: str, *, head: bool = False, range_header: str | None = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """S3's reply to a GET (or HEAD) of the object, its body unread, for relaying it as it arrives: the
        status is S3's (200, 206 for ``range_header``, 404, 416, ...). BlobError when S3 cannot be reached."""
        method = "HEAD" if head else "GET"
        try:
            if self._signer is not None:
                url = self._signer.url(method, key, READ_URL_SECONDS)
            else:
                url = await self._client.generate_presigned_url(
                    "head_object" if head else "get_object", Params={"Bucket": self.bucket, "Key": key},
                    ExpiresIn=READ_URL_SECONDS, HttpMethod=method,
                )
            headers = {"Range": range_header} if range_header else {}
            reply = await self._http.request(method, yarl.URL(url, encoded=True), headers=headers)
        except (BotoCoreError, ClientError, aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise self._failed("head" if head else "get", f"S3 read of {key} failed: {exc}") from exc
        try:
            yield reply
        finally:
            reply.release()  # back to the pool when read to the end, closed when the relay stopped early

    async def exists(self, key: str) -> bool:
        try:
            await self._client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._failed("head", f"S3 HEAD of {key} failed: {exc}") from exc

    async def _sign_link(self, key: str, expires_in: int) -> str:
        if self._link_maker is not None:
            return await self._link_maker(key, expires_in)
        if self._public_signer is not None:
            return self._public_signer.get_url(key, expires_in)
        if self._public_client is not None:
            return await self._public_client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
            )
        return await self._sign_get(key, expires_in)

    async def presign_get(self, key: str, ttl_seconds: int) -> str:
        """A presigned GET URL for clients, on the public endpoint when one is configured, valid for at least
        ``ttl_seconds / 2`` from now. This process's own reads use ``get_bytes``, on the internal endpoint."""
        now = time.monotonic()
        cached = self._presigned.get((key, ttl_seconds))
        if cached is not None and cached[1] - now > ttl_seconds / 2:
            return cached[0]
        url = await self._sign_link(key, ttl_seconds)
        self._presigned[(key, ttl_seconds)] = (url, now + ttl_seconds)
        return url

    async def presign_put(self, key: str, ttl_seconds: int) -> str:
        """A presigned PUT URL for clients (direct uploads), on the public endpoint when one is configured; never
        cached, since each key is written once."""
        if self._public_signer is not None:
            return self._public_signer.put_url(key, ttl_seconds)
        if self._public_client is not None:
            return await self._public_client.generate_presigned_url(
                "put_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=ttl_seconds
            )
        if self._signer is not None:
            return self._signer.put_url(key, ttl_seconds)
        return await self._client.generate_presigned_url(
            "put_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=ttl_seconds
        )

    async def delete(self, keys: Iterable[str]) -> None:
        batch = [{"Key": k} for k in keys]
        for start in range(0, len(batch), 1000):
            try:
                await self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch[start : start + 1000], "Quiet": True}
                )
            except (ClientError, BotoCoreError, OSError) as exc:
                raise self._failed("delete", f"S3 delete failed: {exc}") from exc

    async def list_keys(self, prefix: str = "") -> list[str]:
        keys: list[str] = []
        paginator = self._client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return keys


async def _read_capped(reply: aiohttp.ClientResponse, key: str, max_bytes: int | None) -> bytes:
    if max_bytes is None:
        return await reply.read()
    if reply.content_length is not None and reply.content_length > max_bytes:
        raise BlobTooLarge(f"object {key} is {reply.content_length} bytes, more than {max_bytes}")
    data = bytearray()
    async for chunk in reply.content.iter_chunked(1024 * 1024):
        data += chunk
        if len(data) > max_bytes:  # a length the server did not declare is checked as it arrives
            raise BlobTooLarge(f"object {key} is more than {max_bytes} bytes")
    return bytes(data)


@asynccontextmanager
async def connect_blobs(
    *,
    endpoint_url: str | None,
    bucket: str,
    region: str,
    access_key: str | None,
    secret_key: str | None,
    create_bucket: bool = False,
    public_endpoint_url: str | None = None,
    link_maker: LinkMaker | None = None,
    on_error: Callable[[str], None] | None = None,
) -> AsyncIterator[BlobStore]:
    """The store, talking to ``endpoint_url``; links for clients are signed for ``public_endpoint_url`` when
    given (the same S3 by an address clients can reach), else for ``endpoint_url`` too."""
    config = AioConfig(
        s3={"addressing_style": "path"},
        signature_version="s3v4",
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
        max_pool_connections=64,
        # S3-compatible servers (SeaweedFS among them) do not all speak the newer checksum headers.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    session = get_session()
    async with AsyncExitStack() as stack:

        async def s3_client(endpoint: str | None) -> Any:
            return await stack.enter_async_context(
                session.create_client(
                    "s3",
                    endpoint_url=endpoint,
                    region_name=region,
                    aws_access_key_id=access_key,
                    aws_secret_access_key=secret_key,
                    config=config,
                )
            )

        client = await s3_client(endpoint_url)
        http = await stack.enter_async_context(
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64),
                timeout=aiohttp.ClientTimeout(sock_connect=5, sock_read=60),
                auto_decompress=False,  # the stored bytes, exactly
            )
        )
        signer = public_signer = public_client = None
        if endpoint_url and access_key and secret_key:
            signer = GetUrlSigner(endpoint_url, bucket, region, access_key, secret_key)
        if public_endpoint_url and access_key and secret_key:
            public_signer = GetUrlSigner(public_endpoint_url, bucket, region, access_key, secret_key)
        elif public_endpoint_url:
            # Credentials from botocore's chain (instance roles, profiles): a second client that never sends a
            # request, only signs links for the public host.
            public_client = await s3_client(public_endpoint_url)
        store = BlobStore(client, bucket, http, signer, public_client=public_client, public_signer=public_signer,
                          link_maker=link_maker, on_error=on_error)
        if create_bucket:
            await store.ensure_bucket()
        yield store


async def _pieces(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The chunks, a large one (a trained gallery of gigabytes, memory-mapped) cut into parts, so the upload never
    holds it whole; a memory-mapped one's parts are released from this process once sent."""
    async for chunk in chunks:
        if len(chunk) <= PART_SIZE:
            yield chunk
            continue
        view = memoryview(chunk)
        for start in range(0, len(view), PART_SIZE):
            length = min(PART_SIZE, len(view) - start)
            yield bytes(view[start:start + length])
            if isinstance(chunk, mmap.mmap):
                chunk.madvise(mmap.MADV_DONTNEED, start, length)
        view.release()
