"""The face engine: detect, gate, align and embed the face in each photo; recognize every face in a photo.

Training, per identifier (a photo; rarely a tight crop):

1. **Detect** with the registered face detector (``config.detectorModelId``, default the pulled
   ``face-detector``, BlazeFace full range) on the photo letterboxed to the detector's side;
2. **Choose and gate**: detections under ``minDetectionConfidence`` are ignored; with several, the face is
   chosen by score and size together, or by the box the user pinned (``faceBox`` in the identifier's
   jsondata), and a ``several-faces`` warning names the competing ones (engines.face.decode); a photo
   that is a face crop is the face (aligned by its landmarks, or used whole where nothing is detected:
   a ``whole-crop`` warning); with no face the identifier is skipped (``no-face``); a face under
   ``minFaceSize`` px on its smaller side (at the photo's resolution; a crop measures the photo) is
   skipped (``too-small``), and so is one whose sharpness is under ``sharpnessThreshold`` (``blurry``);
   each skip's detail says what to change;
3. **Align**: a similarity transform maps the eyes, nose and mouth onto the five-point template;
4. **Embed** the aligned crop with the registered embedding model (``config.modelId``, default the
   pulled ``face-embedding``).

Steps 1-3 are one ONNX graph (engines.face.align) run in the decode processes; embedding runs in
batches in the worker. The gallery head, evaluation and calibration are the gallery engine's. The
artifact is one ONNX file doing all four steps plus matching (engines.face.artifact); ``recognize``
runs exactly that file, so a downloaded artifact gives the gateway's answers.

Recognition answers the faces the detector finds (no crop fallback: a photo without a detection has no
face, ``Recognition.faces`` empty, which is not "nobody matched", a face with no matches).

Sharpness (``sharpnessThreshold``): variance of the 4-neighbour Laplacian of the aligned face,
converted to grey (0-255) and box-averaged to the 112×112 template scale
(:func:`engines.face.align.crop_sharpness`).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Executor
from dataclasses import replace
from typing import Any

import numpy as np
import onnx

from engines.artifact import CONTENT_TYPE, artifact_meta
from engines.embedded import EmbeddedLibrary, Skipped
from engines.face.align import KEYPOINTS, build_front, load_photo
from engines.face.artifact import build_face_artifact, face_settings, front_and_backbone
from engines.face.decode import FaceDecoder, faces_in
from engines.gallery import fit_gallery
from engines.interface import (
    Artifact,
    ConfigOption,
    EmbeddingModel,
    EngineError,
    EngineInfo,
    IdentifierRef,
    Match,
    Recognition,
    RecognizedFace,
    TrainingContext,
)
from engines.media import MediaOptions, Progress, Segment
from engines.model_backbone import model_backbone
from engines.pipeline import embed_library
from engines.runtime import get_runner, throughput_runner
from engines.splits import check_split_config, split_options
from engines.training import group

__all__ = ["FACE_OPTIONS", "FaceEngine", "SHARPNESS_MEASURE"]

SHARPNESS_MEASURE = (
    "variance of the 4-neighbour Laplacian of the aligned face, grey (0-255), box-averaged to 112×112"
)

FACE_OPTIONS: tuple[ConfigOption, ...] = (
    ConfigOption("pageSize", int, 30, "Identifiers read from the library per page.", 1, 1000),
    ConfigOption("fetchConcurrency", int, 32, "Identifier downloads in flight at once.", 1, 256),
    ConfigOption("fetchRate", float, 0.0, "Most identifier downloads started per second; 0 = no limit.", 0, 100_000),
    ConfigOption("batchSize", int, 32, "Aligned faces per embedding batch.", 1, 1024),
    ConfigOption("topK", int, 5, "Matches the artifact returns per face at most.", 1, 1000),
    ConfigOption("maxGalleryPerEntity", int, 1000, "Most identifiers kept per entity.", 1, 100_000),
    ConfigOption(
        "minFaceSize", int, 80,
        "Skip an identifier whose face is under this many pixels on its smaller side, at the photo's resolution (its "
        "box; a photo that is a face crop measures the whole photo).", 0, 100_000,
    ),
    ConfigOption(
        "sharpnessThreshold", float, 40.0,
        f"Skip an identifier whose face is blurrier than this: {SHARPNESS_MEASURE}. Sharp faces measure 50 to "
        "800; 0 disables.", 0, 1e9,
    ),
    ConfigOption(
        "minDetectionConfidence", float, 0.6,
        "Detections scoring under this (0-1) are not faces, in training and in recognition.", 0.5, 1.0,
    ),
    ConfigOption(
        "detectorModelId", str, "",
        "Registered auto_annotation face model to detect with (name, name@3 or name@alias); it must give boxes, "
        "scores and 6 keypoints (eyes, nose, mouth, ears). Empty = the system face detector (face-detector).",
    ),
    ConfigOption(
        "modelId", str, "",
        "Registered embedding model to embed the aligned faces with; empty = the system face embedding "
        "(face-embedding).",
    ),
    *split_options(training=None, validation=0.0, test=0.0),
    ConfigOption("seed", int, 0, "Seed of the split.", 0, 2**31 - 1),
)


class FaceEngine:
    """Faces found, aligned and matched against a gallery of each entity's aligned faces (cosine)."""

    info = EngineInfo(
        id="engineshed-face",
        name="Faces (detect, align, embed, gallery)",
        category_id="face-recognition",
        identifier_type_ids=("face",),
        library_type_ids=("people",),
        version="1",
        default_for=("face",),
        requires_models=(("auto_annotation", "face"), ("embedding", "face")),
        config=FACE_OPTIONS,
        check=check_split_config,
    )

    async def train(self, ctx: TrainingContext) -> Artifact:
        """Find, gate, align and embed each identifier's face; evaluate, calibrate; build the artifact."""
        config = ctx.config
        detector, embedder = _models(ctx)
        try:
            spec = await asyncio.to_thread(model_backbone, embedder)
            composed, crop = await asyncio.to_thread(
                front_and_backbone, detector, embedder, min_confidence=config["minDetectionConfidence"]
            )
            front = await asyncio.to_thread(_front_bytes, detector, config["minDetectionConfidence"], crop)
        except (ValueError, onnx.checker.ValidationError) as exc:
            raise EngineError(f"the face engine cannot use {detector.ref} with {embedder.ref}: {exc}") from None
        runner, parallel = await asyncio.to_thread(throughput_runner, spec.model, ctx.execution_provider)
        decoder = FaceDecoder(front, config["minFaceSize"], config["sharpnessThreshold"])
        embedded = await embed_library(
            _Pinning(ctx, decoder.pins), spec, runner, page_size=config["pageSize"], fetch_concurrency=config["fetchConcurrency"],
            fetch_rate=config["fetchRate"] or None, batch_size=config["batchSize"], min_size=0,
            sharpness_threshold=0.0, decoder=decoder, use_cache=False, stored=False, parallel=parallel,
        )
        embedded = _drop_unlike(embedded)
        prepared = group(spec, runner, embedder, embedded)
        fit = await fit_gallery(self.info, prepared, ctx)
        settings = {k: config[k] for k in ("minFaceSize", "sharpnessThreshold", "minDetectionConfidence")}
        data = await asyncio.to_thread(
            build_face_artifact, composed, crop, spec.dim, fit.vectors, fit.labels, fit.meta, settings
        )
        report = fit.report
        report.update(_face_report(embedded, fit.refs, detector, settings))
        await ctx.progress(1.0, "artifact built")
        return Artifact(data, CONTENT_TYPE, report, fit.accuracy)

    async def recognize(
        self,
        artifact: bytes,
        images: Sequence[bytes],
        *,
        top_k: int,
        threshold: float | None,
        execution_provider: str,
    ) -> list[Recognition]:
        """Every face found in each photo (largest first) with its matches; ``matches`` merges them per entity."""
        if top_k < 1:
            raise EngineError("top_k must be at least 1")
        if not images:
            return []
        runner = await asyncio.to_thread(get_runner, artifact, execution_provider)
        meta = await asyncio.to_thread(artifact_meta, artifact, execution_provider)
        try:
            max_side, _ = face_settings(runner.metadata)
        except ValueError as exc:
            raise EngineError(str(exc)) from None
        cut = meta.threshold if threshold is None else threshold
        results = []
        for index, blob in enumerate(images):
            try:
                photo, scale = await asyncio.to_thread(load_photo, blob, max_side=max_side)
            except ValueError as exc:
                raise EngineError(f"image {index} cannot be used: {exc}") from None
            raw = await asyncio.to_thread(runner.run_all, photo)
            outputs = dict(zip(runner.output_names, raw, strict=True))
            found = []
            for row, face in enumerate(faces_in(outputs, scale, photo.shape)):
                matches = []
                for j in range(min(top_k, outputs["scores"].shape[1])):
                    score = float(outputs["scores"][row, j])
                    if score < cut:
                        break  # best first
                    label = meta.labels[int(outputs["indices"][row, j])]
                    best = int(outputs["best_identifier"][row, j])
                    identifier = label.identifier_ids[best] if label.identifier_ids else None
                    matches.append(Match(label.entity_id, label.entity_name, identifier, score))
                box = face["box"]
                found.append(RecognizedFace(
                    (box["left"], box["top"], box["width"], box["height"]),
                    tuple((p["x"], p["y"]) for p in face["landmarks"]), face["detectionScore"], matches,
                ))
            found.sort(key=lambda f: -f.box[2] * f.box[3])
            results.append(Recognition(index, _merged(found, top_k), faces=tuple(found)))
        return results

    def recognize_media(
        self, artifact: bytes, path: str, options: MediaOptions, *, execution_provider: str, pool: Executor | None,
        progress: Progress,
    ) -> AsyncIterator[Segment]:
        """Faces over time in the video at ``path``: a segment per track as it ends (engines.face.video)."""
        from engines.face.video import recognize_media

        return recognize_media(artifact, path, options, execution_provider=execution_provider, pool=pool,
                               progress=progress)


