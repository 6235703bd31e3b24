"""S3 objects: streamed and multipart uploads, reads, presigned GET URLs, deletes.

One aiobotocore client per process, entered in the app lifespan (or the worker's main) and shared.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger(__name__)

PART_SIZE = 8 * 1024 * 1024  # S3's minimum part is 5 MiB; 8 MiB keeps memory per upload small
PRESIGN_CACHE_SIZE = 50_000


class BlobError(RuntimeError):
    """S3 refused or could not be reached."""


class BlobTooLarge(BlobError):
    """A stream ran past the size it was allowed."""


@dataclass(frozen=True, slots=True)
class StoredBlob:
    key: str
    size: int
    sha256: str
    content_type: str


class BlobStore:
    def __init__(self, client: Any, bucket: str) -> None:
        self._client = client
        self.bucket = bucket
        # Signing costs more than the rest of a GraphQL page of identifiers together (measured by
        # `make bench`); keys never change content, so a link is reused while at least half its life remains.
        self._presigned: OrderedDict[tuple[str, int], tuple[str, float]] = OrderedDict()

    async def ping(self) -> None:
        try:
            await self._client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError, OSError) as exc:
            raise BlobError(f"S3 bucket {self.bucket!r} is not reachable: {exc}") from exc

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
            async for chunk in chunks:
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
            if upload_id is None:
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
                raise BlobError(f"S3 upload failed: {exc}") from exc
            raise
        return StoredBlob(key=key, size=size, sha256=digest.hexdigest(), content_type=content_type)

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> StoredBlob:
        async def one() -> AsyncIterator[bytes]:
            yield data

        return await self.put_stream(key, one(), content_type)

    async def get_bytes(self, key: str, *, max_bytes: int | None = None) -> bytes:
        try:
            reply = await self._client.get_object(Bucket=self.bucket, Key=key)
            length = reply.get("ContentLength")
            if max_bytes is not None and length is not None and length > max_bytes:
                reply["Body"].close()
                raise BlobTooLarge(f"object {key} is {length} bytes, more than {max_bytes}")
            async with reply["Body"] as body:
                return await body.read()
        except ClientError as exc:
            raise BlobError(f"S3 read of {key} failed: {exc}") from exc
        except (BotoCoreError, OSError) as exc:
            raise BlobError(f"S3 read of {key} failed: {exc}") from exc

    async def exists(self, key: str) -> bool:
        try:
            await self._client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise BlobError(f"S3 HEAD of {key} failed: {exc}") from exc

    async def presign_get(self, key: str, ttl_seconds: int) -> str:
        """A presigned GET URL valid for at least ``ttl_seconds / 2`` from now."""
        now = time.monotonic()
        cached = self._presigned.get((key, ttl_seconds))
        if cached is not None and cached[1] - now > ttl_seconds / 2:
            self._presigned.move_to_end((key, ttl_seconds))
            return cached[0]
        url = await self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=ttl_seconds
        )
        self._presigned[(key, ttl_seconds)] = (url, now + ttl_seconds)
        self._presigned.move_to_end((key, ttl_seconds))
        while len(self._presigned) > PRESIGN_CACHE_SIZE:
            self._presigned.popitem(last=False)
        return url

    async def delete(self, keys: Iterable[str]) -> None:
        batch = [{"Key": k} for k in keys]
        for start in range(0, len(batch), 1000):
            try:
                await self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch[start : start + 1000], "Quiet": True}
                )
            except (ClientError, BotoCoreError, OSError) as exc:
                raise BlobError(f"S3 delete failed: {exc}") from exc

    async def list_keys(self, prefix: str = "") -> list[str]:
        keys: list[str] = []
        paginator = self._client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return keys


@asynccontextmanager
async def connect_blobs(
    *,
    endpoint_url: str | None,
    bucket: str,
    region: str,
    access_key: str | None,
    secret_key: str | None,
    create_bucket: bool = False,
) -> AsyncIterator[BlobStore]:
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
        client = await stack.enter_async_context(
            session.create_client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region,
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                config=config,
            )
        )
        store = BlobStore(client, bucket)
        if create_bucket:
            await store.ensure_bucket()
        yield store
