"""Which backbone a training embeds with, when the config names none: the one that separates this library best.

A model pretrained on photos (ImageNet) is a strong default for photos and a weak one for glyph-like images,
where the built-in pixel projection does better (digits: 0.98 against 0.83 top-1). So when ``config.modelId`` is
empty and more than one backbone could embed the library, training first measures each candidate on the same
held-out split of a capped sample of the library and keeps the best:

* candidates: the registered models the worker hands over (``ctx.candidate_models``, the default
  ``ctx.embedding_model`` among them) and the built-in pixel projection;
* the sample: at most ``SAMPLE_CAP`` identifiers, ``PER_ENTITY`` per entity, picked by a hash of the content (the
  same library gives the same sample);
* the held-out split: each entity's sampled rows dealt over ``FOLDS`` folds; each fold in turn is held out and
  matched against the others (so every row of an entity with two or more is evaluated once, and a small sample
  still measures enough rows to tell the candidates apart);
* the measure: top-1 nearest neighbour (cosine) of the held-out rows against the rest, what the gallery does;
  only rows every candidate embedded count, so each is measured on the same rows;
* the winner: the highest held-out top-1; a tie keeps the default (the model the worker resolved), then the
  candidates' order.

The sample is embedded through the training pipeline, so the embedding cache and the identifiers' stored vectors
serve it as they serve a training: a retrain compares without fetching or inferring again.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from engines.backbone import BackboneSpec, default_backbone
from engines.evaluation import against_gallery, l2_normalise
from engines.interface import (
    EmbeddingModel,
    EngineError,
    IdentifierRef,
    TrainingContext,
)
from engines.model_backbone import PIXEL_PROJECTION, model_backbone
from engines.pipeline import embed_library, pipeline_kwargs
from engines.runtime import throughput_runner

__all__ = ["PER_ENTITY", "SAMPLE_CAP", "Candidate", "ChosenBackbone", "choose_backbone"]

SAMPLE_CAP = 400  # identifiers embedded per candidate at most: the comparison's cost is bounded by this
PER_ENTITY = 40  # of one entity at most, so large entities do not crowd small ones out
SAMPLE_BYTES = 256 * 2**20  # the sample's fetched bytes kept for the next candidates at most
FOLDS = 4  # each sampled row is held out once, against the other three quarters


@dataclass(frozen=True, slots=True)
class Candidate:
    """A backbone the comparison may pick: a registered model, or the pixel projection (``model`` None)."""

    name: str
    model: EmbeddingModel | None

    def spec(self, image_size: int) -> BackboneSpec:
        if self.model is None:
            return default_backbone(image_size, 1)
        try:
            return model_backbone(self.model)
        except (ValueError, onnx.checker.ValidationError) as exc:
            raise EngineError(f"model {self.model.ref} cannot be used as a backbone: {exc}") from None


class ChosenBackbone:
    """The training context with the chosen model as its ``embedding_model``; everything else is the worker's.

    ``comparison`` is what the evaluation reports (None: nothing was compared)."""

    def __init__(self, ctx: TrainingContext, model: EmbeddingModel | None, comparison: dict[str, Any] | None) -> None:
        self._ctx = ctx
        self.embedding_model = model
        self.comparison = comparison

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)

    def pages(self, page_size: int) -> AsyncIterator[list[IdentifierRef]]:
        return self._ctx.pages(page_size)

    async def fetch(self, ref: IdentifierRef) -> bytes:
        return await self._ctx.fetch(ref)

    async def progress(self, fraction: float, message: str | None = None) -> None:
        await self._ctx.progress(fraction, message)

    def count_inference(self, n: int) -> None:
        self._ctx.count_inference(n)


def candidates(ctx: TrainingContext) -> list[Candidate]:
    """The backbones to compare: the resolved default first, the other registered ones, the pixel projection."""
    found: list[Candidate] = []
    seen: set[str] = set()
    for model in (ctx.embedding_model, *ctx.candidate_models):
        if model is not None and (model.sha256 or model.version_id) not in seen:
            seen.add(model.sha256 or model.version_id)
            found.append(Candidate(model.ref, model))
    found.append(Candidate(PIXEL_PROJECTION, None))
    return found


async def choose_backbone(ctx: TrainingContext, backbone: BackboneSpec | None, *, compare: bool = True) -> ChosenBackbone:
    """``ctx`` with the backbone that scores best on a held-out split of a sample of its library.

    Nothing is compared (the context's model is kept, ``comparison`` None) when the engine was given a backbone,
    when ``config.modelId`` names one (a user's choice wins; the worker then hands no candidates), or when only
    one candidate is left; ``compare`` False keeps it too (an engine whose answers need the default model's stored
    vectors).
    """
    config = ctx.config
    found = candidates(ctx)
    if not compare or backbone is not None or config.get("modelId") or len(found) < 2:
        return ChosenBackbone(ctx, ctx.embedding_model, None)
    sample = await _sample(ctx)
    vectors: list[dict[str, np.ndarray]] = []
    fetched = _Fetched()
    for candidate in found:
        await ctx.progress(0.0, f"comparing embedding models on {len(sample)} identifiers: {candidate.name}")
        vectors.append(await _embed(ctx, candidate, sample, fetched, config))
    del fetched
    # In an order that follows the content, not the identifiers' UUIDs: the same library gives the same split.
    common = sorted((r for r in sample if all(r.identifier_id in v for v in vectors)),
                    key=lambda r: (r.entity_name or "", r.entity_id, r.content_sha256 or "", r.identifier_id))
    labels, folds = _folds(common, int(config.get("seed") or 0))
    scores = [
        _held_out_top1(l2_normalise(np.stack([by_id[r.identifier_id] for r in common])), labels, folds) if common else None
        for by_id in vectors
    ]
    best = max(range(len(found)), key=lambda i: (scores[i] if scores[i] is not None else -1.0, -i))
    winner = found[best]
    comparison = {
        "method": "top-1 nearest neighbour (cosine) of a held-out split of a sample of the library, per backbone",
        "sampled": len(sample),
        "compared": len(common),
        "folds": FOLDS,
        # One fold's split (the others are alike): held out, and the gallery it is matched against.
        "splits": {"training": len(common) - int((folds == 0).sum()), "validation": 0, "test": int((folds == 0).sum())},
        "evaluated": int((folds >= 0).sum()),
        "candidates": [
            {"model": c.name, "modelVersionId": c.model.version_id if c.model else None, "top1": s,
             "embedded": len(v), "chosen": i == best}
            for i, (c, s, v) in enumerate(zip(found, scores, vectors, strict=True))
        ],
        "chosen": winner.name,
        "reason": _reason(found, scores, best),
    }
    return ChosenBackbone(ctx, winner.model, comparison)


def _reason(found: Sequence[Candidate], scores: Sequence[float | None], best: int) -> str:
    if scores[best] is None:
        return (f"no entity had two sampled identifiers to hold one out, so nothing could be measured: kept the "
                f"default, {found[best].name}")
    others = ", ".join(f"{c.name} {_fmt(s)}" for i, (c, s) in enumerate(zip(found, scores, strict=True)) if i != best)
    tie = any(s == scores[best] for i, s in enumerate(scores) if i != best)
    return (f"{found[best].name} recognised {_fmt(scores[best])} of the held-out identifiers"
            + (f", as well as the best of the others ({others}): the earlier candidate is kept" if tie
               else f", more than {others}"))


def _fmt(score: float | None) -> str:
    return "not measured" if score is None else f"{score:.3f}"


def _key(ref: IdentifierRef) -> bytes:
    return hashlib.sha256(f"{ref.content_sha256 or ref.identifier_id}/{ref.entity_name}".encode()).digest()


async def _sample(ctx: TrainingContext) -> list[IdentifierRef]:
    """A deterministic sample of the library: about ``SAMPLE_CAP`` refs, ``PER_ENTITY`` per entity at most.

    A ref is drawn when its content hash falls under the rate that brings the library's size to the cap, so the
    sample spreads over every page without holding the library's refs; the caps then keep the lowest hashes, so
    the same contents give the same sample whatever order the pages come in.
    """
    total = ctx.total_identifiers or SAMPLE_CAP
    bar = int(min(1.0, SAMPLE_CAP / max(1, total)) * 2**32)
    drawn: dict[str, list[tuple[bytes, IdentifierRef]]] = {}
    async for page in ctx.pages(int(ctx.config.get("pageSize") or 100)):
        for ref in page:
            key = _key(ref)
            if int.from_bytes(key[:4], "big") < bar:
                drawn.setdefault(ref.entity_id, []).append((key, ref))
    kept = sorted((pair for rows in drawn.values() for pair in sorted(rows, key=lambda p: p[0])[:PER_ENTITY]),
                  key=lambda p: p[0])
    return [ref for _, ref in kept[: SAMPLE_CAP + SAMPLE_CAP // 4]]  # the rate is an expectation: bound the unlucky


class _Fetched:
    """The sample's bytes as the first candidate fetched them, for the next ones: a context hands an identifier's
    bytes once per paging (the worker's forgets where they are once read). Up to ``SAMPLE_BYTES``; past it a later
    candidate finds no bytes, skips the identifier, and the comparison counts only rows every candidate embedded."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.size = 0


class _SampleContext(ChosenBackbone):
    """The context over the sample alone, embedding with one candidate; progress keeps the heartbeat only."""

    def __init__(self, ctx: TrainingContext, model: EmbeddingModel | None, refs: list[IdentifierRef],
                 fetched: _Fetched) -> None:
        super().__init__(ctx, model, None)
        self._refs = refs
        self._fetched = fetched
        self.total_identifiers = len(refs)

    async def fetch(self, ref: IdentifierRef) -> bytes:
        kept = self._fetched.data.get(ref.identifier_id)
        if kept is not None:
            return kept
        data = await self._ctx.fetch(ref)
        if self._fetched.size + len(data) <= SAMPLE_BYTES:
            self._fetched.data[ref.identifier_id] = data
            self._fetched.size += len(data)
        return data

    async def pages(self, page_size: int) -> AsyncIterator[list[IdentifierRef]]:
        for start in range(0, len(self._refs), page_size):
            yield self._refs[start : start + page_size]

    async def progress(self, fraction: float, message: str | None = None) -> None:
        await self._ctx.progress(0.0, f"comparing embedding models: {message}" if message else None)


async def _embed(ctx: TrainingContext, candidate: Candidate, sample: list[IdentifierRef], fetched: _Fetched,
                 config: Any) -> dict[str, np.ndarray]:
    """The sample's vectors by one candidate, by identifier ID (skipped identifiers are absent)."""
    spec = await asyncio.to_thread(candidate.spec, int(config.get("imageSize") or 32))
    runner, parallel = await asyncio.to_thread(throughput_runner, spec.model, ctx.execution_provider)
    embedded = await embed_library(_SampleContext(ctx, candidate.model, sample, fetched), spec, runner, parallel=parallel,
                                   **pipeline_kwargs(config))
    return {r.identifier_id: embedded.embeddings[i] for i, r in enumerate(embedded.refs)}


def _folds(refs: Sequence[IdentifierRef], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(entity label per ref, fold per ref): each entity's rows dealt over ``FOLDS`` folds in a seeded order, so
    every fold holds out at most a quarter of an entity and keeps the rest in the gallery; an entity with a single
    row is never held out (fold -1: always in the gallery, a distractor)."""
    index: dict[str, int] = {}
    labels = np.fromiter((index.setdefault(r.entity_id, len(index)) for r in refs), np.int64, len(refs))
    folds = np.full(len(refs), -1, np.int64)
    rng = np.random.default_rng(seed)
    for label in range(len(index)):
        rows = np.flatnonzero(labels == label)
        if rows.size >= 2:
            folds[rng.permutation(rows)] = np.arange(rows.size) % FOLDS
    return labels, folds


def _held_out_top1(x: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> float | None:
    """Top-1 over every held-out row, each fold's held-out rows against the other rows."""
    right = evaluated = 0
    for fold in range(FOLDS):
        held = folds == fold
        if held.any():
            result = against_gallery(x[~held], labels[~held], x[held], labels[held])
            right += int(result.correct.sum())
            evaluated += int(held.sum())
    return right / evaluated if evaluated else None
