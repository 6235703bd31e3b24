"""The TrainingContext engines receive from the worker: library pages, byte fetches, progress, the caches.

Engines never see the pool or the S3 client; everything they read goes through here, with the task's
organization applied to every query. One context serves a training (the library's pages, :class:`LibraryContext`)
and the labeling loop's embeddings (a fixed selection, gateway.worker.selection); both share the content cache
(:class:`EmbeddingCache`) and the identifiers' stored vectors (:class:`IdentifierVectors`).
"""

from __future__ import annotations

import abc
import concurrent.futures
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any
from uuid import UUID

import asyncpg
import numpy as np

from engines.interface import EmbeddingModel, FetchError, IdentifierRef, Measures
from engines.model_backbone import backbone_digest
from gateway.observability.tracing import PhaseClock, TimedExecutor
from gateway.resources import Resources
from gateway.services.ingest.remote_files import FetchRefused, fetch_bytes
from storage.queries import content_measures as measures_q
from storage.queries import embeddings as embedding_q
from storage.queries import identifiers as identifier_q
from storage.queries import training_vectors as training_vectors_q
from storage.queries import vectors as vector_q
from storage.rows import Task

_FIRST = (UUID(int=0), UUID(int=0))
CURSOR_PREFETCH = 2000  # rows (with their vectors) per round trip of the training cursor


class EmbeddingCache:
    """engines.interface.EmbeddingCache for one organization: vectors by (backbone digest, content sha256) and
    the decode's measures by content sha256, in PostgreSQL."""

    def __init__(self, pool: asyncpg.Pool, org_id: UUID) -> None:
        self._pool = pool
        self._org_id = org_id

    async def cached_embeddings(self, backbone_digest: str, sha256s: Sequence[str]) -> dict[str, np.ndarray]:
        if not sha256s:
            return {}
        async with self._pool.acquire() as conn:
            found = await embedding_q.get_many(conn, self._org_id, backbone_digest, sha256s)
        return {h: np.frombuffer(v, dtype=np.float32) for h, v in found.items()}

    async def store_embeddings(self, backbone_digest: str, vectors: Mapping[str, np.ndarray]) -> None:
        if not vectors:
            return
        packed = {h: np.asarray(v, dtype=np.float32).tobytes() for h, v in vectors.items()}
        async with self._pool.acquire() as conn:
            await embedding_q.put_many(conn, self._org_id, backbone_digest, packed)

    async def content_measures(self, sha256s: Sequence[str]) -> dict[str, Measures]:
        async with self._pool.acquire() as conn:
            return await measures_q.get_many(conn, self._org_id, sha256s)

    async def store_content_measures(self, measures: Mapping[str, Measures]) -> None:
        async with self._pool.acquire() as conn:
            await measures_q.put_many(conn, self._org_id, measures)


class IdentifierVectors:
    """engines.interface.StoredVectors over identifier_embeddings: one registered model version's vectors.

    The context's pages put the vectors they read here (:meth:`add`); the pipeline takes each once, and what it
    computes is stored back as the identifiers' own, so the next run reads it.
    """

    def __init__(self, pool: asyncpg.Pool, org_id: UUID, model: EmbeddingModel) -> None:
        self._pool = pool
        self._org_id = org_id
        self.version_id = UUID(model.version_id)
        self.digest = backbone_digest(model.model, model.manifest)
        self._found: dict[str, np.ndarray] = {}
        self.used = 0  # stored vectors taken instead of fetching and embedding

    def add(self, identifier_id: str, vector: np.ndarray) -> None:
        self._found[identifier_id] = vector

    def take(self, ref: IdentifierRef) -> np.ndarray | None:
        vector = self._found.pop(ref.identifier_id, None)
        self.used += vector is not None
        return vector

    async def store(self, vectors: Mapping[str, np.ndarray]) -> None:
        if not vectors:
            return
        ids = [UUID(i) for i in vectors]
        matrix = np.stack([np.asarray(v, np.float32).reshape(-1) for v in vectors.values()])
        async with self._pool.acquire() as conn, conn.transaction():
            await vector_q.store_computed(conn, self._org_id, self.version_id, matrix.shape[1], ids, matrix)
            await vector_q.want_index(conn, self._org_id, self.version_id, matrix.shape[1])


