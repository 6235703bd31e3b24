"""The result of embedding a library: one row per usable identifier, and the skipped ones."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engines.interface import IdentifierRef

__all__ = ["EmbeddedLibrary", "RowBuffer", "Skipped"]


@dataclass(frozen=True, slots=True)
class Skipped:
    """An identifier left out of training, and why."""

    ref: IdentifierRef
    reason: str  # "fetch-failed" | "corrupt" | "too-large" | "too-small" | "blurry" | "no-face"
    detail: str

    def as_json(self) -> dict[str, str]:
        """The form reported in an artifact's ``jsondata.skipped``."""
        return {"identifierId": self.ref.identifier_id, "reason": self.reason, "detail": self.detail}


@dataclass(slots=True)
class EmbeddedLibrary:
    """The library as embeddings: row ``i`` of ``embeddings`` belongs to ``refs[i]``, in paging order."""

    embeddings: np.ndarray  # [R, D] float32, raw backbone output
    refs: list[IdentifierRef]
    skipped: list[Skipped]
    timings: dict[str, float]  # fetch/decode/inference: busy seconds summed over concurrent calls; total: wall
    cached: int  # rows served by the embedding cache
    inferred: int  # images run through the backbone
    extras: dict[str, dict[str, Any]] = field(default_factory=dict)  # a custom decoder's notes, by identifier ID
    stored: int = 0  # rows read from the identifiers' stored vectors (part of ``cached``)


class RowBuffer:
    """A growable [R, D] float32 buffer with the paging sequence number of each row."""

    def __init__(self) -> None:
        self._vectors = np.empty((0, 0), np.float32)
        self._seqs: list[int] = []
        self.refs: list[IdentifierRef] = []

    def add(self, seq: int, ref: IdentifierRef, vector: np.ndarray) -> None:
        """Append one row; ``seq`` is its position in paging order."""
        n = len(self._seqs)
        if n == self._vectors.shape[0]:
            grown = np.empty((max(256, 2 * n), vector.shape[-1]), np.float32)
            if n:
                grown[:n] = self._vectors[:n]
            self._vectors = grown
        self._vectors[n] = vector
        self._seqs.append(seq)
        self.refs.append(ref)

    def in_paging_order(self) -> tuple[np.ndarray, list[IdentifierRef]]:
        """The rows [R, D] and their refs, sorted by paging sequence."""
        # Stages finish out of order; sorting makes training independent of fetch timing.
        order = np.argsort(np.asarray(self._seqs, np.int64), kind="stable")
        vectors = self._vectors[: len(self._seqs)][order] if self._seqs else np.empty((0, 0), np.float32)
        return np.ascontiguousarray(vectors, np.float32), [self.refs[i] for i in order]
