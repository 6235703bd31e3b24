"""The gallery engine: nearest neighbours over every embedded identifier of the library."""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from engines.artifact import (
    CONTENT_TYPE,
    ArtifactMeta,
    ArtifactRecognizer,
    Label,
    build_gallery_artifact,
)
from engines.backbone import BackboneSpec
from engines.backbone_choice import choose_backbone
from engines.calibration import balanced_threshold
from engines.evaluation import against_gallery, leave_one_out, per_entity
from engines.interface import (
    Artifact,
    ConfigOption,
    EngineError,
    EngineInfo,
    IdentifierRef,
    TrainingContext,
)
from engines.options import PIPELINE_OPTIONS
from engines.splits import check_split_config, split_options, split_rows
from engines.training import Prepared, base_report, prepare

__all__ = ["GalleryEngine", "GalleryFit", "fit_gallery"]

DEFAULT_THRESHOLD = 0.5  # used only when no entity has two identifiers to calibrate with
ARTIFACT, INDEX = "artifact", "index"  # recognizeFrom


class GalleryEngine(ArtifactRecognizer):
    """Recognises an image as the entity owning the most similar gallery identifier (cosine).

    Training keeps every identifier of the training split (all of them unless ``validationFraction``,
    ``testFraction`` or ``splitKey`` hold some out: engines.splits) that passes the quality gates (at most
    ``maxGalleryPerEntity`` per entity, first in paging order) in the final model. Accuracy is top-1 nearest
    neighbour of the test split against the gallery, or leave-one-out over the gallery without one; the
    acceptance threshold is calibrated on the validation split (or the same leave-one-out queries): best
    same-entity score (genuine) against best other-entity score (impostor, what an unknown face would look
    like), maximising balanced accuracy (engines.calibration).
    """

    info = EngineInfo(
        id="engineshed-gallery",
        name="Gallery (nearest neighbour)",
        category_id="face-recognition",
        identifier_type_ids=("face", "image"),
        library_type_ids=("people", "objects"),
        version="1",
        # "face" too, for an install without the face engine: the face engine lists "face" first, so it wins
        # where both are installed (EngineInfo.default_for).
        default_for=("image", "face"),
        config=PIPELINE_OPTIONS
        + (ConfigOption("maxGalleryPerEntity", int, 1000, "Most identifiers kept per entity.", 1, 100_000),)
        + split_options(training=None, validation=0.0, test=0.0)
        + (ConfigOption("seed", int, 0, "Seed of the split.", 0, 2**31 - 1),
           ConfigOption(
               "recognizeFrom", str, ARTIFACT,
               "What recognize answers from: 'artifact' (the trained ONNX gallery, self-contained) or 'index' (the "
               "library's stored vectors of the registered modelId, searched in pgvector: identifiers added after "
               "training count as soon as they are embedded).",
               choices=(ARTIFACT, INDEX))),
        check=check_split_config,
    )

    def __init__(self, backbone: BackboneSpec | None = None) -> None:
        """``backbone`` replaces the built-in one (then ``imageSize`` is ignored)."""
        self.backbone = backbone

    async def train(self, ctx: TrainingContext) -> Artifact:
        """Embed the library, split it, evaluate, calibrate, and build the ONNX artifact.

        The gallery holds the training split (everything by default). The threshold is calibrated on the
        validation split against the gallery when there is one, else leave-one-out over the gallery. Accuracy
        is measured on the test split against the gallery when there is one, else leave-one-out.
        """
        serve_from = ctx.config["recognizeFrom"]
        if serve_from == INDEX and (self.backbone is not None or ctx.embedding_model is None):
            # Only a registered model's vectors are stored per identifier (the built-in projection has none).
            raise EngineError("recognizeFrom 'index' searches the library's stored vectors of a registered embedding "
                              "model: give config.modelId (or register a default embedding model)")
        # 'index' answers from the stored vectors of the model the worker resolved: no other backbone will do.
        chosen = await choose_backbone(ctx, self.backbone, compare=serve_from != INDEX)
        prepared = await prepare(chosen, self.backbone)
        fit = await fit_gallery(self.info, prepared, chosen)
        if chosen.comparison is not None:
            fit.report["evaluation"]["backboneComparison"] = chosen.comparison
        # The artifact is built either way: it stays the downloadable, self-contained model.
        fit.report["recognizeFrom"] = serve_from
        fit.report["topK"] = ctx.config["topK"]
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
    """Split, cap rows per entity, evaluate, calibrate the threshold (GalleryEngine.train's docstring).
    ``ctx.config`` carries the split options (engines.splits.split_options) and maxGalleryPerEntity."""
    config = ctx.config
    started = time.perf_counter()
    all_refs = prepared.embedded.refs
    split = split_rows(prepared.labels, config, seed=config["seed"],
                       filter_values=[r.split for r in all_refs] if config["splitKey"] else None)
    keep = split.training[_cap_per_entity(prepared.labels[split.training], config["maxGalleryPerEntity"])]
    if keep.size == prepared.labels.size:  # the whole library, nothing capped: no copy of the [R, D] rows
        vectors, labels, refs = prepared.vectors, prepared.labels, all_refs
    else:
        vectors, labels = prepared.vectors[keep], prepared.labels[keep]
        refs = [all_refs[i] for i in keep]
    loo = None
    if not (split.validation.size and split.test.size):
        loo = await asyncio.to_thread(functools.partial(leave_one_out, vectors, labels, normalised=True))
    if split.validation.size:
        held = await asyncio.to_thread(
            against_gallery, vectors, labels, prepared.vectors[split.validation], prepared.labels[split.validation])
        genuine, impostor = held.genuine, held.impostor
    else:
        genuine, impostor = loo.genuine, loo.impostor
    calibration = balanced_threshold(
        genuine[np.isfinite(genuine)], impostor[np.isfinite(impostor)], default=DEFAULT_THRESHOLD
    )
    if split.test.size:
        test = await asyncio.to_thread(
            against_gallery, vectors, labels, prepared.vectors[split.test], prepared.labels[split.test])
        accuracy = test.top1
        evaluation = {
            "method": "held-out test split, top-1 nearest neighbour (cosine) against the gallery",
            "evaluated": int(split.test.size),
            "top1": test.top1,
            "perEntity": per_entity(prepared.entity_ids, prepared.labels[split.test], test.correct),
        }
    else:
        accuracy = loo.top1
        evaluation = {
            "method": "leave-one-out top-1 nearest neighbour (cosine)",
            "evaluated": int(loo.queries.size),
            "top1": loo.top1,
            "perEntity": per_entity(prepared.entity_ids, labels[loo.queries], loo.correct),
        }
    evaluation["splits"] = split.sizes()
    await ctx.progress(0.95, "evaluated")
    meta = ArtifactMeta(
        engine=info.id,
        engine_version=info.version,
        backbone=prepared.spec.name,
        backbone_digest=prepared.spec.digest,
        library_id=ctx.library_id,
        image_size=prepared.spec.input_size,
        channels=prepared.spec.channels,
        top_k=config["topK"],
        threshold=calibration.threshold,
        score="cosine",
        labels=_labels(prepared, labels, refs),
    )
    report = base_report(info, prepared, ctx)
    report["galleryRows"] = len(refs)
    report["evaluation"] = evaluation
    report["threshold"] = calibration.threshold
    report["calibration"] = calibration.as_json()
    report["timings"]["fit"] = round(time.perf_counter() - started, 4)
    return GalleryFit(vectors, labels, refs, meta, report, accuracy)


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
