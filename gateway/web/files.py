"""GET and HEAD /v3/files/{key}: the gateway's signed file links (gateway/services/links.py), streamed from S3.

No bearer token: the link's signature is the capability, as with an S3 presigned URL, so a browser or a
download tool follows it as it is. The object is relayed as S3 sends it, a chunk at a time, never held whole;
a ``Range`` header goes to S3 unchanged, so an interrupted model download resumes where it stopped.
"""

from __future__ import annotations

import logging
import time

import aiohttp
import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

from gateway.errors import NotAllowed, ServiceUnavailable
from gateway.resources import Resources
from gateway.services import links
from gateway.web.errors import DATABASE_UNAVAILABLE, error_body
from storage.blobs import BlobError, BlobStore
from storage.db import CONNECTION_LOST

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024
MAX_RANGE_HEADER = 1024  # longer is no range a download tool sends: served whole instead
RELAYED = ("Content-Type", "Content-Length", "Content-Range", "ETag", "Last-Modified")
S3_UNAVAILABLE = "the file store is unavailable; try again shortly"


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


async def download(request: Request) -> JSONResponse | ObjectRelay:
    res: Resources = request.app.state.resources
    key = request.path_params["key"]
    try:
        if res.link_keys is None:
            raise NotAllowed(links.BAD_LINK)
        expires = await links.check(
            res.link_keys, key, request.query_params.get("expires"), request.query_params.get("signature")
        )
    except NotAllowed as exc:
        return _error(403, exc.code, exc.message)
    except CONNECTION_LOST:
        return _error(503, ServiceUnavailable.code, DATABASE_UNAVAILABLE)
    wanted = request.headers.get("range")
    return ObjectRelay(
        res.blobs, key, expires, head=request.method == "HEAD",
        range_header=wanted if wanted and len(wanted) <= MAX_RANGE_HEADER else None,
    )


class ObjectRelay:
    """The ASGI reply that relays one S3 object: S3's answer is known only once asked, inside the reply."""

    def __init__(self, blobs: BlobStore, key: str, expires: int, *, head: bool, range_header: str | None) -> None:
        self.blobs = blobs
        self.key = key
        self.expires = expires
        self.head = head
        self.range_header = range_header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with self.blobs.open_read(self.key, head=self.head, range_header=self.range_header) as reply:
                if reply.status in (200, 206):
                    await self._relay(reply, receive, send)
                    return
                answer = self._refusal(reply)
        except BlobError as exc:
            log.warning("file link: %s", exc)
            answer = _error(503, ServiceUnavailable.code, S3_UNAVAILABLE)
        await answer(scope, receive, send)

    def _refusal(self, reply: aiohttp.ClientResponse) -> JSONResponse:
        if reply.status == 404:
            return _error(404, "not_found", "this file no longer exists")
        if reply.status == 416:
            size = {"Content-Range": reply.headers["Content-Range"]} if "Content-Range" in reply.headers else None
            return _error(416, "invalid_input", "the requested range is not within the file", size)
        log.warning("file link: S3 answered HTTP %s for %s", reply.status, self.key)
        return _error(503, ServiceUnavailable.code, S3_UNAVAILABLE)

    async def _relay(self, reply: aiohttp.ClientResponse, receive: Receive, send: Send) -> None:
        headers = [(name.lower().encode(), reply.headers[name].encode()) for name in RELAYED if name in reply.headers]
        # A cache may keep the bytes for as long as the link is valid, and only for the one who followed it.
        max_age = max(0, self.expires - int(time.time()))
        headers += [(b"accept-ranges", b"bytes"), (b"cache-control", f"private, max-age={max_age}".encode())]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        if self.head:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        async with anyio.create_task_group() as group:

            async def relay() -> None:
                try:
                    async for chunk in reply.content.iter_chunked(CHUNK_BYTES):
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except (aiohttp.ClientError, TimeoutError) as exc:
                    # Too late for an error reply: the client sees the body end short of its Content-Length.
                    log.warning("file link: S3 stopped sending %s: %s", self.key, exc)
                    group.cancel_scope.cancel()
                    return
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                group.cancel_scope.cancel()

            async def watch() -> None:
                # A client gone stops the relay at once rather than after the rest of the object came from S3.
                message: Message = await receive()
                while message["type"] != "http.disconnect":
                    message = await receive()
                group.cancel_scope.cancel()

            group.start_soon(relay)
            group.start_soon(watch)
