"""Whole-image embeddings with a registered model, outside training: ingest batches and search queries.

The backbone is the one training composes (engines.model_backbone: the model's preprocessing baked in
front of it), so a vector made here equals the one a training run would make for the same image, and
training can use it instead of fetching and embedding the image again. No quality gates apply: ingest
stores the vector of everything that decodes (training's cached path has never re-applied them either).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Sequence
from dataclasses import dataclass

from typing import Any

import numpy as np

from engines.backbone import BackboneSpec
from engines.decode import DEFAULT_MAX_PIXELS, decode_batch, decode_batch_timed
from engines.interface import EmbeddingModel
from engines.model_backbone import model_backbone
from engines.runtime import Runner, get_runner

__all__ = ["Embedder", "embedder"]


@dataclass(frozen=True, slots=True)
class Embedder:
    """A registered model's composed backbone and the session that runs it."""

    spec: BackboneSpec
    runner: Runner

    @property
    def dimension(self) -> int:
        return self.spec.dim

    async def decode(
        self, blobs: Sequence[bytes], pool: concurrent.futures.Executor | None, measure: bool = False,
    ) -> list[tuple[Any, ...]]:
        """Each blob as the backbone's input, or why it cannot be (``{"reason", "detail"}``).

        ``pool``: the worker's process pool (decoding is CPU- and GIL-bound); None decodes in a thread,
        for the one image of a search request. ``measure``: each result also has the image's size
        (engines.decode Measures), which the quality gates of a later training read instead of the bytes.
        """
        loop = asyncio.get_running_loop()
        if pool is None:
            return await asyncio.to_thread(
                decode_batch, list(blobs), self.spec.input_size, self.spec.channels, 0, 0.0, DEFAULT_MAX_PIXELS, measure)
        results, _ = await loop.run_in_executor(
            pool, decode_batch_timed, list(blobs), self.spec.input_size, self.spec.channels, 0, 0.0, DEFAULT_MAX_PIXELS,
            measure,
        )
        return results

    async def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """[N, D] float32 for decoded images (one backbone call)."""
        if not images:
            return np.zeros((0, self.dimension), np.float32)
        out = await asyncio.to_thread(self.runner.run, np.stack(images))
        return np.asarray(out, np.float32).reshape(len(images), -1)


async def embedder(model: EmbeddingModel, execution_provider: str) -> Embedder:
    """The Embedder of a registered version (composed once per process, sessions cached by digest)."""
    spec = await asyncio.to_thread(model_backbone, model)
    runner = await asyncio.to_thread(get_runner, spec.model, execution_provider)
    return Embedder(spec, runner)
