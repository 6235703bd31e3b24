"""What the built-in engines share while training: embedding the library and the common report."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np

from engines.artifact import CONTENT_TYPE
from engines.backbone import BackboneSpec, default_backbone
from engines.evaluation import l2_normalise
from engines.interface import EngineInfo, NothingToTrain, TrainingContext
from engines.pipeline import EmbeddedLibrary, embed_library, pipeline_kwargs
from engines.runtime import CUDA, Runner, get_runner

__all__ = ["Prepared", "base_report", "prepare"]


@dataclass(slots=True)
class Prepared:
    """The embedded library, grouped by entity, ready for a head to be fitted."""

    spec: BackboneSpec
    runner: Runner
    embedded: EmbeddedLibrary
    vectors: np.ndarray  # [R, D] L2-normalised, as the artifact heads see them
    labels: np.ndarray  # [R] entity index
    entity_ids: list[str]  # by index, in order of first appearance
    entity_names: list[str]


async def prepare(ctx: TrainingContext, backbone: BackboneSpec | None) -> Prepared:
    """Embed the context's library with ``backbone`` (default: built-in at config ``imageSize``).

    Raises NothingToTrain when no identifier passed the fetch and quality gates.
    """
    config = ctx.config
    spec = backbone or default_backbone(config["imageSize"], 1)
    runner = await asyncio.to_thread(get_runner, spec.model, ctx.execution_provider)
    embed_spec = spec
    if backbone is None and runner.provider == CUDA:
        # On the GPU the library is embedded in half precision (the heavy part); the artifact keeps
        # the float32 backbone so it runs anywhere, CPUs included.
        embed_spec = default_backbone(config["imageSize"], 1, float16=True)
        runner = await asyncio.to_thread(get_runner, embed_spec.model, ctx.execution_provider)
    embedded = await embed_library(ctx, embed_spec, runner, **pipeline_kwargs(config))
    if not embedded.refs:
        raise NothingToTrain(_nothing_left(embedded))
    index: dict[str, int] = {}
    names: list[str] = []
    for ref in embedded.refs:
        if ref.entity_id not in index:
            index[ref.entity_id] = len(index)
            names.append(ref.entity_name)
    labels = np.fromiter((index[r.entity_id] for r in embedded.refs), np.int64, len(embedded.refs))
    return Prepared(spec, runner, embedded, l2_normalise(embedded.embeddings), labels, list(index), names)


def _nothing_left(embedded: EmbeddedLibrary) -> str:
    """Why nothing is left to train on: the skip count, then each reason's count and one example detail.

    The failed model's jsondata holds only this message, so it has to say what went wrong.
    """
    message = f"no identifier passed the quality gates ({len(embedded.skipped)} skipped)"
    by_reason: dict[str, list[str]] = {}
    for skip in embedded.skipped:
        by_reason.setdefault(skip.reason, []).append(skip.detail)
    if by_reason:
        message += ": " + "; ".join(
            f"{len(details)} {reason} (e.g. {details[0]})" if details[0] else f"{len(details)} {reason}"
            for reason, details in sorted(by_reason.items(), key=lambda item: (-len(item[1]), item[0]))
        )
    return message


def base_report(info: EngineInfo, prepared: Prepared, ctx: TrainingContext) -> dict[str, Any]:
    """The ``jsondata`` keys every built-in engine reports."""
    embedded = prepared.embedded
    report: dict[str, Any] = {
        "engine": info.id,
        "engineVersion": info.version,
        "contentType": CONTENT_TYPE,
        "libraryId": ctx.library_id,
        "libraryVersion": ctx.library_version,
        "backbone": {"name": prepared.spec.name, "digest": prepared.spec.digest},
        "provider": prepared.runner.provider,
        "identifiers": len(embedded.refs),
        "entities": len(prepared.entity_ids),
        "embeddings": {"cached": embedded.cached, "computed": embedded.inferred},
        "skipped": [s.as_json() for s in embedded.skipped],
        "timings": {k: round(v, 4) for k, v in embedded.timings.items()},
    }
    if embedded.skipped:
        report["issues"] = {"hasWarning": True}
    return report
