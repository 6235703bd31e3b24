"""An in-memory TrainingContext: a test double for the worker, holding identifiers as bytes."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engines.interface import (
    EmbeddingModel,
    FetchError,
    IdentifierRef,
    Measures,
    StoredVectors,
)
from sampledata.library import Entry


@dataclass
class EmbeddingStore:
    """The embedding cache (engines.interface.EmbeddingCache), as the worker keeps it: vectors by (backbone
    digest, content sha256), decode measures by content sha256."""

    vectors: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    measures: dict[str, Measures] = field(default_factory=dict)

    async def cached_embeddings(self, backbone_digest: str, sha256s: Sequence[str]) -> dict[str, np.ndarray]:
        found = {s: self.vectors.get((backbone_digest, s)) for s in sha256s}
        return {s: v.copy() for s, v in found.items() if v is not None}

    async def store_embeddings(self, backbone_digest: str, vectors: Mapping[str, np.ndarray]) -> None:
        for sha, vector in vectors.items():
            self.vectors[(backbone_digest, sha)] = np.array(vector, np.float32)

    async def content_measures(self, sha256s: Sequence[str]) -> dict[str, Measures]:
        return {s: self.measures[s] for s in sha256s if s in self.measures}

    async def store_content_measures(self, measures: Mapping[str, Measures]) -> None:
        self.measures.update(measures)


class MemoryContext:
    """A TrainingContext over a list of entries; records progress, fetches and inference counts."""

    def __init__(
        self,
        entries: Sequence[Entry],
        *,
        config: Mapping[str, Any],
        decode_pool: concurrent.futures.Executor,
        store: EmbeddingStore | None = None,
        execution_provider: str = "cpu",
        fetch_delay: float = 0.0,
        failing: frozenset[str] = frozenset(),
        library_id: str = "library-1",
    ) -> None:
        self.entries = list(entries)
        self.config = dict(config)
        self.decode_pool = decode_pool
        self.store = store if store is not None else EmbeddingStore()
        self.cache = self.store
        self.stored: StoredVectors | None = None
        self.embedding_model: EmbeddingModel | None = None
        self.candidate_models: Sequence[EmbeddingModel] = ()
        self.detector_model: EmbeddingModel | None = None
        self.execution_provider = execution_provider
        self.fetch_delay = fetch_delay
        self.failing = failing
        self.library_id = library_id
        self.library_version = 1
        self.model_id = "model-1"
        self.total_identifiers: int | None = len(self.entries)
        self.inferred = 0
        self.fetched = 0
        self.progress_log: list[tuple[float, str | None]] = []
        self._by_id = {e.identifier_id: e for e in self.entries}

    async def pages(self, page_size: int) -> AsyncIterator[list[IdentifierRef]]:
        for start in range(0, len(self.entries), page_size):
            yield [self._ref(e) for e in self.entries[start : start + page_size]]

    def _ref(self, e: Entry) -> IdentifierRef:
        sha = None if e.by_reference else hashlib.sha256(e.data).hexdigest()
        return IdentifierRef(e.identifier_id, e.entity_id, e.entity_name, e.identifier_type_id, "image/png", sha)

    async def fetch(self, ref: IdentifierRef) -> bytes:
        if self.fetch_delay:
            await asyncio.sleep(self.fetch_delay)
        if ref.identifier_id in self.failing:
            raise FetchError(f"GET {ref.identifier_id}: 404 Not Found")
        self.fetched += 1
        return self._by_id[ref.identifier_id].data

    async def progress(self, fraction: float, message: str | None = None) -> None:
        assert 0.0 <= fraction <= 1.0
        self.progress_log.append((fraction, message))

    def count_inference(self, n: int) -> None:
        self.inferred += n
