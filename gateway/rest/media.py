"""``POST /v3/media``: a video or long recording sent as the raw request body, recognized over time as a job.

GraphQL's multipart uploads are held to ``ENGINESHED_MAX_UPLOAD_BYTES`` (a form is spooled whole before any
field limit applies), far below a phone video; this route reads the body as a stream, hands it to the media
service chunk by chunk (straight on to S3), and is held to ``ENGINESHED_MAX_MEDIA_BYTES`` instead::

    curl -H "Authorization: Bearer $TOKEN" --data-binary @meeting.mp4 \\
         "http://localhost:8000/v3/media?libraryId=LIB&frameInterval=0.5"

answers ``202 {"jobId", "status", "libraryId"}``. The query parameters are recognizeMedia's arguments; an unknown
one, or a number that is not one, is invalid_input naming it. A body over the limit is answered 413 once drained
(gateway/web/body_limit.py), and nothing of it is left in S3.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import ClientDisconnect, Request

from gateway.errors import ApiError, InvalidInput, PayloadTooLarge
from gateway.rest.common import RestEndpoint, RestRequest
from gateway.services.recognition import media as media_service
from gateway.settings import Settings

IDS = {"libraryId": "library_id", "libraryEngineModelId": "model_id", "engineId": "engine_id"}
FLOATS = {"frameInterval": "frame_interval", "threshold": "threshold"}
INTS = {"speakers": "speakers", "topK": "top_k"}
KNOWN = (*IDS, *FLOATS, *INTS)
# Content types a client sends when it names none of its own (curl --data-binary sends a form's): not the media's.
NOT_MEDIA_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


class BodyUpload:
    """The request body as the service's ``Uploaded``: read in the pieces the client sent, never whole."""

    def __init__(self, request: Request) -> None:
        self.filename: str | None = None
        declared = request.headers.get("content-type", "").split(";")[0].strip().lower()
        self.content_type: str | None = declared if declared and declared not in NOT_MEDIA_TYPES else None
        self._chunks: AsyncIterator[bytes] = request.stream()
        self._pending = b""
        self._done = False
        self._read_any = False
        declared_length = request.headers.get("content-length", "")
        self._declared = int(declared_length) if declared_length.isdigit() else None
        self._expects_continue = request.headers.get("expect", "").lower() == "100-continue"

    async def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (``-1``: the rest, which a caller streaming media never asks for); b"" at the end."""
        while not self._done and (size < 0 or len(self._pending) < size):
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                self._done = True
                break
            self._pending += chunk
            self._read_any = True
            if size >= 0 and len(self._pending) >= size:
                break
        if size < 0 or len(self._pending) <= size:
            out, self._pending = self._pending, b""
        else:
            out, self._pending = self._pending[:size], self._pending[size:]
        return out

    async def drain(self, bound: int) -> None:
        """Read and drop what is left of the body, up to ``bound`` bytes, so that a client that sends its whole
        body before reading the answer reads a refusal rather than a reset connection. Nothing is read from a
        client waiting for ``100 Continue`` (curl, for a large file): reading would ask it for the whole body."""
        if self._expects_continue and not self._read_any:
            return
        if self._declared is not None and self._declared > bound:
            return
        dropped = len(self._pending)
        self._pending = b""
        while not self._done and dropped <= bound:
            try:
                dropped += len(await self._chunks.__anext__())
            except StopAsyncIteration:
                self._done = True
            except (PayloadTooLarge, ClientDisconnect):
                return  # past the route's limit, or gone: the refusal goes out as it is


def options(req: RestRequest) -> dict[str, Any]:
    """The query parameters as the service's keyword arguments; invalid_input naming an unknown or malformed one."""
    params = req.query_params
    found: dict[str, Any] = {}
    for name in params:
        if name not in KNOWN:
            raise InvalidInput(f"unknown query parameter {name!r}; use {', '.join(KNOWN)}")
        values = params.getlist(name)
        if len(values) > 1:
            raise InvalidInput(f"query parameter {name} is given {len(values)} times; give it once")
        raw = values[0].strip()
        if raw == "":
            continue
        if name in IDS:
            found[IDS[name]] = raw
        elif name in FLOATS:
            try:
                value = float(raw)
            except ValueError:
                raise InvalidInput(f"query parameter {name} must be a number") from None
            if not math.isfinite(value):
                raise InvalidInput(f"query parameter {name} must be a finite number")
            found[FLOATS[name]] = value
        else:
            try:
                found[INTS[name]] = int(raw)
            except ValueError:
                raise InvalidInput(f"query parameter {name} must be a whole number") from None
    return found


async def upload_media(req: RestRequest) -> tuple[int, dict[str, Any]]:
    upload = BodyUpload(req.request)
    try:
        job = await media_service.start(req.resources, req.principal, upload=upload, **options(req))
    except PayloadTooLarge:
        raise  # the body limit answers it, once it has drained the rest
    except ApiError:
        await upload.drain(req.resources.settings.discard_bytes)
        raise
    return 202, {"jobId": str(job.id), "status": job.status, "libraryId": str(job.library_id) if job.library_id else None}


def media_limit(settings: Settings) -> int:
    """The media file, not the JSON limit: the body goes to S3 as it arrives."""
    return settings.max_media_bytes


endpoint = RestEndpoint({"POST": upload_media}, body_limit=media_limit)