class WorkerContext(abc.ABC):
    """engines.interface.TrainingContext as the worker implements it; subclasses say which identifiers it pages.

    ``fraction`` and ``message`` are what the task's heartbeats report; ``fetches``, ``inferences`` and
    ``stored_read`` what its output counts.
    """

    def __init__(
        self,
        res: Resources,
        org_id: UUID,
        *,
        config: Mapping[str, Any],
        decode_pool: concurrent.futures.Executor,
        total_identifiers: int | None,
        embedding_model: EmbeddingModel | None = None,
        detector_model: EmbeddingModel | None = None,
        library_id: str = "",
        library_version: int = 0,
        model_id: str = "",
    ) -> None:
        self._res = res
        self._org_id = org_id
        self.library_id = library_id
        self.library_version = library_version
        self.model_id = model_id
        self.config = config
        self.execution_provider = res.settings.onnx_provider
        self.decode_pool = decode_pool
        self.total_identifiers = total_identifiers
        self.embedding_model = embedding_model
        self.candidate_models: Sequence[EmbeddingModel] = ()  # other backbones to compare, set by the training task
        self.detector_model = detector_model
        self.cache = EmbeddingCache(res.pool, org_id)
        self.stored = (IdentifierVectors(res.pool, org_id, embedding_model)
                       if embedding_model is not None and embedding_model.version_id else None)
        self._sources: dict[str, tuple[str | None, str | None]] = {}  # identifier id -> (storage key, URL)
        self.fraction = 0.0
        self.message: str | None = None
        self.inferences = 0
        self.fetches = 0  # identifier contents read (S3 GETs or URL fetches)
        self.phases: PhaseClock | None = None  # when fetches and decodes ran, while traces are on

    def time_phases(self) -> PhaseClock:
        """Record when fetches and decodes run from now on (for the training's trace)."""
        self.phases = PhaseClock()
        self.decode_pool = TimedExecutor(self.decode_pool, self.phases, "decode")
        return self.phases

    @property
    def stored_read(self) -> int:
        """Stored vectors used instead of fetching and embedding."""
        return self.stored.used if self.stored is not None else 0

    @abc.abstractmethod
    def pages(self, page_size: int) -> AsyncIterator[list[IdentifierRef]]:
        """The identifiers, a page at a time; each page's contents are recorded in ``_sources`` for fetch."""

    async def fetch(self, ref: IdentifierRef) -> bytes:
        # S3 errors are not FetchError: they mean "try the task again later", not "skip this image".
        if self.phases is not None:
            with self.phases.timed("fetch"):
                return await self._fetch(ref)
        return await self._fetch(ref)

    async def _fetch(self, ref: IdentifierRef) -> bytes:
        storage_key, url = self._sources.pop(ref.identifier_id, (None, None))
        self.fetches += 1
        if storage_key:
            return await self._res.blobs.get_bytes(storage_key, max_bytes=self._res.settings.fetch_max_bytes)
        if url:
            try:
                async with self._res.fetch_limiter:
                    data, _ = await fetch_bytes(self._res.http, url, self._res.fetch_policy)
                return data
            except FetchRefused as exc:
                raise FetchError(str(exc)) from exc
        raise FetchError(f"identifier {ref.identifier_id} has no content")

    async def progress(self, fraction: float, message: str | None = None) -> None:
        self.fraction = min(1.0, max(0.0, float(fraction)))
        if message is not None:
            self.message = message[:500]

    def count_inference(self, n: int) -> None:
        self.inferences += int(n)


def _split_value(jsondata: Any, key: str | None) -> str | None:
    """An identifier's filter-split mark (``jsondata[splitKey]``), when one is asked for and is a string."""
    if not key or not isinstance(jsondata, dict):
        return None
    value = jsondata.get(key)
    return value if isinstance(value, str) else None


