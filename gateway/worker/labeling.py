"""The worker's side of the labeling loop: auto-tag (pre-label), hard examples (active learning) and
auto-grouping tasks, queued on the built-in ``engineshed-labeling`` engine by gateway/services/labeling/jobs.py.

Each task reads its selection, scores or embeds it, and then writes everything it found — suggestions,
hard flags, groups — in one transaction together with the task's completion. A task cancelled, failed or
taken over mid-run has therefore written nothing; one cancelled just before that transaction sees the
request inside it (the task row is locked there) and writes nothing either.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import numpy as np

from engines.clustering import cluster
from engines.image_features import features_batch, fit_within_batch, larger_than
from engines.interface import EngineError
from gateway.errors import ApiError
from gateway.services.access.principal import Principal
from gateway.services.ingest.remote_files import FetchRefused, fetch_bytes
from gateway.services.labeling.jobs import AUTO_GROUP, AUTO_TAG, HARD_EXAMPLES
from gateway.services.library import identifiers
from gateway.services.models import backbones as engine_backbones
from gateway.services.models import registry as models
from gateway.services.queue import dispatch
from gateway.services.queue.dispatch import LeaseLost
from gateway.services.recognition import recognize as recognition
from gateway.services.selection import IdentifierSelection
from gateway.services.training import engine_models as model_service
from gateway.worker.runner import TaskRun
from gateway.worker.selection import embeddings_for, face_embeddings_for
from storage.blobs import BlobMissing, BlobTooLarge
from storage.queries import jobs as job_q
from storage.queries import labeling as labeling_q
from storage.queries import people as people_q
from storage.queries import suggestions as suggestion_q

SELECTION_PAGE = 1000
BATCH = 64  # images per model call
FETCHES = 32  # identifier reads in flight


@dataclass(frozen=True, slots=True)
class Scored:
    """One identifier and the model's best two answers, best first: (entity id or None, label, confidence 0..1)."""

    row: Any
    top: list[tuple[str | None, str, float]]