def _models(ctx: TrainingContext) -> tuple[EmbeddingModel, EmbeddingModel]:
    detector, embedder = ctx.detector_model, ctx.embedding_model
    if detector is None:
        raise EngineError(
            "no face detector is registered: run `engineshed models pull face-detector`, or name a registered "
            "auto_annotation face model in config.detectorModelId"
        )
    if embedder is None:
        raise EngineError(
            "the face engine embeds with a registered embedding model and none is registered: run "
            "`engineshed models pull face-embedding`, or name one in config.modelId (the built-in pixel "
            "projection is not a face model)"
        )
    return detector, embedder


def _front_bytes(detector: EmbeddingModel, min_confidence: float, crop: int) -> bytes:
    model = build_front(detector.model, detector.manifest, min_confidence=min_confidence, crop=crop)
    return model.SerializeToString(deterministic=True)


def _merged(faces: list[RecognizedFace], top_k: int) -> list[Match]:
    """Each entity once, at its best score over the faces, best first."""
    best: dict[str, Match] = {}
    for face in faces:
        for match in face.matches:
            if match.entity_id not in best or match.score > best[match.entity_id].score:
                best[match.entity_id] = match
    return sorted(best.values(), key=lambda m: -m.score)[:top_k]


UNLIKE = 0.5  # cosine: a face under this to each of its entity's other faces, which agree among themselves, is not theirs