class LibraryContext(WorkerContext):
    """A training's context: the library's identifiers of the types both the library and the engine take."""

    def __init__(
        self,
        res: Resources,
        task: Task,
        *,
        library_type_ids: Sequence[str],
        engine_type_ids: Sequence[str],
        library_version: int,
        config: Mapping[str, Any],
        decode_pool: concurrent.futures.Executor,
        total_identifiers: int | None,
        embedding_model: EmbeddingModel | None = None,
        detector_model: EmbeddingModel | None = None,
    ) -> None:
        payload = task.payload
        super().__init__(
            res, task.org_id, config=config, decode_pool=decode_pool, total_identifiers=total_identifiers,
            embedding_model=embedding_model, detector_model=detector_model, library_id=str(payload["libraryId"]),
            library_version=library_version, model_id=str(payload["libraryEngineModelId"]),
        )
        self._types = [t for t in engine_type_ids if t in library_type_ids]

    async def pages(self, page_size: int) -> AsyncIterator[list[IdentifierRef]]:
        if self.stored is not None:
            async for page in self._pages_with_vectors(self.stored, page_size):
                yield page
            return
        after = _FIRST
        library_id = UUID(self.library_id)
        while True:
            async with self._res.pool.acquire() as conn:
                rows = await identifier_q.for_training(conn, self._org_id, library_id, self._types, after, page_size)
            if not rows:
                return
            refs = []
            split_key = self.config.get("splitKey") or None
            for row, entity_name in rows:
                self._sources[str(row.id)] = (row.storage_key, row.reference_url)
                refs.append(
                    IdentifierRef(
                        identifier_id=str(row.id),
                        entity_id=str(row.entity_id),
                        entity_name=entity_name,
                        identifier_type_id=row.identifier_type_id,
                        content_type=row.content_type,
                        content_sha256=row.content_sha256,
                        split=_split_value(row.jsondata, split_key),
                        face_box=row.jsondata.get("faceBox") if isinstance(row.jsondata, dict) else None,
                    )
                )
            after = (rows[-1][0].entity_id, rows[-1][0].id)
            yield refs
            if len(rows) < page_size:
                return

    async def read_stored_vectors(self, sink: Callable[[np.ndarray], Awaitable[None]]) -> tuple[np.ndarray, list[str]] | None:
        """The library's training identifiers and their stored vectors in bulk, for engines.gallery_stream:
        ``sink`` gets blocks of storage.queries.training_vectors.row_dtype rows; returns the library's entities
        (IDs as 16 bytes, names) in ranking order, or None (and no rows) where an identifier has no stored
        vector. One read-only REPEATABLE READ transaction: the rows and the entities are one view."""
        if self.stored is None:
            return None
        library_id, version_id = UUID(self.library_id), self.stored.version_id
        async with self._res.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            if await training_vectors_q.without_vector(conn, self._org_id, library_id, self._types, version_id):
                return None
            entities = await training_vectors_q.entities(conn, self._org_id, library_id)
            self.stored.used += await training_vectors_q.copy_vectors(
                conn, self._org_id, library_id, self._types, version_id, sink)
        return entities

    async def _pages_with_vectors(self, stored: IdentifierVectors, page_size: int) -> AsyncIterator[list[IdentifierRef]]:
        """The library in one server-side cursor, stored vectors alongside (binary, ``CURSOR_PREFETCH`` rows a
        round trip); only the current page's rows are held here, so memory stays flat. The read-only
        REPEATABLE READ transaction also gives the whole training one consistent view of the library."""
        library_id = UUID(self.library_id)
        async with self._res.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            split_key = self.config.get("splitKey") or None
            cursor = identifier_q.for_training_with_vectors(
                conn, self._org_id, library_id, self._types, stored.version_id, max(page_size, CURSOR_PREFETCH),
                split_key)
            refs: list[IdentifierRef] = []
            async for r in cursor:
                # Straight from the record: a whole Identifier row per identifier was a third of this loop.
                iid = str(r["id"])
                if r["stored_embedding"] is not None:
                    stored.add(iid, vector_q.decode(r["stored_embedding"]))
                self._sources[iid] = (r["storage_key"], r["reference_url"])
                refs.append(IdentifierRef(
                    identifier_id=iid, entity_id=str(r["entity_id"]), entity_name=r["entity_name"],
                    identifier_type_id=r["identifier_type_id"], content_type=r["content_type"],
                    content_sha256=r["content_sha256"], split=r["split_mark"] if isinstance(r["split_mark"], str) else None,
                    face_box=r["face_box"],
                ))
                if len(refs) == page_size:
                    yield refs
                    refs = []
            if refs:
                yield refs
