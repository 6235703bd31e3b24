"""The gallery engine: nearest neighbours over every embedded identifier of the library."""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from engines.artifact import ArtifactRecognizer, CONTENT_TYPE, ArtifactMeta, Label, build_gallery_artifact
from engines.backbone import BackboneSpec
from engines.calibration import balanced_threshold
from engines.evaluation import leave_one_out, per_entity
from engines.interface import Artifact, ConfigOption, EngineInfo, IdentifierRef, TrainingContext
from engines.options import PIPELINE_OPTIONS
from engines.training import Prepared, base_report, prepare

__all__ = ["GalleryEngine", "GalleryFit", "fit_gallery"]

DEFAULT_THRESHOLD = 0.5  # used only when no entity has two identifiers to calibrate with


class GalleryEngine(ArtifactRecognizer):
    """Recognises an image as the entity owning the most similar gallery identifier (cosine).

    Training keeps every identifier that passes the quality gates (at most ``maxGalleryPerEntity``
    per entity, first in paging order) in the final model. Accuracy is leave-one-out top-1 nearest
    neighbour over the gallery; the acceptance threshold is calibrated on the same leave-one-out
    queries: best same-entity score (genuine) against best other-entity score (impostor, what an
    unknown face would look like), maximising balanced accuracy (engines.calibration).
    """

    info = EngineInfo(
        id="engineshed-gallery",
        name="Gallery (nearest neighbour)",
        category_id="face-recognition",
        identifier_type_ids=("face", "image"),
        library_type_ids=("people", "objects"),
        version="1",
        config=PIPELINE_OPTIONS
        + (ConfigOption("maxGalleryPerEntity", int, 1000, "Most identifiers kept per entity.", 1, 100_000),),
    )

    def __init__(self, backbone: BackboneSpec | None = None) -> None:
        """``backbone`` replaces the built-in one (then ``imageSize`` is ignored)."""
        self.backbone = backbone

    async def train(self, ctx: TrainingContext) -> Artifact:
        """Embed the library, evaluate leave-one-out, calibrate, and build the ONNX artifact."""
        prepared = await prepare(ctx, self.backbone)
        fit = await fit_gallery(self.info, prepared, ctx)
        data = await asyncio.to_thread(build_gallery_artifact, prepared.spec, fit.vectors, fit.labels, fit.meta)
        await ctx.progress(1.0, "artifact built")
        return Artifact(data, CONTENT_TYPE, fit.report, fit.accuracy)


@dataclass(slots=True)
class GalleryFit:
    """The gallery rows kept, their artifact metadata (threshold calibrated) and the training report."""

    vectors: np.ndarray
    labels: np.ndarray
    refs: list[IdentifierRef]
    meta: ArtifactMeta
    report: dict[str, Any]
    accuracy: float | None


async def fit_gallery(info: EngineInfo, prepared: Prepared, ctx: TrainingContext) -> GalleryFit:
    """Cap rows per entity, evaluate leave-one-out, calibrate the threshold (GalleryEngine's docstring)."""
    started = time.perf_counter()
    keep = _cap_per_entity(prepared.labels, ctx.config["maxGalleryPerEntity"])
    if keep.size == prepared.labels.size:  # nothing capped: no copy of the [R, D] rows
        vectors, labels, refs = prepared.vectors, prepared.labels, prepared.embedded.refs
    else:
        vectors, labels = prepared.vectors[keep], prepared.labels[keep]
        refs = [prepared.embedded.refs[i] for i in keep]
    loo = await asyncio.to_thread(functools.partial(leave_one_out, vectors, labels, normalised=True))
    evaluated = labels[loo.queries]
    calibration = balanced_threshold(
        loo.genuine, loo.impostor[np.isfinite(loo.impostor)], default=DEFAULT_THRESHOLD
    )
    await ctx.progress(0.95, "evaluated")
    meta = ArtifactMeta(
        engine=info.id,
        engine_version=info.version,
        backbone=prepared.spec.name,
        backbone_digest=prepared.spec.digest,
        library_id=ctx.library_id,
        image_size=prepared.spec.input_size,
        channels=prepared.spec.channels,
        top_k=ctx.config["topK"],
        threshold=calibration.threshold,
        score="cosine",
        labels=_labels(prepared, labels, refs),
    )
    report = base_report(info, prepared, ctx)
    report["galleryRows"] = len(refs)
    report["evaluation"] = {
        "method": "leave-one-out top-1 nearest neighbour (cosine)",
        "evaluated": int(loo.queries.size),
        "top1": loo.top1,
        "perEntity": per_entity(prepared.entity_ids, evaluated, loo.correct),
    }
    report["threshold"] = calibration.threshold
    report["calibration"] = calibration.as_json()
    report["timings"]["fit"] = round(time.perf_counter() - started, 4)
    return GalleryFit(vectors, labels, refs, meta, report, loo.top1)


def _cap_per_entity(labels: np.ndarray, cap: int) -> np.ndarray:
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty_like(labels)
    rank[order] = np.arange(labels.size) - starts[labels[order]]
    return np.flatnonzero(rank < cap)


def _labels(prepared: Prepared, labels: np.ndarray, refs: list[IdentifierRef]) -> tuple[Label, ...]:
    ids: list[list[str]] = [[] for _ in prepared.entity_ids]
    for label, ref in zip(labels, refs, strict=True):
        ids[int(label)].append(ref.identifier_id)
    return tuple(
        Label(e, prepared.entity_ids[e], prepared.entity_names[e], tuple(ids[e])) for e in range(len(ids))
    )