def _drop_unlike(embedded: EmbeddedLibrary) -> EmbeddedLibrary:
    """Leave out each face unlike all its entity's others (skip ``unlike-entity``) where at least two others agree.

    A detection that is not the person (a painted face, clutter the detector took for one, someone else in the
    photo) would otherwise join the gallery under their name, and match that clutter in photos without a face.
    Entities with fewer than three faces are left as they are: nothing says which one is the odd one.
    """
    if len(embedded.refs) < 3:
        return embedded
    vectors = embedded.embeddings / np.maximum(np.linalg.norm(embedded.embeddings, axis=1, keepdims=True), 1e-12)
    by_entity: dict[str, list[int]] = {}
    for i, ref in enumerate(embedded.refs):
        by_entity.setdefault(ref.entity_id, []).append(i)
    drop: dict[int, float] = {}  # row -> its best cosine to its entity's other faces
    for rows in by_entity.values():
        if len(rows) < 3:
            continue
        sims = vectors[rows] @ vectors[rows].T
        np.fill_diagonal(sims, -1.0)
        best = sims.max(axis=1)
        if int((best >= UNLIKE).sum()) >= 2:
            drop.update({rows[j]: float(best[j]) for j in range(len(rows)) if best[j] < UNLIKE})
    if not drop:
        return embedded
    keep = [i for i in range(len(embedded.refs)) if i not in drop]
    skipped = list(embedded.skipped) + [Skipped(
        embedded.refs[i], "unlike-entity",
        f"the face used is unlike the entity's other faces (best cosine {cosine:.2f} < {UNLIKE}): check the photo is "
        "of this person, or pin the face with faceBox [x1, y1, x2, y2] in the identifier's jsondata")
        for i, cosine in sorted(drop.items())]
    return replace(embedded, embeddings=np.ascontiguousarray(embedded.embeddings[keep]),
                   refs=[embedded.refs[i] for i in keep], skipped=skipped)


