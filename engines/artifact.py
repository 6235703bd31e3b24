"""The trained artifact: one self-contained ONNX model (``application/onnx``), or for a gallery past
INLINE_MAX_BYTES one zip of the model and its external weights (``application/zip``, engines.gallery_archive).

The graph is the backbone followed by a head; its input is the backbone's uint8 NHWC tensor
(preprocess as ``engines.decode`` documents) and its outputs are

* ``scores``  float32 ``[N, k]``, best first: cosine similarity (gallery) or probability (classifier);
* ``indices`` int64 ``[N, k]``: entity indices into the ``engineshed.labels`` metadata;
* ``best_identifier`` int64 ``[N, k]`` (gallery only): which of that entity's ``identifierIds``
  matched best.

Everything needed to read the answers is in ``model.metadata_props`` (``engineshed.*`` keys), so a
downloaded file run with plain onnxruntime gives exactly the gateway's answers. The heads use
only operators whose form is the same from opset 13 on, so any backbone meeting the contract in
``engines.backbone`` can be composed with them.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from engines.backbone import IR_VERSION, BackboneSpec
from engines.decode import decode_batch
from engines.gallery_archive import (
    archive_metadata,
    archive_runner,
    is_archive,
    write_archive,
)
from engines.gallery_index import (
    FLOAT32,
    INT8,
    GalleryWriter,
    HeadWeights,
    add_flat_head,
)
from engines.interface import EngineError, Match, Recognition
from engines.runtime import get_runner

__all__ = [
    "CONTENT_TYPE",
    "ArtifactMeta",
    "Label",
    "artifact_meta",
    "build_classifier_artifact",
    "build_gallery_archive",
    "build_gallery_artifact",
    "build_padded_gallery_artifact",
    "entity_slots",
    "gallery_model",
    "gallery_precision",
    "read_artifact",
    "recognize_images",
    "recognize_with_artifact",
    "write_gallery",
]

CONTENT_TYPE = "application/onnx"
PADDING_SCORE = -10.0  # below any cosine similarity, so padding rows never win an entity's max
PREFIX = "engineshed."
FLOAT32_MAX_BYTES = 256 * 1024 * 1024  # galleries up to this many float32 bytes stay exact float32; int8 above
INLINE_MAX_BYTES = 1536 * 1024 * 1024  # one protobuf holds at most 2 GB: larger galleries are archives
LARGE_ARTIFACT_BYTES = 256 * 1024 * 1024  # sessions of larger artifacts are kept apart (engines.gallery_archive)
WRITE_BATCH = 8192  # rows handed to the gallery writer at a time


@dataclass(frozen=True, slots=True)
class Label:
    """Entity ``index`` of the artifact's outputs."""

    index: int
    entity_id: str
    entity_name: str
    identifier_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ArtifactMeta:
    """What ``model.metadata_props`` says about an artifact."""

    engine: str
    engine_version: str
    backbone: str
    backbone_digest: str
    library_id: str
    image_size: int
    channels: int
    top_k: int
    threshold: float
    score: str  # "cosine" | "probability"
    labels: tuple[Label, ...]

    def to_metadata(self) -> dict[str, str]:
        """The ``engineshed.*`` metadata_props entries."""
        labels = [
            {"index": x.index, "entityId": x.entity_id, "entityName": x.entity_name, "identifierIds": list(x.identifier_ids)}
            for x in self.labels
        ]
        values = {
            "labels": json.dumps(labels, separators=(",", ":")),
            "threshold": repr(float(self.threshold)),
            "engine": self.engine,
            "engineVersion": self.engine_version,
            "backbone": self.backbone,
            "backboneDigest": self.backbone_digest,
            "libraryId": self.library_id,
            "imageSize": str(self.image_size),
            "channels": str(self.channels),
            "topK": str(self.top_k),
            "score": self.score,
        }
        return {PREFIX + k: v for k, v in values.items()}

    @classmethod
    def from_metadata(cls, props: dict[str, str]) -> ArtifactMeta:
        """Parse ``engineshed.*`` metadata; raises EngineError when the artifact is not ours."""

        def get(key: str) -> str:
            return props[PREFIX + key]

        try:
            labels = tuple(
                Label(int(x["index"]), x["entityId"], x["entityName"], tuple(x["identifierIds"]))
                for x in json.loads(get("labels"))
            )
            return cls(
                get("engine"), get("engineVersion"), get("backbone"), get("backboneDigest"), get("libraryId"),
                int(get("imageSize")), int(get("channels")), int(get("topK")), float(get("threshold")),
                get("score"), labels,
            )  # fmt: skip
        except (KeyError, ValueError, TypeError) as exc:
            raise EngineError(f"not an engineshed artifact: missing or bad metadata ({exc})") from None


