"""A registered model as a backbone: its preprocessing baked in front of its graph.

Registered models take what their manifest declares (float NCHW with ImageNet mean/std, raw 0..255
NHWC, BGR, ...); the engines feed every backbone uint8 NHWC at the model's size (``engines.backbone``'s
contract). :func:`compose_backbone` writes one graph doing both::

    images uint8 [N, H, W, C] -> Cast -> colour order -> value mapping -> layout -> the model -> output [N, D]

so a trained artifact stays one self-contained ONNX file: a user running it standalone feeds decoded
pixels (``engines.decode``) and gets exactly the gateway's answers, with no preprocessing to repeat.

The value mapping follows the registry's manifest (gateway/services/models/packages/): ``range``
[lo, hi] means x = lo + p/255·(hi-lo), ``mean``/``std`` mean x = (p/255 - mean)/std per channel; a
model whose input is uint8 gets the pixels as they are (colour order and layout still applied). The
model's own names are prefixed ``model/`` so they cannot clash with ours; nodes that only feed
outputs the engine does not use (faceres' age and gender heads) are dropped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.compose import add_prefix

from engines.backbone import INPUT, IR_VERSION, OUTPUT, BackboneSpec
from engines.interface import EmbeddingModel

__all__ = ["EmbeddingModel", "PIXEL_PROJECTION", "compose_backbone", "compose_model", "model_backbone"]

PIXEL_PROJECTION = "pixel-projection"  # what users see for the built-in backbone (engines.backbone)
PREFIX = "model/"
MIN_OPSET = 13  # the artifact heads (engines.artifact) use opset-13 forms
IR_FOR_OPSET = 21  # IR 10 reads opsets up to 21; newer graphs keep their own IR version
_FLOATS = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE)


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _needed(graph: onnx.GraphProto, outputs: Iterable[str]) -> list[onnx.NodeProto]:
    """The nodes that ``outputs`` depend on, in graph order (ONNX graphs are topologically sorted)."""
    wanted = set(outputs)
    keep: list[onnx.NodeProto] = []
    for node in reversed(graph.node):
        if not wanted.intersection(node.output):
            continue
        keep.append(node)
        wanted.update(i for i in node.input if i)
        for attr in node.attribute:  # a subgraph may read outer values by name
            for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
                for inner in _walk(sub):
                    wanted.update(i for i in inner.input if i)
    keep.reverse()
    return keep


def _walk(graph: onnx.GraphProto) -> Iterable[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
                yield from _walk(sub)


def _preprocess(spec: Mapping[str, Any], elem_type: int, target: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes from uint8 NHWC ``images`` to the model's input tensor ``target``."""
    channels = int(spec.get("channels", 3))
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    x = INPUT
    if channels == 3 and spec.get("color_order", "RGB") == "BGR":
        inits.append(numpy_helper.from_array(np.array([2, 1, 0], np.int64), "pre/bgr"))
        nodes.append(helper.make_node("Gather", [x, "pre/bgr"], ["pre/reordered"], axis=3))
        x = "pre/reordered"
    if elem_type in _FLOATS:
        nodes.append(helper.make_node("Cast", [x], ["pre/float"], to=TensorProto.FLOAT))
        # Both mappings are one multiply-add per channel on the 0..255 value.
        if "range" in spec:
            lo, hi = (float(v) for v in spec["range"])
            scale = np.full(channels, (hi - lo) / 255.0, np.float32)
            shift = np.full(channels, lo, np.float32)
        else:
            mean = np.asarray(spec["mean"], np.float64)
            std = np.asarray(spec["std"], np.float64)
            scale = (1.0 / (255.0 * std)).astype(np.float32)
            shift = (-mean / std).astype(np.float32)
        inits += [numpy_helper.from_array(scale, "pre/scale"), numpy_helper.from_array(shift, "pre/shift")]
        nodes += [
            helper.make_node("Mul", ["pre/float", "pre/scale"], ["pre/scaled"]),
            helper.make_node("Add", ["pre/scaled", "pre/shift"], ["pre/mapped"]),
        ]
        x = "pre/mapped"
        if elem_type != TensorProto.FLOAT:
            nodes.append(helper.make_node("Cast", [x], ["pre/typed"], to=elem_type))
            x = "pre/typed"
    elif elem_type != TensorProto.UINT8:
        raise ValueError(f"the model's input is {TensorProto.DataType.Name(elem_type)}; an image model takes float or uint8")
    if spec.get("layout", "NHWC") == "NCHW":
        nodes.append(helper.make_node("Transpose", [x], ["pre/nchw"], perm=[0, 3, 1, 2]))
        x = "pre/nchw"
    nodes.append(helper.make_node("Identity", [x], [target]))
    return nodes, inits


