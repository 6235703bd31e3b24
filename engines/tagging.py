"""Recognition with a registered ``auto_tagging`` model: no training, its own labels and confidences.

The model runs behind the same baked-in preprocessing as a backbone (engines.model_backbone), so the
image path is the one training uses: decode (no quality gates), uint8 NHWC at the model's size, one
graph. A manifest declaring ``output.kind: logits`` gets a softmax; ``probabilities`` are used as given.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engines.decode import decode_batch
from engines.interface import EmbeddingModel, EngineError
from engines.model_backbone import compose_model
from engines.runtime import get_runner

__all__ = ["Tag", "tag_images"]


@dataclass(frozen=True, slots=True)
class Tag:
    """One label of the model for an image, with its confidence in 0..1."""

    label: str
    score: float


_COMPOSED: dict[tuple[str, str], bytes] = {}


def _composed(model: EmbeddingModel) -> bytes:
    key = (model.sha256, json.dumps(model.manifest, sort_keys=True))
    data = _COMPOSED.get(key)
    if data is None:
        try:
            data = compose_model(model.model, model.manifest, name=model.ref).SerializeToString(deterministic=True)
        except ValueError as exc:
            raise EngineError(f"model {model.ref} cannot be run: {exc}") from None
        if len(_COMPOSED) >= 8:
            _COMPOSED.pop(next(iter(_COMPOSED)))
        _COMPOSED[key] = data
    return data


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _run(model: EmbeddingModel, batch: np.ndarray, provider: str) -> np.ndarray:
    runner = get_runner(_composed(model), provider)
    scores = np.asarray(runner.run(batch), np.float64)
    if (model.manifest.get("output") or {}).get("kind", "logits") == "logits":
        scores = _softmax(scores)
    return scores


async def tag_images(
    model: EmbeddingModel, images: Sequence[bytes], *, top_k: int, threshold: float | None, execution_provider: str
) -> list[list[Tag]]:
    """The ``top_k`` best labels per image, best first, those under ``threshold`` (when given) left out.

    Raises EngineError naming the first image that cannot be decoded.
    """
    labels = list(model.manifest.get("labels") or [])
    if not images:
        return []
    spec = model.manifest["input"]
    decoded = await asyncio.to_thread(decode_batch, list(images), int(spec["height"]), int(spec.get("channels", 3)), 0, 0.0)
    for index, (_, skip) in enumerate(decoded):
        if skip is not None:
            raise EngineError(f"image {index} cannot be used ({skip['reason']}): {skip['detail']}")
    batch = np.stack([array for array, _ in decoded])
    scores = await asyncio.to_thread(_run, model, batch, execution_provider)
    if scores.shape[1] != len(labels):
        raise EngineError(f"model {model.ref} gives {scores.shape[1]} scores for {len(labels)} labels")
    results = []
    for row in scores:
        order = np.argsort(-row, kind="stable")[:top_k]
        results.append([Tag(labels[i], float(row[i])) for i in order if threshold is None or row[i] >= threshold])
    return results
