"""Recognition on video and long recordings: a job that stores time-coded segments, and their pages.

``start`` queues one ``library-run`` task (a job like any createJob's: webhooks, job status, cancelJob and
retryJob work the same) whose worker reads the media, runs the engine's ``recognize_media`` and stores the
segments as they become final (gateway/worker/media_tasks.py). An upload is streamed to S3 under the
organization's prefix first, never held whole in memory; a URL is checked now and fetched by the worker.
``segments`` and ``thumbnail`` read what a task stored, for its organization only.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

from gateway.errors import InvalidInput, PayloadTooLarge
from gateway.resources import Resources
from gateway.services import blob_cleanup
from gateway.services.access.paging import check_page
from gateway.services.access.principal import Principal
from gateway.services.ingest import content_sniff
from gateway.services.ingest.remote_files import FetchRefused, check_destination
from gateway.services.ingest.uploads import (
    CHUNK,
    Uploaded,
    check_mime,
    object_key,
    store,
)
from gateway.services.queue import jobs
from gateway.services.queue.enqueue import NewJob, NewTask, enqueue
from gateway.services.recognition.media_probe import is_media_engine
from gateway.services.training import engine_models
from gateway.services.training.defaults import default_model_of
from storage.queries import segments as q
from storage.rows import EngineModel, Job, SegmentRow

MEDIA_PREFIX = "media"  # uploads are stored under <org id>/media/<random>: the worker reads no other key
FRAME_INTERVAL = (0.04, 60.0)  # seconds between sampled frames: 25 per second down to one a minute
SPEAKERS = (1, 50)
TOP_K = (1, 100)
THRESHOLD = (-1.0, 1.0)
KINDS = ("face", "speaker")


def media_key_prefix(org_id: object) -> str:
    """The prefix every uploaded media key of the organization starts with."""
    return f"{org_id}/{MEDIA_PREFIX}/"


def check_options(frame_interval: float | None, speakers: int | None, top_k: int | None, threshold: float | None) -> None:
    """InvalidInput naming the option out of range (the same rules for recognizeMedia and a createJob payload)."""
    if frame_interval is not None and not (
        _finite(frame_interval) and FRAME_INTERVAL[0] <= frame_interval <= FRAME_INTERVAL[1]
    ):
        raise InvalidInput(f"frameInterval must be between {FRAME_INTERVAL[0]} and {FRAME_INTERVAL[1]:g} seconds")
    if speakers is not None and not (isinstance(speakers, int) and SPEAKERS[0] <= speakers <= SPEAKERS[1]):
        raise InvalidInput(f"speakers must be between {SPEAKERS[0]} and {SPEAKERS[1]}")
    if top_k is not None and not (isinstance(top_k, int) and TOP_K[0] <= top_k <= TOP_K[1]):
        raise InvalidInput(f"topK must be between {TOP_K[0]} and {TOP_K[1]}")
    if threshold is not None and not (_finite(threshold) and THRESHOLD[0] <= threshold <= THRESHOLD[1]):
        raise InvalidInput("threshold must be between -1 and 1")


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


async def _model(
    res: Resources, principal: Principal, model_id: object | None, library_id: object | None, engine_id: object | None,
) -> EngineModel:
    """The trained model the run uses, resolved as recognize resolves it."""
    if engine_id is not None and library_id is None:
        raise InvalidInput("engineId picks the default model of a library: give libraryId with it")
    if (model_id is None) == (library_id is None):
        raise InvalidInput("give either libraryEngineModelId (a trained model) or libraryId (its default model): exactly one")
    if library_id is not None:
        model = await default_model_of(res, principal, library_id, engine_id)
    else:
        model = await engine_models.get(res, principal, model_id)
    if model.train_status != "complete":
        raise InvalidInput(f"the model is {model.train_status}, not complete: engine has not been trained")
    if not is_media_engine(res.engines.get(model.engine_id)):
        raise InvalidInput(
            f"engine {model.engine_id} does not recognize video or long recordings over time; "
            "train a face or speaker engine (engineshed-face, engineshed-speaker) for recognizeMedia"
        )
    return model


async def start(
    res: Resources, principal: Principal, *, model_id: object | None = None, library_id: object | None = None,
    engine_id: object | None = None, upload: Uploaded | None = None, url: str | None = None,
    frame_interval: float | None = None, speakers: int | None = None, top_k: int | None = None,
    threshold: float | None = None,
) -> Job:
    """Queue a media run: the job with its one library-run task. Needs a write (admin) token: it stores a file
    and creates a job, as createJob does."""
    principal.require_write()
    check_options(frame_interval, speakers, top_k, threshold)
    if upload is not None and url:
        raise InvalidInput("send the media as a file or as a url, not both")
    if upload is None and not url:
        raise InvalidInput("send the video or recording as a file (multipart) or a url")
    model = await _model(res, principal, model_id, library_id, engine_id)
    payload: dict[str, Any] = {"mode": "library-run", "libraryId": str(model.library_id),
                               "libraryEngineModelId": str(model.id)}
    options = {"frameInterval": frame_interval, "speakers": speakers, "topK": top_k, "threshold": threshold}
    payload.update({k: v for k, v in options.items() if v is not None})
    key = None
    if url:
        try:
            await check_destination(url, res.fetch_policy)
        except FetchRefused as exc:
            raise InvalidInput(f"url: {exc}", data={"reason": exc.reason}) from exc
        payload["url"] = url
    else:
        assert upload is not None
        key = object_key(principal.org_id, MEDIA_PREFIX)
        await _store_upload(res, key, upload)
        payload["mediaKey"] = key
    try:
        async with res.pool.acquire() as conn, conn.transaction():
            job = await enqueue(conn, NewJob(
                org_id=principal.org_id, name="recognizeMedia", actor=principal.actor,
                max_attempts=res.settings.max_attempts, library_id=model.library_id,
            ), [NewTask(model.engine_id, payload)])
            if key is not None:
                # Kept while the job may still read it (a retry reads it again), then swept.
                await blob_cleanup.keep(conn, key)
                await blob_cleanup.schedule(conn, [key], res.settings.media_keep_seconds)
    except BaseException:
        if key is not None:
            await blob_cleanup.delete_now(res, [key])
        raise
    return job


async def _store_upload(res: Resources, key: str, upload: Uploaded) -> None:
    """The file streamed to S3 under ``key``; refused (and nothing left in S3) when empty, a still image, over
    max_media_bytes, or cut short."""
    head, chunks = await content_sniff.with_head(_chunks(upload))
    if not head:
        raise InvalidInput("the file is empty", data={"reason": "empty"})
    if content_sniff.image_type(head) is not None:
        raise InvalidInput("this is a still image: recognize it with recognize, which answers at once")
    content_type = "application/octet-stream"
    if upload.content_type:
        try:
            content_type = check_mime(upload.content_type)
        except InvalidInput:
            pass  # the worker reads the bytes, not the declared type
    limit = res.settings.max_media_bytes
    try:
        await store(res, key, chunks, content_type, limit)
    except PayloadTooLarge as exc:
        raise PayloadTooLarge(f"the media file is larger than the limit of {limit} bytes; nothing was stored") from exc


async def _chunks(upload: Uploaded) -> AsyncIterator[bytes]:
    seek = getattr(upload, "seek", None)
    if seek is not None:
        await seek(0)
    while chunk := await upload.read(CHUNK):
        yield chunk


async def segments(
    res: Resources, principal: Principal, *, job_id: object | None = None, task_id: object | None = None,
    kind: str | None = None, entity_id: object | None = None, start: float | None = None, stop: float | None = None,
    offset: int = 0, limit: int = 30,
) -> tuple[list[SegmentRow], int]:
    """One page of a job's or a task's segments in time order (start, then seq), and how many there are.

    A running task shows what its current attempt has stored so far; a cancelled or failed one shows none.
    ``start``/``stop``: only segments overlapping [start, stop) seconds. not_found for another organization's
    job or task."""
    offset, limit = check_page(offset, limit, res.settings.max_page_size)
    if job_id is None and task_id is None:
        raise InvalidInput("give jobId or taskId: the segments of which job or task")
    if kind is not None and kind not in KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(KINDS)}")
    for name, value in (("start", start), ("stop", stop)):
        if value is not None and not (_finite(value) and value >= 0):
            raise InvalidInput(f"{name} must be a number of seconds, 0 or more")
    if start is not None and stop is not None and stop <= start:
        raise InvalidInput("stop must be after start")
    jid = (await jobs.get(res, principal, job_id)).id if job_id is not None else None
    tid = None
    if task_id is not None:
        task = await jobs.get_task(res, principal, task_id)
        if jid is not None and task.job_id != jid:
            return [], 0
        tid = task.id
    async with res.pool.acquire() as conn:
        return await q.page(
            conn, principal.org_id, job_id=jid, task_id=tid, kind=kind,
            entity_id=str(entity_id) if entity_id is not None else None,
            start=float(start) if start is not None else None, stop=float(stop) if stop is not None else None,
            offset=offset, limit=limit,
        )


async def thumbnail(res: Resources, principal: Principal, task_id: object, seq: int) -> bytes | None:
    """The small JPEG of a face segment's best frame; None when the segment has none or does not exist (or is
    not shown: see ``segments``). not_found for another organization's task."""
    task = await jobs.get_task(res, principal, task_id)
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 2**31:
        return None
    async with res.pool.acquire() as conn:
        return await q.thumbnail(conn, principal.org_id, task.id, seq)