def read_artifact(data: bytes) -> tuple[bytes, dict[str, str]]:
    """The model bytes to hand to an InferenceSession, and the artifact's metadata_props (an archive's bytes
    are returned as they are: open it with engines.gallery_archive)."""
    if is_archive(data):
        return data, archive_metadata(data)
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:
        raise EngineError(f"the artifact is not a readable ONNX model: {exc}") from None
    return data, {p.key: p.value for p in model.metadata_props}


def build_gallery_artifact(
    spec: BackboneSpec, vectors: np.ndarray, labels: np.ndarray, meta: ArtifactMeta, *, precision: str | None = None
) -> bytes:
    """Backbone + flat gallery head (engines.gallery_index), as one ONNX protobuf.

    ``vectors`` [R, D] are L2-normalised gallery rows, ``labels`` [R] their entity index; row order within an
    entity must match ``meta.labels[e].identifier_ids``. ``precision`` None: float32 (exact) up to
    FLOAT32_MAX_BYTES of rows, int8 with float32 re-scoring above. A gallery whose weights pass INLINE_MAX_BYTES
    needs the archive form (:func:`build_gallery_archive`).
    """
    with write_gallery(vectors, labels, precision) as writer:
        weights = writer.finish()
        if weights.nbytes > INLINE_MAX_BYTES:
            raise EngineError(f"a gallery of {weights.nbytes} bytes of weights needs the archive form")
        return gallery_model(spec, weights, meta, external=False)


def gallery_precision(rows: int, dim: int, precision: str | None = None) -> str:
    """The precision a gallery of ``rows`` × ``dim`` is stored in (None: float32 while it is small)."""
    if precision is not None:
        return precision
    return FLOAT32 if rows * dim * 4 <= FLOAT32_MAX_BYTES else INT8


def write_gallery(vectors: np.ndarray, labels: np.ndarray, precision: str | None = None,
                  directory: str | None = None) -> GalleryWriter:
    """A GalleryWriter holding ``vectors`` (written in batches: no second [R, D] copy); call ``finish``."""
    labels = np.asarray(labels, np.int64)
    rows, dim = np.shape(vectors)
    writer = GalleryWriter(rows, dim, gallery_precision(rows, dim, precision), directory)
    try:
        slots = entity_slots(labels)
        for start in range(0, rows, WRITE_BATCH):
            end = min(rows, start + WRITE_BATCH)
            writer.add(vectors[start:end], labels[start:end], slots[start:end])
    except BaseException:
        writer.close()
        raise
    return writer


