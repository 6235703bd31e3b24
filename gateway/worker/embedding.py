"""The ingest queue's consumer: identifiers embedded in batches, and generateEmbeddings tasks.

One claim leases up to ``ENGINESHED_EMBED_BATCH_SIZE`` queued (identifier, model version) pairs of one model
version (FOR UPDATE SKIP LOCKED, so workers never share a pair), fetches what the content cache does not
already hold, decodes in the worker's process pool and runs the backbone once for the batch. The vectors are
written and the pairs dequeued in one statement that only takes pairs still leased to this worker: a worker
killed mid-batch leaves its pairs to be claimed again when the lease runs out, and a worker that lost its
lease writes nothing. The vector table's primary key makes each pair stored once whatever happens.

The leases are renewed while a batch runs, so a slow batch (a large model on a CPU) is not taken over.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from typing import Any
from uuid import UUID

import numpy as np

from engines.embedding import Embedder, embedder
from engines.interface import EngineError
from gateway.observability import metrics
from gateway.resources import Resources
from gateway.services.ingest.remote_files import FetchRefused, fetch_bytes
from gateway.services.models import backbones as engine_backbones
from gateway.services.models import registry as models
from gateway.services.queue import dispatch
from gateway.services.selection import IdentifierSelection
from gateway.worker.errors import TRANSIENT
from gateway.worker.runner import TaskRun
from storage.blobs import BlobTooLarge
from storage.queries import content_measures as measures_q
from storage.queries import embeddings as cache_q
from storage.queries import models as model_q
from storage.queries import vectors as q
from storage.queries.identifier_filter import query_conditions
from storage.rows import Task

log = logging.getLogger("engineshed.worker")

MAX_ATTEMPTS = 5  # claims of one pair before it is marked failed (a batch that kills its worker each time)
FETCH_CONCURRENCY = 16
PROGRESS_SECONDS = 0.5  # how often a generateEmbeddings task recounts its selection


class EmbeddingIngest:
    """Claims and embeds batches of the ingest queue; one per worker process."""

    def __init__(self, res: Resources, decode_pool: concurrent.futures.Executor, owner: str) -> None:
        self.res = res
        self.decode_pool = decode_pool
        self.owner = owner
        self.wake = asyncio.Event()
        self.embedded = 0  # vectors this worker wrote (tests and the bench read the log line)
        self._building: asyncio.Task[Any] | None = None

    @property
    def lease_seconds(self) -> float:
        return self.res.settings.lease_seconds

    async def loop(self, stopping: asyncio.Event) -> None:
        try:
            await self._loop(stopping)
        finally:
            if self._building is not None:  # a build cut short leaves an invalid index, rebuilt later
                self._building.cancel()

    async def _loop(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                self._start_index_build()
                claimed = await self.run_batch()
            except TRANSIENT as exc:
                log.warning("embedding queue: database or S3 unavailable, retrying: %r", exc)
                claimed = 0
                await asyncio.sleep(1.0)
            except asyncio.CancelledError:
                raise
            except Exception:  # the batch's leases run out and it is claimed again
                log.exception("embedding batch failed")
                claimed = 0
                await asyncio.sleep(1.0)
            if claimed >= self.res.settings.embed_batch_size:
                continue  # a full batch: more is probably waiting
            woken = False
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=self.res.settings.poll_seconds)
                woken = True
            self.wake.clear()
            if woken and self.res.settings.embed_linger_seconds > 0:
                # Uploads arrive one by one: let a few more land, so one claim embeds many (one backbone call).
                await asyncio.sleep(self.res.settings.embed_linger_seconds)

    def _start_index_build(self) -> None:
        # Beside the batches, not before them: CREATE INDEX CONCURRENTLY waits for older transactions (a
        # training's cursor), and the queue must not stall behind it.
        if self._building is None or self._building.done():
            self._building = asyncio.create_task(self.build_indexes())

    async def build_indexes(self) -> None:
        """Build the HNSW indexes asked for since (CONCURRENTLY, outside a transaction), one after another."""
        try:
            while True:
                async with self.res.pool.acquire() as conn:
                    name = await q.build_next_index(conn)
                if not name:
                    return
                log.info("built embedding index %s", name)
        except TRANSIENT as exc:
            log.warning("embedding index build: database unavailable, retried later: %r", exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("embedding index build failed; retried on a later round")

    async def run_batch(self, version_id: UUID | None = None, org_id: UUID | None = None) -> int:
        """Claim and embed one batch; returns how many pairs it claimed (0: nothing due)."""
        async with self.res.pool.acquire() as conn:
            rows = await q.claim(conn, self.owner, self.lease_seconds, self.res.settings.embed_batch_size, version_id, org_id)
        if not rows:
            return 0
        version_id = rows[0]["model_version_id"]
        ids = [r["identifier_id"] for r in rows]
        renew = asyncio.create_task(self._renew(version_id, ids))
        try:
            await self._embed(version_id, rows)
        finally:
            renew.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await renew
        return len(rows)

    async def _renew(self, version_id: UUID, ids: list[UUID]) -> None:
        while True:
            await asyncio.sleep(self.res.settings.heartbeat_interval)
            with contextlib.suppress(Exception):  # a missed renewal: the lease has slack for one
                async with self.res.pool.acquire() as conn:
                    await q.extend(conn, self.owner, version_id, ids, self.lease_seconds)

    async def _embedder(self, version_id: UUID) -> tuple[Any, Embedder | None, str | None]:
        async with self.res.pool.acquire() as conn:
            version = await model_q.version_by_id(conn, version_id)
        if version is None or version.status != "ready" or version.application != "embedding":
            return version, None, "the model version is gone or is not a ready embedding model"
        try:
            model = await engine_backbones.engine_model(self.res, version)
            return version, await embedder(model, self.res.settings.onnx_provider), None
        except (EngineError, ValueError) as exc:
            return version, None, f"model {version.ref} cannot embed images: {exc}"

    async def _embed(self, version_id: UUID, rows: list[Any]) -> None:
        failures: dict[UUID, str] = {}
        live = []
        for r in rows:
            if r["attempts"] > MAX_ATTEMPTS:
                failures[r["identifier_id"]] = f"claimed {MAX_ATTEMPTS} times without finishing"
            else:
                live.append(r)
        version, emb, why = await self._embedder(version_id)
        if emb is None:
            failures.update({r["identifier_id"]: why or "unusable model" for r in live})
            live = []
        vectors: dict[UUID, np.ndarray] = {}
        if live:
            assert emb is not None
            cached = await self._cached(emb, live)
            vectors.update(cached)
            todo = [r for r in live if r["identifier_id"] not in cached]
            blobs = await self._fetch_all(todo, failures)
            fetched = [r for r in todo if r["identifier_id"] in blobs]
            decoded = await emb.decode([blobs[r["identifier_id"]] for r in fetched], self.decode_pool, measure=True)
            await self._store_measures(fetched, [m for _, _, m in decoded])
            ready, images = [], []
            for r, (array, skip, _) in zip(fetched, decoded, strict=True):
                if skip is not None:
                    failures[r["identifier_id"]] = f"{skip['reason']}: {skip.get('detail', '')}"[:500]
                else:
                    ready.append(r)
                    images.append(array)
            if images:
                out = await emb.embed(images)
                for r, v in zip(ready, out, strict=True):
                    if np.isfinite(v).all() and np.any(v):
                        vectors[r["identifier_id"]] = v
                    else:
                        failures[r["identifier_id"]] = "the model gave a vector that is not finite or is all zeros"
                await self._store_cache(emb, ready, out)
        orgs = {r["org_id"] for r in rows if r["identifier_id"] in vectors}
        await self._finish(version_id, version, vectors, failures, orgs)

    async def _cached(self, emb: Embedder, rows: list[Any]) -> dict[UUID, np.ndarray]:
        """Vectors the content cache holds already (the same bytes embedded by this model before)."""
        by_org: dict[UUID, list[Any]] = {}
        for r in rows:
            if r["content_sha256"]:
                by_org.setdefault(r["org_id"], []).append(r)
        found: dict[UUID, np.ndarray] = {}
        async with self.res.pool.acquire() as conn:
            for org, members in by_org.items():
                hits = await cache_q.get_many(conn, org, emb.spec.digest, sorted({r["content_sha256"] for r in members}))
                for r in members:
                    if r["content_sha256"] in hits:
                        found[r["identifier_id"]] = np.frombuffer(hits[r["content_sha256"]], dtype=np.float32)
        return {i: v for i, v in found.items() if v.size == emb.dimension}

    async def _store_measures(self, rows: list[Any], measures: list[Any]) -> None:
        """Each decoded content's size, so a training's minSize gate can judge its stored vector without the bytes."""
        by_org: dict[UUID, dict[str, tuple[int, int, float | None]]] = {}
        for r, m in zip(rows, measures, strict=True):
            if m is not None and r["content_sha256"]:
                by_org.setdefault(r["org_id"], {})[r["content_sha256"]] = (m["width"], m["height"], m["sharpness"])
        async with self.res.pool.acquire() as conn:
            for org, found in by_org.items():
                await measures_q.put_many(conn, org, found)

    async def _store_cache(self, emb: Embedder, rows: list[Any], vectors: np.ndarray) -> None:
        by_org: dict[UUID, dict[str, bytes]] = {}
        for r, v in zip(rows, vectors, strict=True):
            if r["content_sha256"]:
                by_org.setdefault(r["org_id"], {})[r["content_sha256"]] = np.asarray(v, np.float32).tobytes()
        async with self.res.pool.acquire() as conn:
            for org, packed in by_org.items():
                await cache_q.put_many(conn, org, emb.spec.digest, packed)

    async def _fetch_all(self, rows: list[Any], failures: dict[UUID, str]) -> dict[UUID, bytes]:
        slots = asyncio.Semaphore(FETCH_CONCURRENCY)
        blobs: dict[UUID, bytes] = {}

        async def one(r: Any) -> None:
            async with slots:
                try:
                    blobs[r["identifier_id"]] = await self._fetch(r)
                except BlobTooLarge:
                    failures[r["identifier_id"]] = "too-large: over ENGINESHED_FETCH_MAX_BYTES"
                except FetchRefused as exc:
                    failures[r["identifier_id"]] = f"fetch-failed: {exc}"[:500]

        async with asyncio.TaskGroup() as tg:
            for r in rows:
                tg.create_task(one(r))
        return blobs

    async def _fetch(self, r: Any) -> bytes:
        # BlobError other than too-large propagates: S3 away is "try the batch again", not "skip this image".
        if r["storage_key"]:
            return await self.res.blobs.get_bytes(r["storage_key"], max_bytes=self.res.settings.fetch_max_bytes)
        async with self.res.fetch_limiter:
            data, _ = await fetch_bytes(self.res.http, r["reference_url"], self.res.fetch_policy)
        return data

    async def _finish(
        self, version_id: UUID, version: Any, vectors: dict[UUID, np.ndarray], failures: dict[UUID, str], orgs: set[UUID],
    ) -> None:
        async with self.res.pool.acquire() as conn, conn.transaction():
            written = 0
            if vectors:
                ids = list(vectors)
                written = await q.finish_batch(
                    conn, self.owner, version_id, version.dimension, ids, np.stack([vectors[i] for i in ids]))
                for org in orgs:
                    await q.want_index(conn, org, version_id, version.dimension)
            await q.fail(conn, self.owner, version_id, failures)
        self.embedded += written
        metrics.embedded("ingest", written)
        name = version.ref if version is not None else f"model version {version_id}"  # named as users name it
        if failures:
            log.warning("embedding with %s: %d identifiers failed (e.g. %s)", name, len(failures),
                        next(iter(failures.values())))
        log.info("embedded %d identifiers with %s", written, name)


class Progress:
    """What TaskRun's heartbeats report for a generateEmbeddings task."""

    def __init__(self) -> None:
        self.fraction = 0.0
        self.message: str | None = None


