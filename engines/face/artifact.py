"""The face engine's artifact: one self-contained ONNX file from photo to matches.

::

    image uint8 [H, W, 3] RGB  ->  detect + align (engines.face.align: max(K, 1) crops)
      -> the embedding model (its preprocessing baked in, engines.model_backbone)
      -> the gallery head (engines.artifact: best cosine per entity, TopK)
      -> answers sliced back to the K detected faces

Outputs, one row per face found (K may be 0): ``boxes`` [K, 4] (x1, y1, x2, y2), ``detection_scores``
[K], ``landmarks`` [K, 6, 2] (right eye, left eye, nose, mouth, right ear, left ear), all in the fed
photo's pixels; ``scores`` [K, k], ``indices`` [K, k], ``best_identifier`` [K, k] as the gallery
artifact gives them (engines.artifact). Entity names, identifier IDs and the calibrated threshold are
in ``metadata_props`` (``engineshed.*``), with ``engineshed.face.maxSide`` saying how large a photo the
gateway feeds: a photo whose longer side is over it is first shrunk to it (Pillow ``thumbnail``,
bilinear; engines.face.align.load_photo) and the boxes scaled back by the same factor.
A downloaded artifact runs with onnxruntime, numpy and Pillow only: resize as above, feed the uint8 photo.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.compose import add_prefix

from engines.artifact import ArtifactMeta, build_gallery_artifact
from engines.backbone import INPUT, OUTPUT, BackboneSpec
from engines.face.align import MAX_SIDE, build_front, opset_of
from engines.interface import EmbeddingModel
from engines.model_backbone import compose_model

__all__ = ["FACE_OUTPUTS", "build_face_artifact", "face_settings", "front_and_backbone"]

FACE_OUTPUTS = ("boxes", "detection_scores", "landmarks", "scores", "indices", "best_identifier")
_HEAD_OUTPUTS = ("scores", "indices", "best_identifier")
_KEY = "engineshed.face."


def _converted(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    if opset_of(model) == opset:
        return model
    converted = onnx.version_converter.convert_version(model, opset)
    converted.ir_version = model.ir_version
    return converted


def front_and_backbone(
    detector: EmbeddingModel, embedder: EmbeddingModel, *, min_confidence: float
) -> tuple[onnx.ModelProto, int]:
    """Photo -> embeddings of every face (one identity crop when none), with the detections as extra outputs.

    Returns the graph (output 0 ``emb/embedding`` [max(K, 1), D]) and the crop side. Raises ValueError when
    the detector or the embedding model cannot be composed (named in the message).
    """
    crop = int(embedder.manifest["input"]["height"])
    front = build_front(detector.model, detector.manifest, min_confidence=min_confidence, crop=crop, pad_one=True)
    backbone = add_prefix(compose_model(embedder.model, embedder.manifest, name=embedder.ref), "emb/")
    opset = max(opset_of(front), opset_of(backbone))
    front, backbone = _converted(front, opset), _converted(backbone, opset)
    bridge = helper.make_node("Identity", ["aligned"], ["emb/" + INPUT], name="face/to_embedder")
    graph = helper.make_graph(
        list(front.graph.node) + [bridge] + list(backbone.graph.node),
        "engineshed-face",
        list(front.graph.input),
        [helper.make_tensor_value_info("emb/" + OUTPUT, TensorProto.FLOAT, ["K1", None])]
        + [o for o in front.graph.output if o.name != "aligned"],
        initializer=list(front.graph.initializer) + list(backbone.graph.initializer),
    )
    graph.sparse_initializer.extend(backbone.graph.sparse_initializer)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=front.ir_version,
                              producer_name="engineshed")
    model.functions.extend(backbone.functions)
    return model, crop


def build_face_artifact(
    composed: onnx.ModelProto,
    crop: int,
    dim: int,
    vectors: np.ndarray,
    labels: np.ndarray,
    meta: ArtifactMeta,
    settings: Mapping[str, Any],
) -> bytes:
    """The gallery head on ``composed`` (from :func:`front_and_backbone`), answers sliced to the K faces."""
    data = composed.SerializeToString()
    spec = BackboneSpec(meta.backbone, data, crop, 3, dim, meta.backbone_digest)
    model = onnx.load_from_string(build_gallery_artifact(spec, vectors, labels, meta))
    del data
    g = model.graph
    rename = {name: f"head/all_{name}" for name in _HEAD_OUTPUTS}
    for node in g.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
        node.output[:] = [rename.get(o, o) for o in node.output]
    g.initializer.extend([numpy_helper.from_array(np.array([0], np.int64), "face/slice0"),
                          numpy_helper.from_array(np.array([0], np.int64), "face/slice_axis")])
    g.node.append(helper.make_node("Shape", ["detection_scores"], ["face/k_vec"], name="face/k_vec"))
    for name in _HEAD_OUTPUTS:  # drop the identity crop's row of a photo without a face
        g.node.append(helper.make_node("Slice", [rename[name], "face/slice0", "face/k_vec", "face/slice_axis"], [name],
                                       name=f"face/answer_{name}"))
    k = min(meta.top_k, len(meta.labels))
    del g.output[:]
    g.output.extend([
        helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["K", 4]),
        helper.make_tensor_value_info("detection_scores", TensorProto.FLOAT, ["K"]),
        helper.make_tensor_value_info("landmarks", TensorProto.FLOAT, ["K", 6, 2]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["K", k]),
        helper.make_tensor_value_info("indices", TensorProto.INT64, ["K", k]),
        helper.make_tensor_value_info("best_identifier", TensorProto.INT64, ["K", k]),
    ])
    for key, value in {"maxSide": str(MAX_SIDE), "settings": json.dumps(dict(settings), sort_keys=True)}.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=_KEY + key, value=value))
    out = model.SerializeToString(deterministic=True)
    onnx.checker.check_model(out)
    return out


def face_settings(metadata: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
    """The max side and settings an artifact's metadata records; ValueError when it is not a face artifact."""
    try:
        return int(metadata[_KEY + "maxSide"]), dict(json.loads(metadata[_KEY + "settings"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"not a face engine artifact ({exc})") from None