class _Pinning:
    """The training context, noting each fetched identifier's pinned ``faceBox`` by its content's sha256 for the
    decoder (which sees bytes only). Everything else is the context's own."""

    def __init__(self, ctx: TrainingContext, pins: dict[str, Any]) -> None:
        self._ctx = ctx
        self._pins = pins

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)

    def pages(self, page_size: int) -> AsyncIterator[list[IdentifierRef]]:
        return self._ctx.pages(page_size)

    async def fetch(self, ref: IdentifierRef) -> bytes:
        data = await self._ctx.fetch(ref)
        if ref.face_box is not None:
            self._pins[hashlib.sha256(data).hexdigest()] = ref.face_box
        return data


def _corners(box: dict[str, float]) -> list[float]:
    return [round(box["left"], 1), round(box["top"], 1), round(box["left"] + box["width"], 1),
            round(box["top"] + box["height"], 1)]


_NOTE_KEYS = ("box", "landmarks", "detectionScore", "sharpness", "facesFound", "faceSize", "source", "faceBox")


def _face_report(
    embedded: EmbeddedLibrary, refs: Sequence[IdentifierRef], detector: EmbeddingModel, settings: dict[str, Any]
) -> dict[str, Any]:
    """The face keys of ``jsondata``: the face used per identifier, skips and warnings with their entity."""
    extras = embedded.extras
    faces = []
    warnings = []
    for ref in refs:
        note = extras.get(ref.identifier_id) or {}
        faces.append({"identifierId": ref.identifier_id, "entityId": ref.entity_id,
                      **{k: note[k] for k in _NOTE_KEYS if k in note}})
        who = {"identifierId": ref.identifier_id, "entityId": ref.entity_id}
        if note.get("competing"):
            used, others = note["box"], note["competing"]
            listed = "; ".join(f"{_corners(o['box'])} score {o['detectionScore']:.2f}" for o in others)
            warnings.append({
                **who, "reason": "several-faces",
                "boxes": [_corners(used)] + [_corners(o["box"]) for o in others],
                "scores": [note["detectionScore"]] + [o["detectionScore"] for o in others],
                "detail": f"{note['facesFound']} faces found; used {_corners(used)} (score "
                          f"{note['detectionScore']:.2f}, {min(used['width'], used['height']):.0f} px: best by score "
                          f"and size together) over {listed}; to train on another, set faceBox [x1, y1, x2, y2] in "
                          "the identifier's jsondata",
            })
        elif note.get("source") == "whole-crop":
            warnings.append({
                **who, "reason": "whole-crop",
                "detail": f"no face was detected; the photo ({note['box']['width']:.0f}×{note['box']['height']:.0f} "
                          "px) was taken for a face crop and used whole, resized to the face template",
            })
    skipped = []
    for skip in embedded.skipped:
        item = {"identifierId": skip.ref.identifier_id, "entityId": skip.ref.entity_id, "reason": skip.reason,
                "detail": skip.detail}
        note = extras.get(skip.ref.identifier_id) or {}
        if "box" in note:
            item["box"] = note["box"]
        skipped.append(item)
    report: dict[str, Any] = {
        "faces": faces,
        "skipped": skipped,
        "warnings": warnings,
        "detector": {"model": detector.ref, "modelVersionId": detector.version_id, "sha256": detector.sha256},
        "settings": settings,
        "sharpnessMeasure": SHARPNESS_MEASURE,
        "landmarks": list(KEYPOINTS),
    }
    if skipped or warnings:
        report["issues"] = {"hasError": False, "hasWarning": True}
    return report