class LabelingTask:
    """Runs one task; ``fraction`` and ``message`` are what the runner's heartbeats report."""

    def __init__(self, run: TaskRun, decode_pool: concurrent.futures.Executor) -> None:
        self.run_ = run
        self.decode_pool = decode_pool
        self.res = run.res
        self.task = run.task
        self.payload = dict(run.task.payload or {})
        self.fraction = 0.0
        self.message: str | None = None
        # inputResolution shrinks photos for whole-image models; an engine that detects faces itself gets the
        # photo as stored, or a face small in a large photo falls under its minimum face size (set by _scorer).
        self.full_size = False

    async def run(self) -> None:
        mode = self.payload.get("mode")
        if mode == AUTO_TAG:
            await self._auto_tag()
        elif mode == HARD_EXAMPLES:
            await self._hard_examples()
        elif mode == AUTO_GROUP:
            await self._auto_group()
        else:
            raise EngineError(f"unknown labeling mode {mode!r}")

    # -- reading -----------------------------------------------------------------------------------

    async def _selection(self) -> list[Any]:
        p = self.payload
        library_ids = [UUID(x) for x in p["libraryIds"]] if p.get("libraryIds") is not None else None
        selection = IdentifierSelection.from_json(p.get("filter"))
        rows: list[Any] = []
        after = UUID(int=0)
        while True:
            async with self.res.pool.acquire() as conn:
                page = await labeling_q.selection_page(
                    conn, self.task.org_id, library_ids=library_ids, type_ids=p["identifierTypeIds"],
                    unassigned_only=bool(p.get("unassignedOnly")), query=p.get("query") or {},
                    conditions_at=lambda first: selection.conditions("i", first), after=after, limit=SELECTION_PAGE,
                )
            rows.extend(page)
            if len(page) < SELECTION_PAGE:
                return rows
            after = page[-1]["id"]

    async def _read(self, row: Any) -> bytes | None:
        """The identifier's bytes; None when it was deleted since the selection was read, is too large, or its
        URL refuses (it is skipped, not retried)."""
        try:
            if row["storage_key"]:
                return await self.res.blobs.get_bytes(row["storage_key"], max_bytes=self.res.settings.fetch_max_bytes)
            async with self.res.fetch_limiter:
                data, _ = await fetch_bytes(self.res.http, row["reference_url"], self.res.fetch_policy)
            return data
        except (FetchRefused, BlobTooLarge):
            return None
        except BlobMissing:
            if await identifiers.deleted_since(self.res, self.task.org_id, row["id"]):
                return None
            raise

    async def _read_batch(self, rows: list[Any]) -> list[bytes | None]:
        gate = asyncio.Semaphore(FETCHES)

        async def one(row: Any) -> bytes | None:
            async with gate:
                return await self._read(row)

        return list(await asyncio.gather(*(one(r) for r in rows)))

    async def _progress(self, fraction: float, message: str | None) -> None:
        self.fraction = min(1.0, max(0.0, fraction))
        self.message = message

    # -- scoring (auto-tag, hard examples) ------------------------------------------------------------

    async def _scorer(self) -> Callable[[list[bytes]], Awaitable[list[list[tuple[str | None, str, float]]]]]:
        """A function from images to each one's best two answers (raising for a batch with a bad image)."""
        org = self.task.org_id
        if self.payload.get("libraryEngineModelId"):
            system = Principal(org_id=org, scope="admin")
            model = await model_service.get(self.res, system, self.payload["libraryEngineModelId"])
            self.full_size = engine_backbones.takes_detector(self.res.engines.get(model.engine_id))

            async def by_model(images: list[bytes]) -> list[list[tuple[str | None, str, float]]]:
                # threshold -1: every match, whatever its score, so the margin to the second is known
                results = await recognition.run(self.res, model, images, top_k=2, threshold=-1.0)
                out: list[list[tuple[str | None, str, float]]] = [[] for _ in images]
                for r in results:
                    out[r.index] = [(m.entity_id, m.entity_name, _unit(m.score)) for m in r.matches]
                return out

            return by_model
        version = await models.pinned_version(self.res, org, UUID(self.payload["modelVersionId"]))
        if version is None:
            raise EngineError(f"the model this job was created with ({self.payload.get('model')}) was deleted or is not ready")
        registered = await engine_backbones.engine_model(self.res, version)
        from engines.tagging import tag_images

        async def by_tags(images: list[bytes]) -> list[list[tuple[str | None, str, float]]]:
            tags = await tag_images(registered, images, top_k=2, threshold=None, execution_provider=self.res.settings.onnx_provider)
            return [[(None, t.label, _unit(t.score)) for t in per] for per in tags]

        return by_tags

    async def _score(self, rows: list[Any]) -> tuple[list[Scored], int]:
        """Every row the model could read, with its answers; and how many were skipped (unreadable).

        The next batch's reads run while the current one is scored, so S3 round trips hide behind the model.
        """
        scorer = await self._scorer()
        width, height = (int(v) for v in (self.payload.get("inputResolution") or (300, 300)))
        scored: list[Scored] = []
        skipped = 0
        batches = [rows[start : start + BATCH] for start in range(0, len(rows), BATCH)]
        reading = asyncio.create_task(self._read_batch(batches[0])) if batches else None
        try:
            for index, batch in enumerate(batches):
                assert reading is not None
                blobs = await reading
                reading = asyncio.create_task(self._read_batch(batches[index + 1])) if index + 1 < len(batches) else None
                readable = [(r, b) for r, b in zip(batch, blobs, strict=True) if b is not None]
                skipped += len(batch) - len(readable)
                if readable:
                    images = [b for _, b in readable]
                    if not self.full_size:
                        images = await self._fit(images, width, height)
                    for (row, _), top in zip(readable, await self._answers(scorer, images), strict=True):
                        if top is None:
                            skipped += 1
                        else:
                            scored.append(Scored(row, top))
                done = min(len(rows), (index + 1) * BATCH)
                await self._progress(0.95 * done / max(1, len(rows)), f"scored {done} of {len(rows)}")
        finally:
            if reading is not None:
                reading.cancel()
        return scored, skipped

    async def _fit(self, blobs: list[bytes], width: int, height: int) -> list[bytes]:
        """inputResolution: images larger than it are downscaled to fit (in the decode pool); most are not."""
        large = [i for i, b in enumerate(blobs) if larger_than(b, width, height)]
        if not large:
            return blobs
        loop = asyncio.get_running_loop()
        fitted = await loop.run_in_executor(self.decode_pool, fit_within_batch, [blobs[i] for i in large], width, height)
        out = list(blobs)
        for i, data in zip(large, fitted, strict=True):
            out[i] = data
        return out

    @staticmethod
    async def _answers(scorer: Any, images: list[bytes]) -> list[list[tuple[str | None, str, float]] | None]:
        """The scorer's answers; one bad image fails a batch, so then each is scored alone and the bad ones are None."""
        try:
            return list(await scorer(images))
        except (ApiError, EngineError):
            answers: list[list[tuple[str | None, str, float]] | None] = []
            for image in images:
                try:
                    answers.extend(await scorer([image]))
                except (ApiError, EngineError):
                    answers.append(None)
            return answers

    async def _auto_tag(self) -> None:
        rows = await self._selection()
        scored, skipped = await self._score(rows)
        threshold = float(self.payload["threshold"])
        suggestions = [_suggestion(s) for s in scored if s.top and s.top[0][2] >= threshold]

        async def write(conn: Any) -> dict[str, Any]:
            await labeling_q.lock(conn, self.task.org_id, sorted({row[1] for row in suggestions}))
            # A suggestion of an entity a person marked the identifier not to be is not written; counted here.
            refused = await people_q.negative_pairs(conn, self.task.org_id, [(r[1], r[2]) for r in suggestions if r[2]])
            await suggestion_q.replace_pending(conn, self.task.org_id, self.task.job_id, [row[1] for row in suggestions])
            written = await suggestion_q.insert_many(conn, self.task.org_id, self.task.job_id, self.payload.get("model"), suggestions)
            await labeling_q.mark_machine(conn, self.task.org_id, written)
            return {"selected": len(rows), "scored": len(scored), "skipped": skipped, "suggested": len(written),
                    "notSuggestedMarkedNotEntity": len(refused), "threshold": threshold, "model": self.payload.get("model")}

        await self._commit(write)

    async def _hard_examples(self) -> None:
        rows = await self._selection()
        scored, skipped = await self._score(rows)
        lo, hi = self.payload["scope"]
        collect = bool(self.payload.get("collectKeySample"))
        ids, flags, coefficients, suggestions = [], [], [], []
        hard_count = 0
        for s in scored:
            top1 = s.top[0][2] if s.top else 0.0
            top2 = s.top[1][2] if len(s.top) > 1 else 0.0
            hard = lo <= top1 <= hi
            ids.append(s.row["id"])
            flags.append(hard)
            coefficients.append(1.0 - (top1 - top2) if hard else None)
            hard_count += hard
            if s.top and (top1 > hi or (hard and collect)):
                suggestions.append(_suggestion(s))

        async def write(conn: Any) -> dict[str, Any]:
            await labeling_q.lock(conn, self.task.org_id, sorted(set(ids)))
            await labeling_q.set_hard(conn, self.task.org_id, ids, flags, coefficients)
            await suggestion_q.replace_pending(conn, self.task.org_id, self.task.job_id, [row[1] for row in suggestions])
            written = await suggestion_q.insert_many(conn, self.task.org_id, self.task.job_id, self.payload.get("model"), suggestions)
            await labeling_q.mark_machine(conn, self.task.org_id, written)
            return {"selected": len(rows), "scored": len(scored), "skipped": skipped, "hard": hard_count,
                    "suggested": len(written), "scope": [lo, hi], "model": self.payload.get("model")}

        await self._commit(write)

    # -- grouping ----------------------------------------------------------------------------------

    async def _auto_group(self) -> None:
        p = self.payload
        rows = await self._selection()
        n_clusters = p.get("nClusters")
        feature = p.get("feature") or "embedding"
        counts: dict[str, Any] = {}
        if feature == "embedding":
            # No modelId: the identifier types pick the default (face identifiers: the face embedding model).
            model = await engine_backbones.embedding_model(
                self.res, self.task.org_id, {"modelId": p.get("modelId") or ""}, p["identifierTypeIds"],
                pinned=p.get("modelVersionId"),
            )
            detector = await self._face_detector(model, counts)

            async def progress(fraction: float, message: str | None) -> None:
                await self._progress(0.8 * fraction, message)

            if detector is not None and model is not None:
                ids, x = await face_embeddings_for(self.res, self.task.org_id, rows, model, detector, self.decode_pool,
                                                   on_progress=progress, counts=counts)
            else:
                ids, x = await embeddings_for(self.res, self.task.org_id, rows, model, self.decode_pool,
                                              on_progress=progress, counts=counts)
            model_name = model.ref if model is not None else engine_backbones.PIXEL_PROJECTION
        else:
            ids, x = await self._scalar_features(rows, feature)
            model_name = None
        if not ids:
            raise EngineError("none of the unassigned identifiers could be read to group")
        if n_clusters is not None and n_clusters > len(ids):
            raise EngineError(f"nClusters ({n_clusters}) is more than the {len(ids)} unassigned identifiers that could be read")
        await self._progress(0.85, f"clustering {len(ids)} identifiers")
        # Cannot-link: an identifier a person marked not an entity never shares a group with that entity's identifiers.
        async with self.res.pool.acquire() as conn:
            apart = await people_q.cannot_link(conn, self.task.org_id, ids)
        position = {identifier: i for i, identifier in enumerate(ids)}
        found = await asyncio.to_thread(
            cluster, x, n_clusters=n_clusters, similarity_threshold=p.get("similarityThreshold"),
            cannot_link=[(position[a], position[b]) for a, b in apart],
        )
        group_ids = [uuid4() for _ in found.representatives]
        groups = [(gid, position, ids[rep]) for position, (gid, rep) in enumerate(zip(group_ids, found.representatives, strict=True))]
        members = [(group_ids[int(label)], ids[i], float(found.distances[i])) for i, label in enumerate(found.labels)]
        library_id = UUID(p["libraryIds"][0])

        async def write(conn: Any) -> dict[str, Any]:
            await suggestion_q.insert_groups(conn, self.task.org_id, self.task.job_id, library_id, groups, members)
            return {"selected": len(rows), "grouped": len(ids), "skipped": len(rows) - len(ids), "groups": len(groups),
                    "feature": feature, "model": model_name, "cannotLinkPairs": len(apart), **counts}

        await self._commit(write)

    async def _face_detector(self, model: Any, counts: dict[str, Any]) -> Any:
        """The face detector for grouping face identifiers by their faces; None for other identifiers, or (with
        ``counts["groupedBy"]`` saying why) when faces cannot be found here and the photos are grouped whole."""
        if "face" not in self.payload["identifierTypeIds"]:
            counts["groupedBy"] = "whole images"
            return None
        why = None
        if not self.payload.get("detectorVersionId"):
            why = "no face detector is registered (engineshed models pull face-detector)"
        elif model is None:
            why = "no face embedding model is registered (engineshed models pull face-embedding)"
        if why is not None:
            counts["groupedBy"] = f"whole photos: {why}"
            return None
        counts["groupedBy"] = "faces"
        return await engine_backbones.detector_model(self.res, self.task.org_id, {}, pinned=self.payload["detectorVersionId"])

    async def _scalar_features(self, rows: list[Any], feature: str) -> tuple[list[UUID], np.ndarray]:
        loop = asyncio.get_running_loop()
        ids: list[UUID] = []
        values: list[float] = []
        for start in range(0, len(rows), BATCH):
            batch = rows[start : start + BATCH]
            blobs = await self._read_batch(batch)
            readable = [(r, b) for r, b in zip(batch, blobs, strict=True) if b is not None]
            found = await loop.run_in_executor(self.decode_pool, features_batch, [b for _, b in readable], feature)
            for (row, _), value in zip(readable, found, strict=True):
                if value is not None:
                    ids.append(row["id"])
                    values.append(value)
            done = min(len(rows), start + BATCH)
            await self._progress(0.8 * done / max(1, len(rows)), f"measured {feature} of {done} of {len(rows)}")
        v = np.asarray(values, np.float64)
        spread = v.std() if v.size else 0.0
        return ids, ((v - v.mean()) / spread if spread > 0 else v - (v.mean() if v.size else 0.0)).reshape(-1, 1)

    # -- writing -----------------------------------------------------------------------------------

    async def _commit(self, write: Callable[[Any], Awaitable[dict[str, Any]]]) -> None:
        """Write the results and complete the task in one transaction, unless the task was cancelled or lost."""
        owner = self.run_.owner
        async with self.res.pool.acquire() as conn, conn.transaction():
            current = await job_q.task_by_id(conn, None, self.task.id, for_update=True)
            if current is None or current.lease_owner != owner or current.status != "running":
                raise LeaseLost(f"task {self.task.id} is no longer leased to {owner}")
            if current.cancel_requested:
                self.run_.stop_reason = self.run_.stop_reason or "cancelled"
                raise asyncio.CancelledError()
            output = await write(conn)
            if not await dispatch.complete_in(conn, self.task, owner=owner, output=output):
                raise LeaseLost(f"task {self.task.id} is no longer leased to {owner}")
        self.fraction, self.message = 1.0, "done"


def _unit(score: float) -> float:
    """A confidence in [0, 1]: classifier probabilities as they are, gallery similarities clipped."""
    return float(min(1.0, max(0.0, score)))


def _suggestion(s: Scored) -> tuple[UUID, UUID, UUID | None, str, float]:
    entity_id, label, confidence = s.top[0]
    return (uuid4(), s.row["id"], UUID(entity_id) if entity_id else None, label, confidence)


async def run_task(decode_pool: concurrent.futures.Executor, run: TaskRun) -> None:
    """The handler of labeling tasks (the built-in ``engineshed-labeling`` engine)."""
    job = LabelingTask(run, decode_pool)
    run.ctx = job  # the heartbeats report its fraction and message
    await job.run()