async def run_task(ingest: EmbeddingIngest, run: TaskRun) -> None:
    """The handler of generateEmbeddings tasks (the built-in ``engineshed-embeddings`` engine)."""
    progress = Progress()
    run.ctx = progress
    output = await run_generate(ingest, run.task, progress)
    await dispatch.complete(run.res, run.task, owner=run.owner, output=output)


async def run_generate(ingest: EmbeddingIngest, task: Task, progress: Progress) -> dict[str, Any]:
    """A generateEmbeddings task: queue its selection, embed it (beside other workers), report progress.

    The task ends when every identifier of the selection has a vector or has failed; the output counts both.
    """
    res = ingest.res
    payload = task.payload or {}
    try:
        version_id = UUID(str(payload["modelVersionId"]))
        library_ids = [UUID(str(x)) for x in payload.get("libraryIds") or []]
        type_ids = [str(t) for t in payload.get("identifierTypeIds") or []]
        selection = IdentifierSelection.from_json(payload.get("filter"))
    except (KeyError, ValueError, TypeError) as exc:
        raise EngineError(f"this task's payload is not a generateEmbeddings payload: {exc}") from None
    except Exception as exc:  # an InvalidInput from the filter: the payload was not made by generateEmbeddings
        raise EngineError(f"this task's filter is not valid: {exc}") from None
    # A task made through createJob (not generateEmbeddings) could name any version: only the organization's
    # own models and the system ones may embed its images.
    if await models.pinned_version(res, task.org_id, version_id) is None:
        raise EngineError("the model version of this task is gone, not ready, or not this organization's")
    filter_sql, filter_args = selection.conditions("i", 5)
    try:
        query_sql, query_args = query_conditions("i", 5 + len(filter_args), payload.get("query"))
    except (ValueError, AttributeError) as exc:
        raise EngineError(f"this task's query is not valid: {exc}") from None
    conditions = (filter_sql + query_sql, filter_args + query_args)
    async with res.pool.acquire() as conn:
        await q.enqueue_selection(conn, task.org_id, version_id, library_ids, type_ids, conditions)
    ingest.wake.set()
    started = time.monotonic()
    while True:
        async with res.pool.acquire() as conn:
            counts = await q.selection_counts(conn, task.org_id, version_id, library_ids, type_ids, conditions)
        total, embedded, failed = counts["total"], counts["embedded"], counts["failed"]
        progress.fraction = 1.0 if total == 0 else (embedded + failed) / total
        progress.message = f"{embedded} of {total} identifiers embedded ({failed} failed)"
        if embedded + failed >= total:
            break
        # The queue consumers (this worker's and others') embed the selection in full batches; this task only
        # watches. Embedding here as well would split the batches between two claimants.
        ingest.wake.set()
        await asyncio.sleep(PROGRESS_SECONDS)
    return {"model": payload.get("model"), "modelVersionId": str(version_id), "total": total, "embedded": embedded,
            "failed": failed, "seconds": round(time.monotonic() - started, 3)}


__all__ = ["EmbeddingIngest", "Progress", "run_generate", "run_task"]
