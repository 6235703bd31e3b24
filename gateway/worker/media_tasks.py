"""A library-run task on a video or a long recording: time-coded segments, stored page by page under the lease.

The media (an upload the gateway stored under the organization's ``media/`` prefix, or a URL fetched under
the fetch policy) is streamed to a temporary file, never held in memory, and probed. A video, or audio longer
than the engine recognizes in one call, runs through the engine's ``recognize_media``; anything else goes back
to the one-shot path (gateway/worker/engine_tasks.py) with its bytes.

Segments are inserted in batches only while this worker holds the task's lease (storage/queries/segments.py
locks the task row for each batch), and each attempt first deletes what earlier attempts wrote, so a worker
killed mid-video and a task retried leave no duplicates. A cancelled or failed run deletes its segments; the
temporary file goes in every case.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from engines.interface import EngineError, Match
from engines.media import UNKNOWN_FACE, UNKNOWN_SPEAKER, MediaOptions, Segment
from gateway.resources import Resources
from gateway.services.access.principal import Principal
from gateway.services.ingest.remote_files import FetchRefused, open_url
from gateway.services.queue import dispatch
from gateway.services.queue.dispatch import LeaseLost
from gateway.services.recognition import recognize as recognition
from gateway.services.recognition.media import check_options, media_key_prefix
from gateway.services.recognition.media_probe import (
    MediaInfo,
    inline_seconds,
    is_media_engine,
    probe_async,
)
from gateway.services.training import engine_models as model_service
from gateway.worker.errors import TRANSIENT
from gateway.worker.runner import TaskRun
from storage.blobs import BlobError, BlobMissing
from storage.queries import segments as segment_q
from storage.rows import EngineModel, Task

log = logging.getLogger("engineshed.worker")

BATCH_ROWS = 100  # segments per insert
BATCH_SECONDS = 2.0  # and at least this often while segments arrive, so a running task's list stays current
MAX_THUMBNAIL_BYTES = 64 * 1024  # a thumbnail is a small JPEG; a larger one is not stored
WRITE_CHUNK = 1024 * 1024


class MediaProgress:
    """What the task's heartbeats report (gateway.worker.runner.Progress), and the engine's progress callback."""

    def __init__(self) -> None:
        self.fraction = 0.0
        self.message: str | None = None

    async def __call__(self, fraction: float, message: str | None) -> None:
        if math.isfinite(fraction):
            self.fraction = min(1.0, max(0.0, float(fraction)))
        if message is not None:
            self.message = message[:200]
        await asyncio.sleep(0)  # a point where a cancel lands even when the engine never waits otherwise


def may_be_media(engine: Any, payload: dict[str, Any]) -> bool:
    """Whether a library-run task's media must be looked at first: an engine that recognizes over time, and one
    uploaded file or one URL (a list of URLs is a batch of photos or short recordings)."""
    if not is_media_engine(engine):
        return False
    return bool(payload.get("mediaKey")) or _one_url(payload) is not None


def _one_url(payload: dict[str, Any]) -> str | None:
    """The task's media URL when it names exactly one (``url``, or ``urls`` of one), as the one-shot path reads it."""
    urls = list(payload.get("urls") or []) or [payload.get("url")]
    return str(urls[0]) if len(urls) == 1 and urls[0] else None


async def run(run: TaskRun, engine: Any, pool: concurrent.futures.Executor) -> bytes | None:
    """Run the task as media when it is, and complete it: None. Otherwise the fetched bytes (a photo or a short
    recording), for the one-shot path."""
    task, res = run.task, run.res
    payload = task.payload
    model = await model_service.get(res, Principal(org_id=task.org_id, scope="admin"), payload["libraryEngineModelId"])
    progress = MediaProgress()
    run.ctx = progress
    await _clear(res, task, run.owner)  # what an earlier attempt of this task stored
    with tempfile.TemporaryDirectory(prefix="engineshed-media-") as folder:
        path = os.path.join(folder, "media")
        await progress(0.0, "reading the media")
        await _fetch(res, task, payload, path)
        info = await probe_async(path)
        artifact = await recognition.artifact_bytes(res, model)
        if not payload.get("mediaKey"):
            inline = await inline_seconds(engine, artifact, res.settings.onnx_provider)
            if not info.is_long(inline):
                return await _small(res, payload, path)
        try:
            await _recognize(run, engine, pool, model, artifact, path, info, progress)
        except BaseException:
            if run.stop_reason != "lost":
                await _clear_quietly(res, task, run.owner)  # no half-written result of a run that did not finish
            raise
    return None


