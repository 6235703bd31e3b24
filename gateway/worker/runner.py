"""Running one claimed task: the lease held by heartbeats, the engine called, the outcome recorded."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from uuid import UUID

import asyncpg

from engines.interface import EngineConfigError, EngineError, NothingToTrain
from gateway.errors import ApiError, ServiceUnavailable
from gateway.services import dispatch, engine_backbones, recognition
from gateway.services.embeddings import ENGINE_ID as EMBEDDINGS_ENGINE
from gateway.services import engine_models as model_service
from gateway.services.dispatch import LeaseLost
from gateway.services.principal import Principal
from gateway.services.remote_files import FetchRefused, fetch_bytes
from gateway.worker import labeling
from gateway.worker.training import WorkerTrainingContext
from storage.blobs import BlobError
from storage.db import CONNECTION_LOST
from storage.queries import engine_models as model_q
from storage.queries import identifiers as identifier_q
from storage.queries import libraries as library_q
from storage.queries import types as type_q
from storage.rows import Task

log = logging.getLogger("engineshed.worker")

# Errors that may pass by themselves (S3 or PostgreSQL briefly away): the task is retried with backoff.
TRANSIENT = (BlobError, *CONNECTION_LOST, asyncpg.DeadlockDetectedError, asyncpg.SerializationError)


class Stop(Exception):
    """Why the engine was interrupted: 'cancelled' (the user asked), 'lost' (lease gone), 'shutdown'."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class TaskRun:
    def __init__(self, worker: Any, task: Task) -> None:
        self.worker = worker
        self.res = worker.res
        self.task = task
        self.owner = worker.owner
        self.stop_reason: str | None = None
        self.wake = asyncio.Event()  # set by a cancel NOTIFY: heartbeat now
        self.ctx: Any = None  # WorkerTrainingContext, or a generateEmbeddings task's Progress
        self._engine_task: asyncio.Task[Any] | None = None

    def interrupt(self, why: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = why
        if self._engine_task is not None and not self._engine_task.done():
            self._engine_task.cancel()

    async def run(self) -> None:
        engine = self.res.engines.get(self.task.engine_id)
        beat = asyncio.create_task(self._heartbeats())
        try:
            internal = labeling.handles(self.task) or self.task.engine_id == EMBEDDINGS_ENGINE
            if engine is None and not internal:
                await self._fail("system_dependency_missing", f"engine {self.task.engine_id} is not installed in this worker", False)
                return
            mode = (self.task.payload or {}).get("mode")
            if labeling.handles(self.task):  # auto-tag, hard examples, auto-grouping (gateway/worker/labeling.py)
                work = labeling.run_task(self)
            elif self.task.engine_id == EMBEDDINGS_ENGINE:  # generateEmbeddings (gateway/worker/embedding.py)
                work = self._generate_embeddings()
            else:
                work = self._train(engine) if mode == "library-train" else self._recognize(engine)
            self._engine_task = asyncio.create_task(work)
            try:
                await self._engine_task
            except asyncio.CancelledError:
                if self.stop_reason is None:  # the worker itself is being cancelled
                    self.stop_reason = "shutdown"
                await self._stopped()
            except (EngineConfigError, NothingToTrain) as exc:
                await self._fail("invalid_data", str(exc), False)
            except EngineError as exc:
                await self._fail("other", str(exc), False)
            except ServiceUnavailable as exc:  # S3 away while storing the artifact: try again later
                log.warning("task %s: %s", self.task.id, exc.message)
                await self._fail("system_error", "a storage service was unavailable; the task is retried", True)
            except ApiError as exc:
                await self._fail("invalid_data", exc.message, False)
            except TRANSIENT as exc:
                # Clients read failure messages: the details (endpoints, SQL, paths) stay in the log.
                log.warning("task %s: transient failure: %r", self.task.id, exc)
                await self._fail("system_error", "a storage service was unavailable; the task is retried", True)
            except Exception:  # an engine bug: recorded on the task and the model, retried
                log.exception("task %s: engine %s raised", self.task.id, self.task.engine_id)
                await self._fail("internal_error", "the engine failed with an internal error; see the worker log", True)
        except LeaseLost:
            log.warning("task %s: lease lost; another worker owns it now", self.task.id)
        except TRANSIENT as exc:
            # Recording the outcome failed too (the database is away): the lease runs out and a worker claims
            # the task again, so there is nothing more to do here than say so.
            log.warning("task %s: its outcome could not be recorded (%r); it runs again once its lease expires", self.task.id, exc)
        finally:
            beat.cancel()
            try:
                await beat
            except (asyncio.CancelledError, Exception):
                pass

    async def _heartbeats(self) -> None:
        interval = self.res.settings.heartbeat_interval
        while True:
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=interval)
            except asyncio.TimeoutError:
                pass
            self.wake.clear()
            ctx = self.ctx
            try:
                cancel = await dispatch.heartbeat(
                    self.res, self.task, owner=self.owner, lease_seconds=self.res.settings.lease_seconds,
                    progress=ctx.fraction if ctx else None, message=ctx.message if ctx else None,
                )
            except LeaseLost:
                self.interrupt("lost")
                return
            except TRANSIENT as exc:  # keep working; the lease has slack for a missed beat or two
                log.warning("task %s: heartbeat failed: %r", self.task.id, exc)
                continue
            if cancel:
                self.interrupt("cancelled")
                return

    async def _stopped(self) -> None:
        log.info("task %s stopped: %s", self.task.id, self.stop_reason)
        with _quiet():
            if self.stop_reason == "cancelled":
                await dispatch.cancelled(self.res, self.task, owner=self.owner)
            elif self.stop_reason == "shutdown":
                await dispatch.release(self.res, self.task, owner=self.owner)

    async def _fail(self, reason: str, message: str, retryable: bool) -> None:
        done = await dispatch.fail(
            self.res, self.task, owner=self.owner, reason=reason, message=message[:2000],
            retryable=retryable, backoff_seconds=self.res.settings.retry_backoff_seconds,
        )
        log.info("task %s: %s (%s)", self.task.id, done.status, message[:200])

    async def _train(self, engine: Any) -> None:
        task = self.task
        payload = task.payload
        config = engine.info.validate_config(payload.get("config") or {})
        model_id = UUID(payload["libraryEngineModelId"])
        library_id = UUID(payload["libraryId"])
        async with self.res.pool.acquire() as conn:
            library = await library_q.by_id(conn, task.org_id, library_id)
            model = await model_q.by_id(conn, task.org_id, model_id)
            if library is None or model is None:
                raise EngineError("the library or its engine model was deleted")
            library_type = await type_q.library_type_by_id(conn, library.library_type_id)
            types = [t for t in engine.info.identifier_type_ids if t in library_type.identifier_type_ids]
            total = await identifier_q.count_for_training(conn, task.org_id, library_id, types)
        embedding = None
        if engine_backbones.takes_model(engine):
            embedding = await engine_backbones.embedding_model(
                self.res, task.org_id, config, types, pinned=payload.get("modelVersionId"))
        detector = None
        if engine_backbones.takes_detector(engine):
            detector = await engine_backbones.detector_model(
                self.res, task.org_id, config, pinned=payload.get("detectorVersionId"))
        self.ctx = WorkerTrainingContext(
            self.res, task, library_type_ids=library_type.identifier_type_ids,
            engine_type_ids=engine.info.identifier_type_ids, library_version=model.library_version,
            config=config, decode_pool=self.worker.decode_pool, total_identifiers=total, embedding_model=embedding,
            detector_model=detector,
        )
        started = time.perf_counter()
        artifact = await engine.train(self.ctx)
        seconds = time.perf_counter() - started
        output = {
            "libraryId": str(library_id),
            "libraryEngineModelId": str(model_id),
            "identifiers": (artifact.jsondata or {}).get("identifiers"),
            "inferences": self.ctx.inferences,
            "fetches": self.ctx.fetches,
            "storedEmbeddings": self.ctx.stored_read,
            "trainSeconds": round(seconds, 3),
        }
        jsondata = dict(artifact.jsondata or {})
        jsondata.setdefault("trainSeconds", round(seconds, 3))
        system = Principal(org_id=task.org_id, scope="admin")

        async def finish(conn: asyncpg.Connection) -> bool:
            return await dispatch.complete_in(conn, task, owner=self.owner, output=output)

        saved = await model_service.update(
            self.res, system, model_id,
            {"train_status": "complete", "jsondata": jsondata, "accuracy": artifact.accuracy,
             "model_version_id": UUID(embedding.version_id) if embedding is not None else None},
            artifact=(artifact.data, artifact.content_type), in_transaction=finish,
        )
        if saved is None:
            raise LeaseLost(f"task {task.id}: lease lost before the artifact could be recorded")

    async def _generate_embeddings(self) -> None:
        from gateway.worker.embedding import Progress, run_generate

        self.ctx = Progress()
        output = await run_generate(self.worker.ingest, self.task, self.ctx)
        await dispatch.complete(self.res, self.task, owner=self.owner, output=output)

    async def _recognize(self, engine: Any) -> None:
        task = self.task
        payload = task.payload
        system = Principal(org_id=task.org_id, scope="admin")
        model = await model_service.get(self.res, system, payload["libraryEngineModelId"])
        urls = list(payload.get("urls") or []) or [payload["url"]]
        images = []
        for url in urls:
            try:
                async with self.res.fetch_limiter:
                    data, _ = await fetch_bytes(self.res.http, str(url), self.res.fetch_policy)
            except FetchRefused as exc:
                raise EngineError(f"media {url}: {exc}") from exc
            images.append(data)
        results = await recognition.run(
            self.res, model, images, top_k=int(payload.get("topK", 5)), threshold=payload.get("threshold")
        )
        output = {
            "libraryId": str(model.library_id),
            "libraryEngineModelId": str(model.id),
            "results": [
                {
                    "url": urls[r.index],
                    "matches": [_match_json(model, m) for m in r.matches],
                    "faces": [
                        {"box": dict(zip(("left", "top", "width", "height"), f.box, strict=True)),
                         "landmarks": [{"x": x, "y": y} for x, y in f.landmarks],
                         "detectionScore": f.detection_score, "matches": [_match_json(model, m) for m in f.matches]}
                        for f in r.faces
                    ],
                }
                for r in results
            ],
        }
        await dispatch.complete(self.res, task, owner=self.owner, output=output)


def _match_json(model: Any, m: Any) -> dict[str, Any]:
    return {"libraryId": str(model.library_id), "entityId": m.entity_id, "entityName": m.entity_name,
            "entityIdentifierId": m.entity_identifier_id, "score": m.score}


class _quiet:
    """Suppress lease and connection errors while recording a stop: the reaper covers what fails here."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is not None and issubclass(exc_type, (LeaseLost, *TRANSIENT)):
            log.warning("could not record the stop of a task: %r", exc)
            return True
        return False
