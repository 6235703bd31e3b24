"""Storing an uploaded file or a fetched URL in S3 before the row that owns it is committed."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Protocol
from uuid import UUID, uuid4

from gateway.errors import InvalidInput, PayloadTooLarge, ServiceUnavailable
from gateway.resources import Resources
from gateway.services import blob_cleanup
from gateway.services.ingest import content_sniff
from gateway.services.ingest.remote_files import FetchRefused, open_url
from storage.blobs import BlobError, BlobTooLarge, StoredBlob

CHUNK = 256 * 1024
_MIME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$")


class Uploaded(Protocol):
    """What the HTTP layer hands over for a file part (Starlette's UploadFile fits)."""

    filename: str | None
    content_type: str | None

    async def read(self, size: int = -1) -> bytes: ...


def check_mime(value: str | None, what: str = "contentType") -> str:
    text = (value or "").split(";")[0].strip().lower()
    if not _MIME.match(text):
        raise InvalidInput(f"{what} must be a MIME type such as image/jpeg, not {value!r}")
    return text


async def read_limited(upload: Uploaded, limit: int, too_large: str | None = None) -> bytes:
    """A file part read whole, refused with payload_too_large as soon as it passes ``limit`` bytes."""
    data = bytearray()
    while chunk := await upload.read(CHUNK):
        data += chunk
        if len(data) > limit:
            raise PayloadTooLarge(too_large) if too_large else PayloadTooLarge()
    return bytes(data)


async def _file_chunks(upload: Uploaded) -> AsyncIterator[bytes]:
    # One part may be mapped to several variables (the multipart spec allows it): each use reads it whole.
    seek = getattr(upload, "seek", None)
    if seek is not None:
        await seek(0)
    while True:
        chunk = await upload.read(CHUNK)
        if not chunk:
            return
        yield chunk


class _WholeImageCheck:
    """Keeps an image's bytes as they stream to S3 and starts their decode check once the last one is in.

    The check (a thread) runs while put_stream's final PUT is in flight: the two waits overlap instead of adding
    up. ``result`` is awaited after the PUT; ``cancel`` stops a check whose upload failed.
    """

    def __init__(self) -> None:
        self.kept = bytearray()
        self._task: asyncio.Task[None] | None = None

    async def keeping(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            self.kept += chunk
            yield chunk
        self._task = asyncio.ensure_future(content_sniff.check_whole_image(bytes(self.kept)))

    async def result(self) -> None:
        if self._task is None:  # a store that ended without reading the stream to its end: check what came
            await content_sniff.check_whole_image(bytes(self.kept))
            return
        await self._task

    async def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._task is not None:
            with contextlib.suppress(BaseException):
                await self._task


def object_key(org_id: UUID, *parts: object) -> str:
    # Keys are built only from our own IDs: a client's file name never reaches a path or key.
    return "/".join([str(org_id), *(str(p) for p in parts), uuid4().hex])


async def store(
    res: Resources, key: str, chunks: AsyncIterator[bytes], content_type: str, max_bytes: int, *, scheduled: bool = False,
    data_type: str | None = None,
) -> StoredBlob:
    """Record the key as an orphan-to-be (unless the caller has: ``scheduled``), then upload.

    ``data_type``: what the identifier type holds; the stream's first bytes must be that kind of data
    (content_sniff), checked before anything is stored, and an image must then decode whole
    (content_sniff.check_whole_image): the bytes are kept as they stream to S3, decoded while the last PUT is
    in flight, and the object is deleted when they do not decode. The caller's transaction must call ``keep``;
    on any failure here the object and its record are gone.
    """
    if not scheduled:
        async with res.pool.acquire() as conn:
            await blob_cleanup.schedule(conn, [key], blob_cleanup.UPLOAD_GRACE_SECONDS)
    check: _WholeImageCheck | None = None
    try:
        if data_type is not None:
            head, chunks = await content_sniff.with_head(chunks)
            content_type = content_sniff.content_type_for(data_type, head, content_type)
            if data_type == "image":
                check = _WholeImageCheck()
                chunks = check.keeping(chunks)
        stored = await res.blobs.put_stream(key, chunks, content_type, max_bytes=max_bytes)
        if check is not None:
            await check.result()
        return stored
    except BlobTooLarge as exc:
        await blob_cleanup.delete_now(res, [key])
        raise PayloadTooLarge(f"the file is larger than the limit of {max_bytes} bytes") from exc
    except BlobError as exc:
        await blob_cleanup.delete_now(res, [key])
        raise ServiceUnavailable("object storage is unavailable; nothing was stored") from exc
    except BaseException:
        await blob_cleanup.delete_now(res, [key])
        raise
    finally:
        if check is not None:
            await check.cancel()


async def store_upload(res: Resources, key: str, upload: Uploaded, content_type: str, *, scheduled: bool = False,
                       data_type: str | None = None) -> StoredBlob:
    return await store(res, key, _file_chunks(upload), content_type, res.settings.max_upload_bytes, scheduled=scheduled,
                       data_type=data_type)


async def store_url(res: Resources, key: str, url: str, content_type: str | None, *, data_type: str | None = None) -> StoredBlob:
    try:
        async with res.fetch_limiter:
            remote = await open_url(res.http, url, res.fetch_policy)
    except FetchRefused as exc:
        raise InvalidInput(str(exc), data={"reason": exc.reason}) from exc
    try:
        return await store(res, key, remote.chunks(), content_type or check_mime(remote.content_type), res.settings.fetch_max_bytes,
                           data_type=data_type)
    except FetchRefused as exc:
        raise InvalidInput(str(exc), data={"reason": exc.reason}) from exc
    finally:
        await remote.aclose()
