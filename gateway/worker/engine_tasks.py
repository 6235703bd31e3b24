"""Tasks of an installed engine: ``library-train`` trains a model of the library, any other mode recognizes media
with the library's trained model."""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any
from uuid import UUID

import asyncpg

from engines.interface import EmbeddingModel, Engine, EngineError, Match
from engines.model_backbone import PIXEL_PROJECTION
from gateway.observability import metrics, tracing
from gateway.services.access.principal import Principal
from gateway.services.ingest.remote_files import FetchRefused, fetch_bytes
from gateway.services.models import backbones as engine_backbones
from gateway.services.queue import dispatch
from gateway.services.queue.dispatch import LeaseLost
from gateway.services.recognition import recognize as recognition
from gateway.services.training import engine_models as model_service
from gateway.worker import media_tasks
from gateway.worker.context import LibraryContext
from gateway.worker.runner import TaskRun
from storage.queries import engine_models as model_q
from storage.queries import identifiers as identifier_q
from storage.queries import libraries as library_q
from storage.queries import types as type_q
from storage.rows import EngineModel


class EngineTasks:
    """The handler of one installed engine's tasks."""

    def __init__(self, engine: Engine, decode_pool: concurrent.futures.Executor) -> None:
        self.engine = engine
        self.decode_pool = decode_pool

    async def __call__(self, run: TaskRun) -> None:
        if (run.task.payload or {}).get("mode") == "library-train":
            await self.train(run)
        else:
            await self.recognize(run)

    async def train(self, run: TaskRun) -> None:
        engine, task = self.engine, run.task
        payload = task.payload
        config = engine.info.validate_config(payload.get("config") or {})
        model_id = UUID(payload["libraryEngineModelId"])
        library_id = UUID(payload["libraryId"])
        async with run.res.pool.acquire() as conn:
            library = await library_q.by_id(conn, task.org_id, library_id)
            model = await model_q.by_id(conn, task.org_id, model_id)
            if library is None or model is None:
                raise EngineError("the library or its engine model was deleted")
            library_type = await type_q.library_type_by_id(conn, library.library_type_id)
            types = [t for t in engine.info.identifier_type_ids if t in library_type.identifier_type_ids]
            total = await identifier_q.count_for_training(conn, task.org_id, library_id, types)
        embedding, candidates = None, []
        if engine_backbones.takes_model(engine):
            embedding = await engine_backbones.embedding_model(
                run.res, task.org_id, config, types, pinned=payload.get("modelVersionId"))
            candidates = await engine_backbones.candidate_models(
                run.res, task.org_id, config, types, pinned=payload.get("modelVersionId"))
        detector = None
        if engine_backbones.takes_detector(engine):
            detector = await engine_backbones.detector_model(
                run.res, task.org_id, config, pinned=payload.get("detectorVersionId"))
        ctx = LibraryContext(
            run.res, task, library_type_ids=library_type.identifier_type_ids,
            engine_type_ids=engine.info.identifier_type_ids, library_version=model.library_version,
            config=config, decode_pool=self.decode_pool, total_identifiers=total, embedding_model=embedding,
            detector_model=detector,
        )
        ctx.candidate_models = candidates
        run.ctx = ctx
        clock = ctx.time_phases() if tracing.enabled() else None
        started = time.perf_counter()
        with tracing.span("train", **{"engineshed.identifiers_total": total}):
            if clock is None:
                artifact = await engine.train(ctx)
            else:
                with tracing.running(clock):
                    artifact = await engine.train(ctx)
                clock.emit()  # fetch, decode and inference, as children of the training
        seconds = time.perf_counter() - started
        metrics.embedded("training", ctx.inferences)
        output = {
            "libraryId": str(library_id),
            "libraryEngineModelId": str(model_id),
            "identifiers": (artifact.jsondata or {}).get("identifiers"),
            "inferences": ctx.inferences,
            "fetches": ctx.fetches,
            "storedEmbeddings": ctx.stored_read,
            "trainSeconds": round(seconds, 3),
        }
        jsondata = dict(artifact.jsondata or {})
        jsondata.setdefault("trainSeconds", round(seconds, 3))
        system = Principal(org_id=task.org_id, scope="admin")

        async def finish(conn: asyncpg.Connection) -> bool:
            return await dispatch.complete_in(conn, task, owner=run.owner, output=output)

        with tracing.span("upload", **{"engineshed.artifact_bytes": len(artifact.data)}):
            saved = await model_service.update(
                run.res, system, model_id,
                {"train_status": "complete", "jsondata": jsondata, "accuracy": artifact.accuracy,
                 "model_version_id": _embedded_with(jsondata, embedding)},
                artifact=(artifact.data, artifact.content_type), in_transaction=finish,
            )
        if saved is None:
            raise LeaseLost(f"task {task.id}: lease lost before the artifact could be recorded")
        metrics.trained(task.engine_id, output["identifiers"])

    async def recognize(self, run: TaskRun) -> None:
        task, res = run.task, run.res
        payload = task.payload
        system = Principal(org_id=task.org_id, scope="admin")
        fetched = None
        if media_tasks.may_be_media(self.engine, payload):
            # A video or long recording runs as media and completes there; a photo comes back as its bytes.
            fetched = await media_tasks.run(run, self.engine, self.decode_pool)
            if fetched is None:
                return
        model = await model_service.get(res, system, payload["libraryEngineModelId"])
        urls = list(payload.get("urls") or []) or [payload["url"]]
        images = [fetched] if fetched is not None else []
        for url in urls if fetched is None else []:
            try:
                async with res.fetch_limiter:
                    data, _ = await fetch_bytes(res.http, str(url), res.fetch_policy)
            except FetchRefused as exc:
                raise EngineError(f"media {url}: {exc}") from exc
            images.append(data)
        results = await recognition.run(
            res, model, images, top_k=int(payload.get("topK", 5)), threshold=payload.get("threshold")
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
        await dispatch.complete(res, task, owner=run.owner, output=output)


def _embedded_with(jsondata: dict[str, Any], embedding: EmbeddingModel | None) -> UUID | None:
    """The registered version the model was trained on: the one its report names (an engine that compared
    backbones may have kept another than the resolved default), else the resolved one; None: the pixel projection."""
    backbone = jsondata.get("backbone") if isinstance(jsondata.get("backbone"), dict) else {}
    if backbone.get("model") == PIXEL_PROJECTION:
        return None
    try:
        return UUID(str(backbone["modelVersionId"]))
    except (KeyError, ValueError):
        return UUID(embedding.version_id) if embedding is not None else None


def _match_json(model: EngineModel, m: Match) -> dict[str, Any]:
    return {"libraryId": str(model.library_id), "entityId": m.entity_id, "entityName": m.entity_name,
            "entityIdentifierId": m.entity_identifier_id, "score": m.score}