def compose_model(model: bytes, manifest: Mapping[str, Any], *, output: str | None = None, name: str = "model") -> onnx.ModelProto:
    """uint8 NHWC ``images`` -> preprocessing -> ``model`` -> ``embedding`` float32 [N, D].

    ``output`` overrides the manifest's ``output.name``. Raises ValueError for what the composition
    cannot do: a non-square input, an input or output the graph lacks, an opset older than 13.
    """
    proto = onnx.load_from_string(model)
    spec = dict(manifest.get("input") or {})
    height, width = int(spec["height"]), int(spec["width"])
    if height != width:
        raise ValueError(f"model {name} takes {height}×{width} images; only square inputs are supported")
    channels = int(spec.get("channels", 3))
    opset = _opset(proto)
    if opset < MIN_OPSET:
        proto = onnx.version_converter.convert_version(proto, MIN_OPSET)
        opset = MIN_OPSET
    graph = proto.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    input_name = spec.get("name") or (inputs[0].name if len(inputs) == 1 else None)
    chosen = next((i for i in inputs if i.name == input_name), None)
    if chosen is None:
        raise ValueError(f"model {name}: input {input_name!r} is not one of the graph's inputs")
    out_name = output or (manifest.get("output") or {}).get("name") or graph.output[0].name
    if out_name not in {o.name for o in graph.output}:
        raise ValueError(f"model {name}: output {out_name!r} is not one of the graph's outputs")
    out_type = next(o for o in graph.output if o.name == out_name).type.tensor_type.elem_type

    prefixed = add_prefix(proto, PREFIX)
    pg = prefixed.graph
    target, chosen_out = PREFIX + chosen.name, PREFIX + out_name
    pre_nodes, pre_inits = _preprocess(spec, chosen.type.tensor_type.elem_type, target)
    body = _needed(pg, [chosen_out])
    used = {i for n in body for i in n.input} | {i for n in _walk_all(body) for i in n.input}
    tail = [helper.make_node("Flatten", [chosen_out], ["post/flat"], axis=1)]
    if out_type != TensorProto.FLOAT:
        tail.append(helper.make_node("Cast", ["post/flat"], ["post/float"], to=TensorProto.FLOAT))
    tail.append(helper.make_node("Identity", [tail[-1].output[0]], [OUTPUT]))
    graph_out = helper.make_graph(
        pre_nodes + body + tail,
        f"engineshed-{name}",
        [helper.make_tensor_value_info(INPUT, TensorProto.UINT8, ["N", height, width, channels])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["N", None])],
        initializer=pre_inits + [t for t in pg.initializer if t.name in used],
    )
    graph_out.sparse_initializer.extend(t for t in pg.sparse_initializer if t.values.name in used)
    composed = helper.make_model(
        graph_out,
        opset_imports=list(prefixed.opset_import),
        ir_version=IR_VERSION if opset <= IR_FOR_OPSET else max(prefixed.ir_version, IR_VERSION),
        producer_name="engineshed",
    )
    composed.functions.extend(prefixed.functions)
    return composed


def _walk_all(nodes: Iterable[onnx.NodeProto]) -> Iterable[onnx.NodeProto]:
    for node in nodes:
        for attr in node.attribute:
            for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
                yield from _walk(sub)


def compose_backbone(model: bytes, manifest: Mapping[str, Any], *, name: str) -> BackboneSpec:
    """:func:`compose_model` as a BackboneSpec; its digest keys the embedding cache.

    The digest covers the model's bytes and the manifest's preprocessing (same file, other mean/std:
    other embeddings), so each registered version has its own cache entries.
    """
    composed = compose_model(model, manifest, name=name)
    onnx.checker.check_model(composed)
    data = composed.SerializeToString(deterministic=True)
    dim = int((manifest.get("output") or {}).get("dimension") or 0)
    if dim <= 0:
        raise ValueError(f"model {name}: the manifest gives no output dimension")
    spec = manifest["input"]
    return BackboneSpec(name, data, int(spec["height"]), int(spec.get("channels", 3)), dim, backbone_digest(model, manifest))


def backbone_digest(model: bytes, manifest: Mapping[str, Any]) -> str:
    """sha256 over the model file's sha256 and the canonical JSON of what the preprocessing reads."""
    keyed = {"model": hashlib.sha256(model).hexdigest(), "input": manifest.get("input"),
             "output": (manifest.get("output") or {}).get("name"), "composer": 1}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


_BACKBONES: dict[tuple[str, str], BackboneSpec] = {}


def model_backbone(model: EmbeddingModel) -> BackboneSpec:
    """The composed backbone of a registered version, built once per (version, manifest) in this process."""
    key = (model.sha256, json.dumps(model.manifest, sort_keys=True))
    spec = _BACKBONES.get(key)
    if spec is None:
        spec = compose_backbone(model.model, model.manifest, name=model.ref)
        if len(_BACKBONES) >= 8:
            _BACKBONES.pop(next(iter(_BACKBONES)))
        _BACKBONES[key] = spec
    return spec
