"""Embeddings for the labeling loop (auto-grouping): of whole images, or of the faces in them.

With a registered embedding model, the identifiers' stored vectors of that model version (identifier_embeddings,
made at ingest, by generateEmbeddings, by a training or inserted by the client) are read from PostgreSQL page by
page (one round trip per page, only the pages in flight held); only the identifiers that still lack one are fetched
and embedded by engines.pipeline, and what it computes is stored the way a training stores it, so the next
grouping reads it. With the built-in pixel projection (no model version) the pipeline embeds everything, with the
per-organization content cache sparing the inference of images seen before.

Face identifiers (a people library) are grouped by their faces, as the face engine sees them: each photo's face is
detected, aligned and embedded (:func:`face_embeddings_for`); a whole photo's vector mixes the person with the
background and the framing, and groups people by where they were photographed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any
from uuid import UUID

import numpy as np
import onnx

from engines.backbone import default_backbone
from engines.evaluation import l2_normalise
from engines.face.align import build_front
from engines.face.decode import FaceDecoder
from engines.face.engine import FACE_OPTIONS
from engines.interface import EmbeddingModel, EngineError, FetchError, IdentifierRef
from engines.model_backbone import model_backbone
from engines.pipeline import embed_library
from engines.runtime import get_runner, throughput_runner
from gateway.resources import Resources
from gateway.services.library import identifiers
from gateway.worker.context import WorkerContext
from storage.blobs import BlobMissing
from storage.queries import vectors as vector_q

BUILTIN_IMAGE_SIZE = 32  # the built-in backbone's default side (engines.options imageSize)
PAGE = 256
# A detection is a face at the face engine's default confidence; grouping gates nothing else (any face found is
# grouped), so a small or soft face still lands in a group a person can name.
MIN_DETECTION_CONFIDENCE = next(o.default for o in FACE_OPTIONS if o.name == "minDetectionConfidence")


class SelectionContext(WorkerContext):
    """The worker's TrainingContext over a fixed list of identifier rows (no entities needed)."""

    def __init__(self, res: Resources, org_id: UUID, rows: Sequence[Any], decode_pool: concurrent.futures.Executor,
                 on_progress: Callable[[float, str | None], Awaitable[None]] | None,
                 model: EmbeddingModel | None = None) -> None:
        super().__init__(res, org_id, config={}, decode_pool=decode_pool, total_identifiers=len(rows),
                         embedding_model=model)
        self._rows = list(rows)
        self._on_progress = on_progress

    async def pages(self, page_size: int) -> AsyncIterator[list[IdentifierRef]]:
        for start in range(0, len(self._rows), page_size):
            page = self._rows[start : start + page_size]
            if self.stored is not None:
                async with self._res.pool.acquire() as conn:
                    found = await vector_q.vectors_by_ids(conn, self._org_id, self.stored.version_id, [r["id"] for r in page])
                for identifier_id, vector in found.items():
                    self.stored.add(str(identifier_id), vector)
            self._sources.update((str(r["id"]), (r["storage_key"], r["reference_url"])) for r in page)
            yield [
                IdentifierRef(str(r["id"]), "", "", r["identifier_type_id"], r["content_type"], r["content_sha256"])
                for r in page
            ]

    async def fetch(self, ref: IdentifierRef) -> bytes:
        try:
            return await super().fetch(ref)
        except BlobMissing:
            # An identifier deleted while the job ran is skipped; a blob missing otherwise is S3's fault.
            if await identifiers.deleted_since(self._res, self._org_id, UUID(ref.identifier_id)):
                raise FetchError(f"identifier {ref.identifier_id} was deleted while the job ran") from None
            raise

    async def progress(self, fraction: float, message: str | None = None) -> None:
        await super().progress(fraction, message)
        if self._on_progress is not None:
            await self._on_progress(fraction, message)