async def _small(res: Resources, payload: dict[str, Any], path: str) -> bytes:
    """A photo or short recording, read whole as the one-shot path reads it (within the usual fetch limit)."""
    size = os.path.getsize(path)
    if size > res.fetch_policy.max_bytes:
        raise EngineError(f"media {_one_url(payload)}: the remote file is larger than {res.fetch_policy.max_bytes} bytes")
    return await asyncio.to_thread(Path(path).read_bytes)


async def _fetch(res: Resources, task: Task, payload: dict[str, Any], path: str) -> None:
    """The media streamed to ``path``: the upload from S3 (only a key of the task's organization), or the URL."""
    limit = res.settings.max_media_bytes
    key = payload.get("mediaKey")
    if key:
        if not isinstance(key, str) or not key.startswith(media_key_prefix(task.org_id)) or ".." in key:
            raise EngineError("payload.mediaKey does not name a media file of this organization")
        try:
            async with res.blobs.open_read(key) as reply:
                if reply.status == 404:
                    raise BlobMissing(key)
                if reply.status != 200:
                    raise BlobError(f"S3 read of the media answered HTTP {reply.status}")
                await _write(reply.content.iter_chunked(WRITE_CHUNK), path, limit)
        except BlobMissing as exc:
            raise EngineError("the uploaded media is no longer stored (it is kept for a limited time)") from exc
        return
    url = _one_url(payload) or ""
    policy = replace(res.fetch_policy, max_bytes=limit, total_seconds=res.settings.media_fetch_seconds)
    try:
        async with res.fetch_limiter:
            remote = await open_url(res.http, url, policy)
        try:
            await _write(remote.chunks(), path, limit)
        finally:
            await remote.aclose()
    except FetchRefused as exc:
        raise EngineError(f"media {url}: {exc}") from exc


async def _write(chunks: Any, path: str, limit: int) -> None:
    """The stream written to ``path`` a megabyte at a time, in a thread (the event loop keeps heartbeating)."""
    seen = 0
    pending = bytearray()
    file = await asyncio.to_thread(open, path, "wb")
    try:
        async for chunk in chunks:
            seen += len(chunk)
            if seen > limit:
                raise EngineError(f"the media is larger than the limit of {limit} bytes")
            pending += chunk
            if len(pending) >= WRITE_CHUNK:
                await asyncio.to_thread(file.write, bytes(pending))
                pending.clear()
        await asyncio.to_thread(file.write, bytes(pending))
    finally:
        await asyncio.to_thread(file.close)
    if seen == 0:
        raise EngineError("the media file is empty")


def _options(payload: dict[str, Any]) -> MediaOptions:
    frame_interval, speakers = payload.get("frameInterval"), payload.get("speakers")
    top_k, threshold = payload.get("topK"), payload.get("threshold")
    check_options(frame_interval, speakers, top_k, threshold)  # createJob payloads are checked here
    defaults = MediaOptions()
    return MediaOptions(
        frame_interval=float(frame_interval) if frame_interval is not None else defaults.frame_interval,
        speakers=speakers, top_k=top_k if top_k is not None else defaults.top_k,
        threshold=float(threshold) if threshold is not None else None,
    )


async def _recognize(
    run: TaskRun, engine: Any, pool: concurrent.futures.Executor, model: EngineModel, artifact: bytes, path: str,
    info: MediaInfo, progress: MediaProgress,
) -> None:
    task, res = run.task, run.res
    options = _options(task.payload)
    if info.kind not in ("video", "audio"):
        raise EngineError("the media is neither a video nor a recording that can be read (no video or audio stream)")
    if info.duration is not None and info.duration > options.max_seconds:
        raise EngineError(f"the media is {info.duration:.0f} s long, over the limit of {options.max_seconds:.0f} s")
    await progress(0.0, f"recognizing a {info.kind} of {info.duration or 0:.0f} s")
    writer = SegmentWriter(res, task, run.owner)
    summary = Summary()
    segments = engine.recognize_media(artifact, path, options, execution_provider=res.settings.onnx_provider,
                                      pool=pool, progress=progress)
    try:
        async for segment in segments:
            summary.add(segment)
            await writer.add(segment)
    finally:
        close = getattr(segments, "aclose", None)
        if close is not None:
            await close()
    await writer.flush()
    faces = "face" in engine.info.identifier_type_ids and info.kind == "video"
    size = await asyncio.to_thread(_display_size, path) if info.kind == "video" else {}
    output = {
        "libraryId": str(model.library_id),
        "libraryEngineModelId": str(model.id),
        "media": {
            "kind": info.kind, "duration": info.duration,
            "frameInterval": options.frame_interval if faces else None,
            "framesSampled": math.ceil(info.duration / options.frame_interval) if faces and info.duration else None,
            **size,
        },
        **summary.output(),
    }
    await _renumber_unknowns(res, task, run.owner)
    await dispatch.complete(res, task, owner=run.owner, output=output)


