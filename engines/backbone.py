"""The backbone: the ONNX graph that turns images into embeddings.

Contract for any backbone, built-in or loaded from a file:

* one input, uint8, NHWC ``[N, H, W, C]`` with H = W = ``input_size`` and C = ``channels``
  (1 = grey, 3 = RGB); casting and normalising happen inside the graph, so only uint8 is copied
  to the device;
* first output float32 ``[N, D]``, one embedding per image; the heads L2-normalise it, so its
  scale does not matter;
* default-domain opset 13 or later (the heads appended by ``engines.artifact`` rely on it).

The built-in backbone is deterministic and needs no download: per-image standardisation, then
a fixed Gaussian random projection (seed 0) and a ReLU, L2-normalised. Random ReLU features keep
the geometry of the standardised pixels (an arc-cosine kernel), which is enough for small,
aligned images; a learned backbone file is the upgrade path.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["BackboneSpec", "IR_VERSION", "OPSET", "build_backbone", "default_backbone", "load_backbone"]

IR_VERSION = 10  # onnxruntime 1.31 reads IR <= 13; 10 keeps older runtimes able to open artifacts
OPSET = 17
INPUT = "images"
OUTPUT = "embedding"


@dataclass(frozen=True, slots=True)
class BackboneSpec:
    """A backbone model and what callers need to feed it; ``digest`` keys the embedding cache."""

    name: str
    model: bytes
    input_size: int
    channels: int
    dim: int
    digest: str  # sha256 of the serialised model


def build_backbone(size: int = 32, channels: int = 1, dim: int = 512, seed: int = 0, float16: bool = False) -> onnx.ModelProto:
    """The built-in backbone graph for ``size``×``size``×``channels`` uint8 images, ``dim`` features.

    ``float16`` runs the projection (nearly all the work) in half precision, for GPUs; the
    standardisation before it and the normalisation after it stay in float32, and so does the output.
    """
    features = size * size * channels
    rng = np.random.default_rng(seed)
    # Scaled so each projected feature has unit variance for standardised inputs.
    projection = (rng.standard_normal((features, dim)) / np.sqrt(features)).astype(np.float32)
    eps = 1e-6
    init = [
        numpy_helper.from_array(np.array(1.0 / 255.0, np.float32), "inv255"),
        numpy_helper.from_array(np.array(eps, np.float32), "eps"),
        numpy_helper.from_array(projection.astype(np.float16) if float16 else projection, "projection"),
    ]
    nodes = [
        helper.make_node("Cast", [INPUT], ["x_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["x_f", "inv255"], ["x_unit"]),
        helper.make_node("Flatten", ["x_unit"], ["x_flat"], axis=1),
        # Per-image standardisation: brightness and contrast stop mattering.
        helper.make_node("ReduceMean", ["x_flat"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Sub", ["x_flat", "mean"], ["centred"]),
        helper.make_node("Mul", ["centred", "centred"], ["sq"]),
        helper.make_node("ReduceMean", ["sq"], ["var"], axes=[1], keepdims=1),
        helper.make_node("Add", ["var", "eps"], ["var_eps"]),
        helper.make_node("Sqrt", ["var_eps"], ["std"]),
        helper.make_node("Div", ["centred", "std"], ["standardised"]),
        *(
            [
                helper.make_node("Cast", ["standardised"], ["standardised_h"], to=TensorProto.FLOAT16),
                helper.make_node("MatMul", ["standardised_h", "projection"], ["projected_h"]),
                helper.make_node("Relu", ["projected_h"], ["features_h"]),
                helper.make_node("Cast", ["features_h"], ["features"], to=TensorProto.FLOAT),
            ]
            if float16
            else [
                helper.make_node("MatMul", ["standardised", "projection"], ["projected"]),
                helper.make_node("Relu", ["projected"], ["features"]),
            ]
        ),
        helper.make_node("ReduceL2", ["features"], ["norm"], axes=[1], keepdims=1),
        helper.make_node("Max", ["norm", "eps"], ["norm_safe"]),
        helper.make_node("Div", ["features", "norm_safe"], [OUTPUT]),
    ]
    graph = helper.make_graph(
        nodes,
        "engineshed-random-projection",
        [helper.make_tensor_value_info(INPUT, TensorProto.UINT8, ["N", size, size, channels])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", dim])],
        initializer=init,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="engineshed",
    )
    onnx.checker.check_model(model)
    return model


@functools.cache
def default_backbone(size: int = 32, channels: int = 1, dim: int = 512, float16: bool = False) -> BackboneSpec:
    """The built-in backbone as a spec, built once per shape (and precision)."""
    model = build_backbone(size, channels, dim, float16=float16).SerializeToString(deterministic=True)
    name = f"random-projection-{size}x{size}x{channels}-{dim}" + ("-fp16" if float16 else "")
    return BackboneSpec(name, model, size, channels, dim, hashlib.sha256(model).hexdigest())


def load_backbone(path: str | Path, input_size: int, channels: int) -> BackboneSpec:
    """A backbone from an ONNX file that follows the contract in this module's docstring.

    Raises ValueError when the file's input or output does not fit the contract.
    """
    path = Path(path)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ValueError(f"{path}: a backbone takes exactly one input, found {len(inputs)}")
    tensor = inputs[0].type.tensor_type
    if tensor.elem_type != TensorProto.UINT8:
        raise ValueError(f"{path}: the input must be uint8 NHWC")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    if len(dims) != 4 or dims[1:] not in ([input_size, input_size, channels], [None, None, channels], [None] * 3):
        raise ValueError(f"{path}: the input must be [N, {input_size}, {input_size}, {channels}], found {dims}")
    out = graph.output[0].type.tensor_type
    out_dims = [d.dim_value if d.HasField("dim_value") else None for d in out.shape.dim]
    if out.elem_type != TensorProto.FLOAT or len(out_dims) != 2 or not out_dims[1]:
        raise ValueError(f"{path}: the first output must be float32 [N, D] with D known")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 13:
        raise ValueError(f"{path}: opset {opset} is older than 13")
    data = path.read_bytes()
    return BackboneSpec(path.stem, data, input_size, channels, int(out_dims[1]), hashlib.sha256(data).hexdigest())
