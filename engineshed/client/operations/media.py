"""Recognition over time on video and long recordings: start it (a job), read its segments, fetch its timeline."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any, NoReturn, TypedDict
from urllib.parse import quote

import httpx

from engineshed.client.errors import (
    ApiError,
    ConnectionFailed,
    ServiceUnavailableError,
    error_from,
)
from engineshed.client.operations.base import OperationsBase, graphql, op
from engineshed.client.operations.fields import JOB_FIELDS
from engineshed.client.transport import Operation, Upload
from engineshed.client.types import Job, Page

SEGMENT_FIELDS = ("jobId taskId kind startSeconds endSeconds label entityId entityName entityIdentifierId confidence "
                  "bestFrameSeconds hasThumbnail matches { entityId entityName entityIdentifierId score } "
                  "boxes { seconds left top width height }")
SEGMENT_PAGE = 500  # segments per request when reading them all
UPLOAD_CHUNK = 256 * 1024  # bytes of a media file read at a time while it is sent


class MediaSegment(TypedDict, total=False):
    """One person seen (``face``) or heard (``speaker``) from ``startSeconds`` to ``endSeconds``."""

    jobId: str
    taskId: str
    kind: str
    startSeconds: float
    endSeconds: float
    label: str
    entityId: str | None
    entityName: str | None
    entityIdentifierId: str | None
    confidence: float
    bestFrameSeconds: float | None
    hasThumbnail: bool
    matches: list[dict[str, Any]]
    boxes: list[dict[str, float]]


class MediaOperations(OperationsBase):
    """``recognizeMedia``, ``segments`` and the timeline page."""

    def recognize_media(self, file: str | Path | bytes | Upload | None = None, *, url: str | None = None,
                        library_id: str | None = None, library_engine_model_id: str | None = None,
                        engine_id: str | None = None, frame_interval: float | None = None, speakers: int | None = None,
                        top_k: int | None = None, threshold: float | None = None) -> Any:
        """A video or long recording (a file, streamed from disk in chunks, or a URL) recognized over time by a
        worker; the queued :class:`Job` (an awaitable of it from the async client). Name the model by
        ``library_id`` (with ``engine_id``, else the library's default engine) or ``library_engine_model_id``.
        Follow it with ``watch_job`` or ``job``, then read :meth:`segments`.

        A file goes as the raw body of ``POST /v3/media``, held to the server's media limit (gigabytes) rather
        than GraphQL's multipart one; a URL goes to the ``recognizeMedia`` mutation."""
        options = {"libraryId": library_id, "libraryEngineModelId": library_engine_model_id, "engineId": engine_id,
                   "frameInterval": frame_interval, "speakers": speakers, "topK": top_k, "threshold": threshold}
        if file is None or url is not None:  # by URL (a file and a URL together: the mutation refuses the pair)
            return self._run(self._recognize_media_call(file, url=url, **options))
        transport: Any = self._transport
        target = f"{transport.base}/v3/media"
        params = {k: v for k, v in options.items() if v is not None}
        if isinstance(transport.http, httpx.AsyncClient):
            return self._media_upload_async(transport.http, target, params, Upload.of(file))
        upload = Upload.of(file)
        try:
            with upload.opened() as content:
                body, headers = _body(content, upload.content_type)
                response = transport.http.post(target, params=params, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise ConnectionFailed(f"cannot send the file to {target}: {exc.__class__.__name__}: {exc}".rstrip(": ")) from None
        return self.job(_accepted(response))  # type: ignore[attr-defined]

    async def _media_upload_async(self, http: httpx.AsyncClient, target: str, params: dict[str, Any],
                                  upload: Upload) -> Job:
        try:
            with upload.opened() as content:
                body, headers = _body(content, upload.content_type)
                if not isinstance(content, bytes):
                    body = _async_chunks(content)
                response = await http.post(target, params=params, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise ConnectionFailed(f"cannot send the file to {target}: {exc.__class__.__name__}: {exc}".rstrip(": ")) from None
        return await self.job(_accepted(response))  # type: ignore[attr-defined,no-any-return]

    def _recognize_media_call(self, file: str | Path | bytes | Upload | None, *, url: str | None,
                              **options: Any) -> Operation[Job]:
        """``recognizeMedia``, the GraphQL mutation (a file as its multipart part)."""
        uploads = {"f": Upload.of(file)} if file is not None else {}
        data = yield graphql(
            "mutation($m: ID, $l: ID, $e: ID, $f: Upload, $u: String, $fi: Float, $s: Int, $k: Int, $t: Float) { "
            "recognizeMedia(libraryEngineModelId: $m, libraryId: $l, engineId: $e, file: $f, url: $u, frameInterval: $fi, "
            f"speakers: $s, topK: $k, threshold: $t) {{ {JOB_FIELDS} }} }}",
            idempotent=False, uploads=uploads, m=options["libraryEngineModelId"], l=options["libraryId"],
            e=options["engineId"], f=None, u=url, fi=options["frameInterval"], s=options["speakers"], k=options["topK"],
            t=options["threshold"],
        )
        return data["recognizeMedia"]

    @op
    def segment_page(self, job_id: str | None = None, *, task_id: str | None = None, kind: str | None = None,
                     entity_id: str | None = None, start: float | None = None, stop: float | None = None,
                     offset: int = 0, limit: int = 30) -> Operation[Page[MediaSegment]]:
        """``segments``: one page of a media job's (or task's) segments in start order."""
        data = yield graphql(
            "query($j: ID, $t: ID, $k: MediaSegmentKind, $e: ID, $a: Float, $b: Float, $o: Int, $l: Int) { segments(jobId: $j, "
            "taskId: $t, kind: $k, entityId: $e, startSeconds: $a, stopSeconds: $b, offset: $o, limit: $l) "
            f"{{ offset limit count totalCount records {{ {SEGMENT_FIELDS} }} }} }}",
            idempotent=True, j=job_id, t=task_id, k=kind, e=entity_id, a=start, b=stop, o=offset, l=limit,
        )
        return data["segments"]

    @op
    def segments(self, job_id: str | None = None, *, task_id: str | None = None, kind: str | None = None,
                 entity_id: str | None = None, start: float | None = None, stop: float | None = None,
                 page_size: int = SEGMENT_PAGE) -> Operation[list[MediaSegment]]:
        """Every segment of a media job (or task) in start order, read ``page_size`` at a time."""
        found: list[MediaSegment] = []
        while True:
            page = yield from MediaOperations.segment_page.__wrapped__(  # type: ignore[attr-defined]
                self, job_id, task_id=task_id, kind=kind, entity_id=entity_id, start=start, stop=stop,
                offset=len(found), limit=page_size)
            found.extend(page["records"])
            if page["count"] < page_size or len(found) >= page["totalCount"]:
                return found

    def timeline(self, job_id: str, *, format: str = "html", kind: str | None = None, start: float | None = None,
                 stop: float | None = None) -> Any:
        """``GET /v3/jobs/{jobId}/timeline``: the self-contained HTML page (``format="svg"``: the SVG image) that
        draws who appears and who speaks; a ``str`` (an awaitable of one from the async client)."""
        transport: Any = self._transport
        url = f"{transport.base}/v3/jobs/{quote(str(job_id), safe='')}/timeline"
        params = {k: v for k, v in (("format", format), ("kind", kind), ("start", start), ("stop", stop)) if v is not None}
        if isinstance(transport.http, httpx.AsyncClient):
            return _timeline_async(transport.http, url, params)
        try:
            response = transport.http.get(url, params=params)
        except httpx.HTTPError as exc:
            raise ConnectionFailed(f"cannot reach {url}: {exc.__class__.__name__}: {exc}".rstrip(": ")) from None
        return _page_text(response)


async def _timeline_async(http: httpx.AsyncClient, url: str, params: dict[str, Any]) -> str:
    try:
        response = await http.get(url, params=params)
    except httpx.HTTPError as exc:
        raise ConnectionFailed(f"cannot reach {url}: {exc.__class__.__name__}: {exc}".rstrip(": ")) from None
    return _page_text(response)


def _page_text(response: httpx.Response) -> str:
    """The page, or the route's JSON error (``{"error": {"code", "message"}}``) as the client's exception."""
    if response.status_code < 400:
        return response.text
    _raise_error(response)


def _accepted(response: httpx.Response) -> str:
    """The job id ``POST /v3/media`` answered, or its JSON error as the client's exception."""
    if response.status_code < 400:
        try:
            return str(response.json()["jobId"])
        except (ValueError, KeyError, TypeError):
            raise ApiError(f"the server answered HTTP {response.status_code} without a job",
                           code="internal_error", status=response.status_code) from None
    _raise_error(response)


def _body(content: IO[bytes] | bytes, content_type: str) -> tuple[Any, dict[str, str]]:
    """What httpx sends for a file: bytes as they are, a file read in chunks from where it stands, its length
    declared (a server refuses a body over its limit before any of it is sent, and nothing goes chunked)."""
    headers = {"Content-Type": content_type}
    if isinstance(content, bytes):
        return content, headers
    headers["Content-Length"] = str(os.fstat(content.fileno()).st_size - content.tell())
    return _chunks(content), headers


def _chunks(content: IO[bytes]) -> Iterator[bytes]:
    while chunk := content.read(UPLOAD_CHUNK):
        yield chunk


async def _async_chunks(content: IO[bytes]) -> AsyncIterator[bytes]:
    """A local file in chunks, each read off the event loop (a slow disk does not stall it)."""
    while chunk := await asyncio.to_thread(content.read, UPLOAD_CHUNK):
        yield chunk


def _raise_error(response: httpx.Response) -> NoReturn:
    """The route's JSON error (``{"error": {"code", "message"}}``) as the client's exception."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("code"):
        raise error_from({"message": error.get("message"), "extensions": {"code": error["code"]}}, status=response.status_code)
    if response.status_code in (502, 503, 504):
        raise ServiceUnavailableError(f"the server answered HTTP {response.status_code}", status=response.status_code)
    raise ApiError(f"the server answered HTTP {response.status_code}", code="internal_error", status=response.status_code)