def _display_size(path: str) -> dict[str, int]:
    """The video's upright frame size (its rotation applied), which face boxes are in: engineResults' boundingPoly
    is relative to it. Empty when the header does not say (the engine already read the file, so rarely)."""
    from engines.media.video import probe as probe_video

    try:
        shown = probe_video(path)
    except EngineError:
        return {}
    return {"width": shown.width, "height": shown.height}


class Summary:
    """What a finished run's output counts: segments, seconds per recognized entity, distinct unknowns."""

    def __init__(self) -> None:
        self.count = 0
        self.entities: dict[str, list[Any]] = {}  # entity id -> [name, seconds]
        self.unknown: set[str] = set()

    def add(self, segment: Segment) -> None:
        self.count += 1
        if segment.entity_id is None:
            self.unknown.add(segment.label)
            return
        entry = self.entities.setdefault(segment.entity_id, [segment.entity_name, 0.0])
        entry[1] += max(0.0, segment.end - segment.start)

    def output(self) -> dict[str, Any]:
        ranked = sorted(self.entities.items(), key=lambda item: (-item[1][1], item[0]))
        return {"segments": self.count, "unknown": len(self.unknown),
                "entities": [{"entityId": e, "entityName": n, "seconds": round(s, 3)} for e, (n, s) in ranked]}


class SegmentWriter:
    """Segments inserted in batches, each only while ``owner`` holds the task's lease (LeaseLost otherwise)."""

    def __init__(self, res: Resources, task: Task, owner: str) -> None:
        self.res, self.task, self.owner = res, task, owner
        self.rows: list[tuple[Any, ...]] = []
        self.seq = 0
        self.flushed_at = time.monotonic()

    async def add(self, segment: Segment) -> None:
        self.rows.append(self._row(segment))
        self.seq += 1
        if len(self.rows) >= BATCH_ROWS or time.monotonic() - self.flushed_at >= BATCH_SECONDS:
            await self.flush()

    async def flush(self) -> None:
        self.flushed_at = time.monotonic()
        if not self.rows:
            return
        async with self.res.pool.acquire() as conn, conn.transaction():
            attempt = await segment_q.owned(conn, self.task.id, self.owner)
            if attempt is None:
                raise LeaseLost(f"task {self.task.id}: lease lost; its segments are no longer stored")
            await segment_q.insert_many(conn, [(*row[:4], attempt, *row[4:]) for row in self.rows])
        self.rows = []

    def _row(self, s: Segment) -> tuple[Any, ...]:
        """INSERT's columns but the attempt (added under the lock)."""
        thumbnail = s.thumbnail if s.thumbnail and len(s.thumbnail) <= MAX_THUMBNAIL_BYTES else None
        boxes = [{"t": b.time, "left": b.left, "top": b.top, "width": b.width, "height": b.height} for b in s.boxes]
        return (
            self.task.id, self.task.job_id, self.task.org_id, self.seq, s.kind, float(s.start), float(s.end), s.label,
            s.entity_id, s.entity_name, s.identifier_id, float(s.confidence), s.best_time, [_match(m) for m in s.matches],
            boxes, thumbnail,
        )


def _match(m: Match) -> dict[str, Any]:
    return {"entityId": m.entity_id, "entityName": m.entity_name, "entityIdentifierId": m.entity_identifier_id,
            "score": m.score}


async def _clear(res: Resources, task: Task, owner: str) -> None:
    async with res.pool.acquire() as conn, conn.transaction():
        if await segment_q.owned(conn, task.id, owner) is None:
            raise LeaseLost(f"task {task.id} is no longer leased to {owner}")
        await segment_q.clear(conn, task.id)


async def _renumber_unknowns(res: Resources, task: Task, owner: str) -> None:
    """Unknown people numbered in the order they first appear, as a reader of the result expects: an engine can
    only number them as it judges them, when a track or voice ends (a long-seen unknown gets a later number)."""
    async with res.pool.acquire() as conn, conn.transaction():
        if await segment_q.owned(conn, task.id, owner) is None:
            raise LeaseLost(f"task {task.id} is no longer leased to {owner}")
        await segment_q.renumber_unknowns(conn, task.id, UNKNOWN_FACE, UNKNOWN_SPEAKER)


async def _clear_quietly(res: Resources, task: Task, owner: str) -> None:
    """Best effort: what is not deleted here is hidden from reads anyway and deleted by the next attempt."""
    with contextlib.suppress(LeaseLost, *TRANSIENT):
        await _clear(res, task, owner)
