"""The gallery engine: nearest neighbours over every embedded identifier of the library."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from engines.artifact import (
    CONTENT_TYPE,
    ArtifactMeta,
    ArtifactRecognizer,
    Label,
    build_gallery_archive,
    gallery_model,
    gallery_precision,
    write_gallery,
)
from engines.backbone import BackboneSpec
from engines.backbone_choice import choose_backbone
from engines.calibration import balanced_threshold
from engines.evaluation import against_gallery, leave_one_out, per_entity
from engines.gallery_archive import ARCHIVE_CONTENT_TYPE, open_archive_bytes
from engines.gallery_index import GalleryWriter
from engines.gallery_stream import (
    NotStreamable,
    StreamedGallery,
    evaluate,
    read_at,
    read_stream,
    scratch,
    streamable,
)
from engines.interface import (
    Artifact,
    ConfigOption,
    EngineError,
    EngineInfo,
    IdentifierRef,
    TrainingContext,
)
from engines.model_backbone import model_backbone
from engines.options import PIPELINE_OPTIONS
from engines.splits import check_split_config, split_options, split_rows
from engines.training import ENTITY_LIST_CAP, Prepared, base_report, prepare

__all__ = ["GalleryEngine", "GalleryFit", "fit_gallery", "package_gallery"]

log = logging.getLogger(__name__)

STREAM_PAGE = 2000  # identifiers a page when training from stored vectors (the worker's cursor reads 2,000 a trip)
STREAM_BLOCK = 8192  # rows copied from the vector file to the artifact's weights at a time
# Galleries with more weights than this are archives: a single protobuf is built in memory (its weights, then its
# serialisation: three times its size at the peak), an archive is streamed from disk to S3.
ARCHIVE_ABOVE_BYTES = 256 * 1024 * 1024
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

    def __init__(self, backbone: BackboneSpec | None = None, archive_above: int = ARCHIVE_ABOVE_BYTES) -> None:
        """``backbone`` replaces the built-in one (then ``imageSize`` is ignored); a gallery whose weights pass
        ``archive_above`` bytes is stored as an archive (engines.gallery_archive), else as one ONNX file."""
        self.backbone = backbone
        self.archive_above = archive_above

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
        if self.backbone is None and streamable(ctx.config, ctx.embedding_model, ctx):
            try:
                return await self._train_streamed(ctx)
            except NotStreamable as exc:
                log.info("gallery training of library %s reads images: %s", ctx.library_id, exc)
        # 'index' answers from the stored vectors of the model the worker resolved: no other backbone will do.
        chosen = await choose_backbone(ctx, self.backbone, compare=serve_from != INDEX)
        prepared = await prepare(chosen, self.backbone)
        fit = await fit_gallery(self.info, prepared, chosen)
        if chosen.comparison is not None:
            fit.report["evaluation"]["backboneComparison"] = chosen.comparison
        # The artifact is built either way: it stays the downloadable, self-contained model.
        fit.report["recognizeFrom"] = serve_from
        fit.report["topK"] = ctx.config["topK"]
        data, content_type = await asyncio.to_thread(package_gallery, prepared.spec, fit, self.archive_above)
        fit.report["artifact"] = {"contentType": content_type, "bytes": len(data),
                                  "precision": gallery_precision(*fit.vectors.shape)}
        await ctx.progress(1.0, "artifact built")
        return Artifact(data, content_type, fit.report, fit.accuracy)


    async def _train_streamed(self, ctx: TrainingContext) -> Artifact:
        """The gallery from stored vectors only, memory bounded by a page (engines.gallery_stream)."""
        config, model = ctx.config, ctx.embedding_model
        assert model is not None
        started = time.perf_counter()
        try:
            spec = await asyncio.to_thread(model_backbone, model)
        except (ValueError, onnx.checker.ValidationError) as exc:
            raise EngineError(f"model {model.ref} cannot be used as a backbone: {exc}") from None
        with scratch() as tmp:
            page = max(config["pageSize"], STREAM_PAGE)
            gallery = await read_stream(ctx, spec.digest, page, config["maxGalleryPerEntity"], Path(tmp))
            read_s = time.perf_counter() - started
            ev = await asyncio.to_thread(evaluate, gallery, DEFAULT_THRESHOLD, config["seed"])
            await ctx.progress(0.8, "evaluated")
            labels = tuple(Label(e, gallery.entity_ids[e], gallery.entity_names[e], gallery.identifier_ids[e])
                           for e in range(len(gallery.entity_ids)))
            meta = ArtifactMeta(self.info.id, self.info.version, spec.name, spec.digest, ctx.library_id,
                                spec.input_size, spec.channels, config["topK"], ev.threshold, "cosine", labels)
            kept = int(gallery.keep.sum())
            precision = gallery_precision(kept, gallery.dim)
            fitted = time.perf_counter()
            data, content_type = await asyncio.to_thread(package_streamed, spec, gallery, meta, self.archive_above, tmp)
        del labels, meta
        report = {
            "engine": self.info.id, "engineVersion": self.info.version, "contentType": content_type,
            "libraryId": ctx.library_id, "libraryVersion": ctx.library_version,
            "backbone": {"name": spec.name, "digest": spec.digest, "model": model.ref, "modelVersionId": model.version_id,
                         "sha256": model.sha256},
            "provider": "CPUExecutionProvider", "identifiers": gallery.rows, "entities": len(gallery.entity_ids),
            "embeddings": {"cached": gallery.rows, "computed": 0}, "storedEmbeddings": gallery.rows, "skipped": [],
            "timings": {"read": round(read_s, 4), "fit": round(fitted - started - read_s, 4),
                        "artifact": round(time.perf_counter() - fitted, 4)},
            "entityIds": sorted(gallery.entity_ids) if len(gallery.entity_ids) <= ENTITY_LIST_CAP else None,
            "skippedByReason": {}, "entitiesWithoutIdentifiers": [], "entitiesWithoutIdentifiersCount": 0,
            "libraryReadAt": read_at(), "galleryRows": kept, "threshold": ev.threshold, "calibration": ev.calibration,
            "evaluation": {"method": "leave-one-out top-1 nearest neighbour (cosine)", "evaluated": ev.queries,
                           "top1": ev.top1, "perEntity": ev.per_entity, "splits": {"training": gallery.rows}},
            "streamed": True, "recognizeFrom": config["recognizeFrom"], "topK": config["topK"],
            "artifact": {"contentType": content_type, "bytes": len(data), "precision": precision},
        }
        await ctx.progress(1.0, "artifact built")
        return Artifact(data, content_type, report, ev.top1)


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


def package_gallery(spec: BackboneSpec, fit: GalleryFit, archive_above: int) -> tuple[bytes, str]:
    """The artifact's bytes and content type: one ONNX file, or above ``archive_above`` bytes of weights the zip
    of model and weights, memory-mapped from an unlinked temporary file (read as it is uploaded, never whole)."""
    with write_gallery(fit.vectors, fit.labels) as writer:
        return _package(spec, writer, fit.meta, archive_above)


def package_streamed(spec: BackboneSpec, gallery: StreamedGallery, meta: ArtifactMeta, archive_above: int,
                     directory: str) -> tuple[bytes, str]:
    """package_gallery for a streamed gallery: its kept rows go from the vector file to the writer in blocks."""
    kept = int(gallery.keep.sum())
    with GalleryWriter(kept, gallery.dim, gallery_precision(kept, gallery.dim), directory) as writer:
        for start in range(0, gallery.rows, STREAM_BLOCK):
            end = min(gallery.rows, start + STREAM_BLOCK)
            mask = gallery.keep[start:end]
            writer.add(gallery.block(start, end)[mask], gallery.entity[start:end][mask], gallery.slot[start:end][mask])
        return _package(spec, writer, meta, archive_above)


def _package(spec: BackboneSpec, writer: GalleryWriter, meta: ArtifactMeta, archive_above: int) -> tuple[bytes, str]:
    weights = writer.finish()
    if weights.nbytes <= archive_above:
        return gallery_model(spec, weights, meta, external=False), CONTENT_TYPE
    target = writer.directory / "artifact.zip"
    build_gallery_archive(spec, weights, meta, target)
    return open_archive_bytes(target), ARCHIVE_CONTENT_TYPE  # the mapping outlives the directory's removal


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