async def embeddings_for(
    res: Resources,
    org_id: UUID,
    identifiers: Sequence[Any],
    model: EmbeddingModel | None,
    decode_pool: concurrent.futures.Executor,
    *,
    on_progress: Callable[[float, str | None], Awaitable[None]] | None = None,
    counts: dict[str, int] | None = None,
) -> tuple[list[UUID], np.ndarray]:
    """L2-normalised embeddings [N, D] of the identifiers (rows with id, identifier_type_id, storage_key,
    reference_url, content_type, content_sha256), and the ids they belong to, in that order.

    ``model`` None: the built-in pixel projection. Identifiers that cannot be fetched or decoded are left
    out (their ids are missing from the answer). ``counts``, when given, receives ``fetches`` (contents read),
    ``storedEmbeddings`` (stored vectors used) and ``inferences``.
    """
    if model is not None:
        try:
            spec = await asyncio.to_thread(model_backbone, model)
        except (ValueError, onnx.checker.ValidationError) as exc:
            raise EngineError(f"model {model.ref} cannot be used as a backbone: {exc}") from None
    else:
        spec = default_backbone(BUILTIN_IMAGE_SIZE, 1)
    runner = await asyncio.to_thread(get_runner, spec.model, res.settings.onnx_provider)
    ctx = SelectionContext(res, org_id, identifiers, decode_pool, on_progress, model)
    embedded = await embed_library(
        ctx, spec, runner, page_size=PAGE, fetch_concurrency=32, batch_size=256, min_size=0, sharpness_threshold=0.0,
    )
    if counts is not None:
        counts.update(fetches=ctx.fetches, storedEmbeddings=ctx.stored_read, inferences=ctx.inferences)
    ids = [UUID(ref.identifier_id) for ref in embedded.refs]
    if not ids:
        return [], np.zeros((0, 0), np.float32)
    return ids, l2_normalise(embedded.embeddings)


async def face_embeddings_for(
    res: Resources,
    org_id: UUID,
    identifiers: Sequence[Any],
    model: EmbeddingModel,
    detector: EmbeddingModel,
    decode_pool: concurrent.futures.Executor,
    *,
    on_progress: Callable[[float, str | None], Awaitable[None]] | None = None,
    counts: dict[str, Any] | None = None,
) -> tuple[list[UUID], np.ndarray]:
    """L2-normalised embeddings [N, D] of the face in each photo (detected with ``detector``, aligned on its
    landmarks, embedded with ``model``: the face engine's steps), and the ids they belong to.

    A photo with several faces gives the one training would use (engines.face.decode.choose); a crop-shaped photo
    with no detection is taken whole as the face, as training takes it. Photos with no face, or that cannot be read,
    are left out; ``counts`` receives ``skippedByReason`` (no-face, corrupt, …) with ``fetches`` and ``inferences``.
    Stored vectors are whole-photo vectors and are not used.
    """
    try:
        spec = await asyncio.to_thread(model_backbone, model)
        front = await asyncio.to_thread(_front_bytes, detector, int(model.manifest["input"]["height"]))
    except (ValueError, KeyError, onnx.checker.ValidationError) as exc:
        raise EngineError(f"faces cannot be grouped with {detector.ref} and {model.ref}: {exc}") from None
    runner, parallel = await asyncio.to_thread(throughput_runner, spec.model, res.settings.onnx_provider)
    ctx = SelectionContext(res, org_id, identifiers, decode_pool, on_progress)
    decoder = FaceDecoder(front, 0, 0.0)
    embedded = await embed_library(
        ctx, spec, runner, page_size=PAGE, fetch_concurrency=32, batch_size=64, min_size=0, sharpness_threshold=0.0,
        decoder=decoder, use_cache=False, stored=False, parallel=parallel,
    )
    if counts is not None:
        reasons: dict[str, int] = {}
        for skip in embedded.skipped:
            reasons[skip.reason] = reasons.get(skip.reason, 0) + 1
        several = sum(1 for note in embedded.extras.values() if (note or {}).get("facesFound", 1) > 1)
        counts.update(fetches=ctx.fetches, inferences=ctx.inferences, skippedByReason=reasons,
                      photosWithSeveralFaces=several, detector=detector.ref)
    ids = [UUID(ref.identifier_id) for ref in embedded.refs]
    if not ids:
        return [], np.zeros((0, 0), np.float32)
    return ids, l2_normalise(embedded.embeddings)


def _front_bytes(detector: EmbeddingModel, crop: int) -> bytes:
    model = build_front(detector.model, detector.manifest, min_confidence=MIN_DETECTION_CONFIDENCE, crop=crop)
    return model.SerializeToString(deterministic=True)