def entity_slots(labels: np.ndarray) -> np.ndarray:
    """Each row's position among its entity's rows, in row order (the index into its ``identifierIds``)."""
    labels = np.asarray(labels, np.int64)
    if labels.size == 0:
        return labels.copy()
    counts = np.bincount(labels)
    order = np.argsort(labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.empty_like(labels)
    slot[order] = np.arange(labels.size) - starts[labels[order]]
    return slot


def gallery_model(spec: BackboneSpec, weights: HeadWeights, meta: ArtifactMeta, *, external: bool) -> Any:
    """The artifact's model over written gallery ``weights``: its bytes (``external`` False), or the ModelProto
    whose large initializers refer to ``weights.bin`` (engines.gallery_archive packages both)."""
    head = _Head(spec)
    e = head.normalised_embedding()
    k = add_flat_head(head.graph, e, weights, meta.top_k, len(meta.labels), external=external)
    outputs = [("scores", TensorProto.FLOAT), ("indices", TensorProto.INT64), ("best_identifier", TensorProto.INT64)]
    return head.model(outputs, k, meta, serialize=not external)


def build_gallery_archive(spec: BackboneSpec, weights: HeadWeights, meta: ArtifactMeta, target: Path) -> Path:
    """The zip form of a gallery artifact at ``target`` (engines.gallery_archive), weights streamed into it."""
    model = gallery_model(spec, weights, meta, external=True)
    return write_archive(model, weights.path, target)


def build_padded_gallery_artifact(spec: BackboneSpec, vectors: np.ndarray, labels: np.ndarray, meta: ArtifactMeta) -> bytes:
    """The gallery head of artifacts trained before the flat one (engines.gallery_index), which recognition
    still reads: per-entity best cosine over that entity's rows, then TopK.

    ``vectors`` [R, D] are L2-normalised gallery rows, ``labels`` [R] their entity index; row
    order within an entity must match ``meta.labels[e].identifier_ids``. Entities are padded to
    the largest entity's row count with columns scoring PADDING_SCORE, so the per-entity max is a
    Reshape + TopK(1) (cost grows with entities × largest entity: cap rows per entity).
    """
    vectors = np.asarray(vectors, np.float32)
    labels = np.asarray(labels, np.int64)
    entities = len(meta.labels)
    counts = np.bincount(labels, minlength=entities)
    width = int(counts.max())
    order = np.argsort(labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.empty_like(labels)
    slot[order] = np.arange(labels.size) - starts[labels[order]]
    columns = labels * width + slot
    gallery = np.zeros((vectors.shape[1], entities * width), np.float32)
    gallery[:, columns] = vectors.T
    bias = np.full(entities * width, PADDING_SCORE, np.float32)
    bias[columns] = 0.0
    k = min(meta.top_k, entities)
    head = _Head(spec)
    e = head.normalised_embedding()
    head.init("gallery", gallery)
    del gallery  # the graph holds its own copy now
    head.init("gallery_bias", bias)
    head.init("per_entity_shape", np.array([-1, entities, width], np.int64))
    head.init("entity_shape", np.array([-1, entities], np.int64))
    head.init("one", np.array([1], np.int64))
    head.init("k", np.array([k], np.int64))
    head.node("MatMul", [e, "gallery"], ["row_scores"])
    head.node("Add", ["row_scores", "gallery_bias"], ["row_scores_masked"])
    head.node("Reshape", ["row_scores_masked", "per_entity_shape"], ["by_entity"])
    head.node("TopK", ["by_entity", "one"], ["entity_best", "entity_best_slot"], axis=-1)
    head.node("Reshape", ["entity_best", "entity_shape"], ["entity_scores"])
    head.node("Reshape", ["entity_best_slot", "entity_shape"], ["entity_slots"])
    head.node("TopK", ["entity_scores", "k"], ["scores", "indices"], axis=1)
    head.node("GatherElements", ["entity_slots", "indices"], ["best_identifier"], axis=1)
    outputs = [("scores", TensorProto.FLOAT), ("indices", TensorProto.INT64), ("best_identifier", TensorProto.INT64)]
    return head.model(outputs, k, meta)


def build_classifier_artifact(spec: BackboneSpec, weights: np.ndarray, bias: np.ndarray, meta: ArtifactMeta) -> bytes:
    """Backbone + softmax head over L2-normalised embeddings: MatMul + Add, Softmax, TopK."""
    k = min(meta.top_k, len(meta.labels))
    head = _Head(spec)
    e = head.normalised_embedding()
    head.init("weights", np.asarray(weights, np.float32))
    head.init("bias", np.asarray(bias, np.float32))
    head.init("k", np.array([k], np.int64))
    head.node("MatMul", [e, "weights"], ["logits_unbiased"])
    head.node("Add", ["logits_unbiased", "bias"], ["logits"])
    head.node("Softmax", ["logits"], ["probabilities"], axis=1)
    head.node("TopK", ["probabilities", "k"], ["scores", "indices"], axis=1)
    return head.model([("scores", TensorProto.FLOAT), ("indices", TensorProto.INT64)], k, meta)


class _Head:
    """Appends head nodes (names prefixed ``head/``, so they cannot clash) to a copy of the backbone."""

    def __init__(self, spec: BackboneSpec) -> None:
        self.backbone = onnx.load_from_string(spec.model)
        self.graph = self.backbone.graph
        self.embedding = self.graph.output[0].name
        self.dim = spec.dim

    def name(self, local: str) -> str:
        return local if local in ("scores", "indices", "best_identifier") else f"head/{local}"

    def init(self, local: str, array: np.ndarray) -> None:
        self.graph.initializer.append(numpy_helper.from_array(array, self.name(local)))

    def node(self, op: str, inputs: Sequence[str], outputs: Sequence[str], **attrs: Any) -> None:
        ins = [i if i == self.embedding or i.startswith("head/") else self.name(i) for i in inputs]
        self.graph.node.append(helper.make_node(op, ins, [self.name(o) for o in outputs], **attrs))

    def normalised_embedding(self) -> str:
        # Sum of squares as a MatMul with ones: ReduceSum/ReduceL2 changed form at opsets 13/18.
        self.init("ones", np.ones((self.dim, 1), np.float32))
        self.init("eps", np.array(1e-6, np.float32))
        self.node("Mul", [self.embedding, self.embedding], ["squares"])
        self.node("MatMul", ["squares", "ones"], ["sum_squares"])
        self.node("Sqrt", ["sum_squares"], ["norm"])
        self.node("Max", ["norm", "eps"], ["norm_safe"])
        self.node("Div", [self.embedding, "norm_safe"], ["unit"])
        return "head/unit"

    def model(self, outputs: list[tuple[str, int]], k: int, meta: ArtifactMeta, serialize: bool = True) -> Any:
        del self.graph.output[:]
        for name, dtype in outputs:
            self.graph.output.append(helper.make_tensor_value_info(name, dtype, ["N", k]))
        self.graph.name = f"{meta.engine}-artifact"
        model = helper.make_model(self.graph, opset_imports=list(self.backbone.opset_import), ir_version=IR_VERSION)
        model.producer_name = "engineshed"
        for key, value in meta.to_metadata().items():
            model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
        if not serialize:
            return model
        # Check the bytes we return: checking the proto would serialise a second full copy (the gallery
        # head holds 2 KiB per identifier, so a large library's artifact is tens of MB).
        data = model.SerializeToString(deterministic=True)
        onnx.checker.check_model(data)
        return data


@functools.lru_cache(maxsize=16)
def _meta_for(digest: str, runner_metadata: tuple[tuple[str, str], ...]) -> ArtifactMeta:
    return ArtifactMeta.from_metadata(dict(runner_metadata))


def artifact_meta(artifact: bytes, execution_provider: str) -> ArtifactMeta:
    """The parsed metadata of an artifact, via its cached session (parsed once per artifact)."""
    runner = _runner(artifact, execution_provider)
    return _meta_for(runner.digest, tuple(sorted(runner.metadata.items())))


def _runner(artifact: bytes, provider: str) -> Any:
    """The cached session of a single-file artifact (engines.runtime) or of an archive (engines.gallery_archive)."""
    if is_archive(artifact) or len(artifact) > LARGE_ARTIFACT_BYTES:
        return archive_runner(artifact, provider)
    return get_runner(artifact, provider)


def recognize_with_artifact(
    artifact: bytes, images: np.ndarray, top_k: int, threshold: float | None, provider: str
) -> list[Recognition]:
    """Run an artifact on uint8 NHWC ``images``; blocking, so call it off the event loop.

    ``top_k`` above the artifact's baked k is clamped to it; ``threshold`` None uses the
    calibrated one; matches scoring under the threshold are dropped.
    """
    if top_k < 1:
        raise EngineError("top_k must be at least 1")
    runner = _runner(artifact, provider)
    meta = _meta_for(runner.digest, tuple(sorted(runner.metadata.items())))
    if len(images) == 0:
        return []
    outputs = dict(zip(runner.output_names, runner.run_all(np.asarray(images, np.uint8)), strict=True))
    cut = meta.threshold if threshold is None else threshold
    scores, indices = outputs["scores"][:, :top_k], outputs["indices"][:, :top_k]
    best = outputs.get("best_identifier")
    results = []
    for row in range(scores.shape[0]):
        matches = []
        for j in range(scores.shape[1]):
            score = float(scores[row, j])
            if score < cut:
                break  # scores are sorted, best first
            label = meta.labels[int(indices[row, j])]
            identifier = label.identifier_ids[int(best[row, j])] if best is not None and label.identifier_ids else None
            matches.append(Match(label.entity_id, label.entity_name, identifier, score))
        results.append(Recognition(row, matches))
    return results


async def recognize_images(
    artifact: bytes, images: Sequence[bytes], *, top_k: int, threshold: float | None, execution_provider: str
) -> list[Recognition]:
    """Decode encoded images as training did (no quality gates) and run the artifact on them.

    Raises EngineError naming the first image that cannot be decoded.
    """
    if not images:
        return []
    meta = await asyncio.to_thread(artifact_meta, artifact, execution_provider)
    decoded = await asyncio.to_thread(decode_batch, list(images), meta.image_size, meta.channels, 0, 0.0)
    for index, (_, skip) in enumerate(decoded):
        if skip is not None:
            raise EngineError(f"image {index} cannot be used ({skip['reason']}): {skip['detail']}")
    batch = np.stack([array for array, _ in decoded])
    return await asyncio.to_thread(recognize_with_artifact, artifact, batch, top_k, threshold, execution_provider)


class ArtifactRecognizer:
    """``Engine.recognize`` for engines whose artifact is one of this module's self-contained models."""

    async def recognize(
        self,
        artifact: bytes,
        images: Sequence[bytes],
        *,
        top_k: int,
        threshold: float | None,
        execution_provider: str,
    ) -> list[Recognition]:
        """Best entities per image, best first; none under the threshold (None: the calibrated one)."""
        return await recognize_images(
            artifact, images, top_k=top_k, threshold=threshold, execution_provider=execution_provider
        )
