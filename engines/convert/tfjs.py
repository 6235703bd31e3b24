"""TF.js graph model (``model.json`` + weight shards) -> ONNX, for the TF ops small vision models use.

A TF.js graph model is a TF GraphDef written as JSON (``modelTopology.node``) plus raw little-endian
weight files listed in ``weightsManifest``; every ``Const`` node's value is one manifest entry (or, rarely,
an inline tensor). This module reads both and writes an ONNX graph with the same inputs and outputs.

Layout: TF works in NHWC, ONNX's Conv/MaxPool in NCHW. The graph boundary stays NHWC (inputs and outputs
mean what they meant in TF) while the inside runs NCHW: each value carries a layout tag, convolutions and
pools keep their output NCHW, elementwise ops follow their inputs (per-channel constants are reshaped to
broadcast the NCHW way), and a Transpose back to NHWC is inserted only where an op needs TF's axis order
(Reshape, MatMul, Softmax, graph outputs). So a conv stack costs two transposes, not two per conv.

Ops outside ``SUPPORTED_OPS`` are refused up front with one error naming all of them: a partial
conversion that silently drops an op would give wrong answers, not an error.

No TensorFlow is needed; the converter is numpy + onnx.helper.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["SUPPORTED_OPS", "TfjsConversionError", "convert", "convert_dir", "read_weights"]

IR_VERSION = 10  # onnxruntime 1.31 reads IR <= 13; 10 keeps older runtimes able to open the file
OPSET = 17

NCHW_PERM = (0, 3, 1, 2)  # NHWC tensor -> NCHW
NHWC_PERM = (0, 2, 3, 1)  # NCHW tensor -> NHWC

_DTYPES = {
    "float32": np.float32,
    "int32": np.int32,
    "bool": np.bool_,
    "uint8": np.uint8,
    "int64": np.int64,
}
_TF_DTYPES = {"DT_FLOAT": TensorProto.FLOAT, "DT_INT32": TensorProto.INT32, "DT_BOOL": TensorProto.BOOL,
              "DT_UINT8": TensorProto.UINT8, "DT_INT64": TensorProto.INT64}
_TF_NP = {"DT_FLOAT": np.float32, "DT_INT32": np.int32, "DT_BOOL": np.bool_, "DT_UINT8": np.uint8,
          "DT_INT64": np.int64}

_ELEMENTWISE_BINARY = {"Add": "Add", "AddV2": "Add", "BiasAdd": "Add", "Sub": "Sub", "Mul": "Mul",
                       "RealDiv": "Div", "Div": "Div", "Maximum": "Max", "Minimum": "Min"}
_ELEMENTWISE_UNARY = {"Relu": "Relu", "Sigmoid": "Sigmoid", "Tanh": "Tanh", "Elu": "Elu", "Neg": "Neg",
                      "Exp": "Exp", "Sqrt": "Sqrt", "Abs": "Abs"}
_REDUCE = {"Mean": "ReduceMean", "Max": "ReduceMax", "Sum": "ReduceSum"}
_FUSED_ACTIVATIONS = {"Relu", "Relu6", "Sigmoid", "Tanh", "Elu", "LeakyRelu"}

SUPPORTED_OPS = frozenset(
    {"Placeholder", "Const", "Identity", "StopGradient", "Snapshot",
     "Conv2D", "DepthwiseConv2dNative", "_FusedConv2D", "FusedDepthwiseConv2dNative",
     "_FusedDepthwiseConv2dNative", "MaxPool", "AvgPool", "Pad", "PadV2", "Reshape", "MatMul", "_FusedMatMul",
     "Softmax", "Relu6", "LeakyRelu", "ConcatV2", "Concat"}
    | set(_ELEMENTWISE_BINARY) | set(_ELEMENTWISE_UNARY) | set(_REDUCE)
)


class TfjsConversionError(ValueError):
    """The TF.js model cannot be converted: malformed, unsupported op, or weights that do not fit."""


# --------------------------------------------------------------------------------------------- weights


def _check_shard_path(path: str) -> str:
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts or "\\" in path or not path:
        raise TfjsConversionError(f"weight shard path {path!r} must be a relative path inside the model folder")
    return path


def read_weights(manifest: list[dict[str, Any]], read_file: Callable[[str], bytes]) -> dict[str, np.ndarray]:
    """Every weight of a ``weightsManifest``, dequantised to its original dtype.

    Each group's shard files are concatenated, then its weights are read one after the other. Quantised
    weights are stored as ``quantization.dtype`` (float16, or uint8/uint16 as ``min + q * scale``).
    """
    if not isinstance(manifest, list):
        raise TfjsConversionError("weightsManifest must be a list of groups")
    out: dict[str, np.ndarray] = {}
    seen: set[str] = set()
    for group in manifest:
        paths = group.get("paths") if isinstance(group, dict) else None
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise TfjsConversionError("each weightsManifest group needs a list of paths")
        # A shard named twice would be copied twice: the joined buffers could outgrow the package's bound.
        twice = sorted({p for p in paths if p in seen or paths.count(p) > 1})
        if twice:
            raise TfjsConversionError(f"weightsManifest names the shard(s) {twice} more than once")
        seen.update(paths)
        buf = b"".join(read_file(_check_shard_path(p)) for p in paths)
        offset = 0
        for entry in group.get("weights", []):
            name, dtype, shape = entry.get("name"), entry.get("dtype"), entry.get("shape")
            if not isinstance(name, str) or not isinstance(shape, list):
                raise TfjsConversionError(f"malformed weight entry {entry!r}")
            if dtype not in _DTYPES:
                raise TfjsConversionError(f"weight {name!r}: dtype {dtype!r} is not supported")
            count = math.prod(int(d) for d in shape)
            quant = entry.get("quantization")
            if quant:
                qdtype = quant.get("dtype")
                original = quant.get("original_dtype", dtype)
                if original != dtype:
                    raise TfjsConversionError(f"weight {name!r}: original_dtype {original!r} != dtype {dtype!r}")
                if qdtype == "float16":
                    stored = np.dtype("<f2")
                elif qdtype in ("uint8", "uint16"):
                    stored = np.dtype("<u1" if qdtype == "uint8" else "<u2")
                else:
                    raise TfjsConversionError(f"weight {name!r}: quantization dtype {qdtype!r} is not supported")
            else:
                stored = np.dtype(_DTYPES[dtype]).newbyteorder("<")
            size = count * stored.itemsize
            if offset + size > len(buf):
                raise TfjsConversionError(
                    f"weight {name!r} needs bytes {offset}..{offset + size} but the shards of its group hold {len(buf)}")
            raw = np.frombuffer(buf, dtype=stored, count=count, offset=offset)
            offset += size
            if quant and qdtype == "float16":
                value = raw.astype(np.float32)
            elif quant:
                value = (raw.astype(np.float32) * float(quant["scale"]) + float(quant["min"]))
            else:
                value = raw
            out[name] = value.astype(_DTYPES[dtype], copy=False).reshape([int(d) for d in shape])
        if offset != len(buf):
            raise TfjsConversionError(f"shards {paths} hold {len(buf) - offset} bytes no weight describes")
    return out


# --------------------------------------------------------------------------------------------- attributes


def _attr(node: dict[str, Any], key: str, default: Any = None) -> Any:
    """A node attribute as a plain Python value (TF.js writes ints as strings and strings as base64)."""
    raw = node.get("attr", {}).get(key)
    if raw is None:
        return default
    if "list" in raw:
        lst = raw["list"]
        if "i" in lst:
            return [int(v) for v in lst["i"]]
        if "s" in lst:
            return [base64.b64decode(v).decode() for v in lst["s"]]
        if "f" in lst:
            return [float(v) for v in lst["f"]]
        return []
    if "s" in raw:
        return base64.b64decode(raw["s"]).decode()
    if "i" in raw:
        return int(raw["i"])
    if "f" in raw:
        return float(raw["f"])
    if "b" in raw:
        return bool(raw["b"])
    if "type" in raw:
        return raw["type"]
    if "shape" in raw:
        return raw["shape"]
    if "tensor" in raw:
        return raw["tensor"]
    return default


# A constant given by one repeated value (``floatVal: [0]`` with a shape) is expanded here. In real graphs
# those are shapes and scalars; a few bytes of JSON must not be able to ask for gigabytes.
MAX_FILLED_CONSTANT_BYTES = 16 * 1024 * 1024


def _inline_tensor(tensor: dict[str, Any]) -> np.ndarray:
    dtype = tensor.get("dtype", "DT_FLOAT")
    if dtype not in _TF_NP:
        raise TfjsConversionError(f"inline constant of dtype {dtype} is not supported")
    try:
        shape = [int(d.get("size", 1)) for d in tensor.get("tensorShape", {}).get("dim", [])]
    except (AttributeError, TypeError, ValueError):
        raise TfjsConversionError("an inline constant has a malformed tensorShape") from None
    if any(d < 0 for d in shape):
        raise TfjsConversionError(f"an inline constant has a negative dimension: {shape}")
    np_dtype = _TF_NP[dtype]
    if "tensorContent" not in tensor and math.prod(shape) * np.dtype(np_dtype).itemsize > MAX_FILLED_CONSTANT_BYTES:
        raise TfjsConversionError(
            f"an inline constant of shape {shape} would fill more than {MAX_FILLED_CONSTANT_BYTES} bytes")
    if "tensorContent" in tensor:
        return np.frombuffer(base64.b64decode(tensor["tensorContent"]), dtype=np.dtype(np_dtype).newbyteorder("<")) \
            .astype(np_dtype).reshape(shape)
    for key in ("floatVal", "intVal", "int64Val", "boolVal"):
        if key in tensor:
            vals = np.array(tensor[key], dtype=np_dtype)
            count = math.prod(shape)
            if vals.size not in (1, count):
                raise TfjsConversionError(f"an inline constant of shape {shape} gives {vals.size} values")
            return (np.full(count, vals[0], dtype=np_dtype) if vals.size == 1 else vals).reshape(shape)
    return np.zeros(shape, dtype=np_dtype)


def _split_input(ref: str) -> tuple[str, int]:
    name, _, index = ref.partition(":")
    return name, int(index) if index else 0


# --------------------------------------------------------------------------------------------- converter


@dataclass(slots=True)
class _Value:
    name: str  # the ONNX value name ("" for constants not yet materialised)
    layout: str  # "tf": TF's own axis order; "nchw": a 4-D NHWC tensor stored transposed to NCHW
    rank: int | None
    const: np.ndarray | None = None


class _Converter:
    def __init__(self, nodes: list[dict[str, Any]], weights: Mapping[str, np.ndarray]):
        self.nodes = {n["name"]: n for n in nodes}
        if len(self.nodes) != len(nodes):
            raise TfjsConversionError("node names are not unique")
        self.weights = weights
        self.values: dict[str, _Value] = {}
        self.onnx_nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self._names: set[str] = set()
        self._tf_view: dict[str, str] = {}  # nchw value name -> its transposed-back twin, made once
        self._nchw_consts: dict[int, str] = {}  # id of a constant's _Value -> its NCHW-broadcast initializer
        self.reserved: set[str] = set()  # graph output names, kept for the final Identity nodes
        self.input_names: set[str] = set()

    # -- names and emission
    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self._names or name in self.reserved:
            name = f"{base}__{i}"
            i += 1
        self._names.add(name)
        return name

    def emit(self, op: str, inputs: list[str], base: str, **attrs: Any) -> str:
        out = self.fresh(base)
        self.onnx_nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def materialise(self, value: _Value, base: str) -> str:
        if value.name:
            return value.name
        name = self.fresh(base)
        arr = value.const
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        value.name = name
        return name

    def const_input(self, ref: str, what: str) -> np.ndarray:
        value = self.value(ref)
        if value.const is None:
            raise TfjsConversionError(f"{what} must be a constant ({ref!r} is computed)")
        return value.const

    # -- layouts
    def as_tf(self, value: _Value, base: str) -> str:
        """The value in TF's own axis order."""
        if value.const is not None:
            return self.materialise(value, base)
        if value.layout == "tf":
            return value.name
        if value.name not in self._tf_view:
            self._tf_view[value.name] = self.emit("Transpose", [value.name], value.name + "__nhwc", perm=list(NHWC_PERM))
        return self._tf_view[value.name]

    def as_nchw(self, value: _Value, base: str) -> str:
        if value.layout == "nchw":
            return value.name
        if value.const is not None:
            key = id(value)  # one NCHW copy per constant, however many ops use it
            if key not in self._nchw_consts:
                self._nchw_consts[key] = self.materialise(_Value("", "nchw", 4, _const_to_nchw(value.const)), base)
            return self._nchw_consts[key]
        if value.rank != 4:
            raise TfjsConversionError(f"{base}: expected a 4-D NHWC tensor")
        return self.emit("Transpose", [value.name], base + "__nchw", perm=list(NCHW_PERM))

    # -- graph walk
    def value(self, ref: str) -> _Value:
        name, index = _split_input(ref)
        if index != 0:
            raise TfjsConversionError(f"{ref!r}: only single-output ops are supported")
        if name not in self.values:
            raise TfjsConversionError(f"input {name!r} is not a node of the graph")
        return self.values[name]

    def order(self, outputs: list[str]) -> list[dict[str, Any]]:
        """Nodes the outputs depend on, inputs first (iterative DFS: graphs can be deep)."""
        seen: set[str] = set()
        done: list[dict[str, Any]] = []
        for out in outputs:
            stack: list[tuple[str, bool]] = [(out, False)]
            while stack:
                name, expanded = stack.pop()
                if expanded:
                    done.append(self.nodes[name])
                    continue
                if name in seen:
                    continue
                if name not in self.nodes:
                    raise TfjsConversionError(f"{name!r} is not a node of the graph")
                seen.add(name)
                stack.append((name, True))
                for ref in self.nodes[name].get("input", []):
                    if not ref.startswith("^"):
                        dep = _split_input(ref)[0]
                        if dep not in seen:
                            stack.append((dep, False))
        return done

    def run(self, outputs: list[str]) -> onnx.ModelProto:
        self.reserved = set(outputs)
        nodes = self.order(outputs)
        unknown = sorted({n["op"] for n in nodes} - SUPPORTED_OPS)
        if unknown:
            raise TfjsConversionError("unsupported TF ops: " + ", ".join(unknown)
                                      + f" (the converter handles {', '.join(sorted(SUPPORTED_OPS))})")
        for node in nodes:
            self.values[node["name"]] = self.convert_node(node)
        graph_outputs = []
        for out in outputs:
            value = self.values[out]
            if value.const is None and value.name in self.input_names:
                raise TfjsConversionError(f"output {out!r} is a graph input")
            src = self.as_tf(value, out + "__value")
            # Outputs carry the TF node's name (reserved in fresh(), so no internal value took it).
            self._names.add(out)
            self.onnx_nodes.append(helper.make_node("Identity", [src], [out], name=out + "__out"))
            graph_outputs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, None))
        self.onnx_nodes = _fuse_clips(self.onnx_nodes, self.initializers, set(outputs))
        graph = helper.make_graph(self.onnx_nodes, "tfjs", self.inputs, graph_outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                                  producer_name="engineshed.convert.tfjs")
        return _with_output_shapes(model)

    # -- ops
    def convert_node(self, node: dict[str, Any]) -> _Value:
        op, name = node["op"], node["name"]
        inputs = [i for i in node.get("input", []) if not i.startswith("^")]
        if op == "Placeholder":
            dtype = _attr(node, "dtype", "DT_FLOAT")
            if dtype not in _TF_DTYPES:
                raise TfjsConversionError(f"input {name!r}: dtype {dtype} is not supported")
            dims = (_attr(node, "shape") or {}).get("dim")
            shape = None if dims is None else [
                (int(d.get("size", -1)) if int(d.get("size", -1)) >= 0 else ("N" if i == 0 else None))
                for i, d in enumerate(dims)]
            self.inputs.append(helper.make_tensor_value_info(name, _TF_DTYPES[dtype], shape))
            self._names.add(name)
            self.input_names.add(name)
            return _Value(name, "tf", None if shape is None else len(shape))
        if op == "Const":
            if name in self.weights:
                arr = np.asarray(self.weights[name])
            elif _attr(node, "value") is not None:
                arr = _inline_tensor(_attr(node, "value"))
            else:
                raise TfjsConversionError(f"constant {name!r} has no weight in the manifest and no inline value")
            return _Value("", "tf", arr.ndim, arr)
        if op in ("Identity", "StopGradient", "Snapshot"):
            return self.value(inputs[0])
        if op in ("Conv2D", "DepthwiseConv2dNative", "_FusedConv2D", "_FusedDepthwiseConv2dNative",
                  "FusedDepthwiseConv2dNative"):
            return self.conv(node, inputs)
        if op in _ELEMENTWISE_BINARY:
            return self.binary(name, _ELEMENTWISE_BINARY[op], inputs)
        if op in _ELEMENTWISE_UNARY or op in ("Relu6", "LeakyRelu"):
            return self.unary(node, inputs[0])
        if op in ("MaxPool", "AvgPool"):
            return self.pool(node, inputs)
        if op in ("Pad", "PadV2"):
            return self.pad(node, inputs)
        if op == "Reshape":
            shape = self.const_input(inputs[1], f"{name}: the shape").astype(np.int64)
            x = self.as_tf(self.value(inputs[0]), name + "__x")
            s = self.materialise(_Value("", "tf", 1, shape), name + "__shape")
            return _Value(self.emit("Reshape", [x, s], name), "tf", int(shape.size))
        if op in ("MatMul", "_FusedMatMul"):
            return self.matmul(node, inputs)
        if op in _REDUCE:
            return self.reduce(node, inputs)
        if op == "Softmax":
            x = self.value(inputs[0])
            return _Value(self.emit("Softmax", [self.as_tf(x, name + "__x")], name, axis=-1), "tf", x.rank)
        if op in ("ConcatV2", "Concat"):
            return self.concat(node, inputs)
        raise TfjsConversionError(f"{name}: op {op} is not supported")  # unreachable: checked in run()

    def _activation(self, x: str, act: str, base: str, node: dict[str, Any]) -> str:
        if act == "Relu":
            return self.emit("Relu", [x], base)
        if act == "Relu6":
            lo = self.materialise(_Value("", "tf", 0, np.array(0, np.float32)), base + "__lo")
            hi = self.materialise(_Value("", "tf", 0, np.array(6, np.float32)), base + "__hi")
            return self.emit("Clip", [x, lo, hi], base)
        if act == "LeakyRelu":
            alpha = _attr(node, "leakyrelu_alpha", _attr(node, "alpha", 0.2))
            return self.emit("LeakyRelu", [x], base, alpha=float(alpha))
        if act == "Elu":
            return self.emit("Elu", [x], base, alpha=1.0)
        return self.emit(act, [x], base)  # Sigmoid, Tanh

    def unary(self, node: dict[str, Any], ref: str) -> _Value:
        x = self.value(ref)
        if x.const is not None:
            raise TfjsConversionError(f"{node['name']}: an op on constants only is not supported (fold it)")
        op = node["op"]
        if op in ("Relu6", "LeakyRelu", "Relu", "Sigmoid", "Tanh", "Elu"):
            out = self._activation(x.name, op, node["name"], node)
        else:
            out = self.emit(_ELEMENTWISE_UNARY[op], [x.name], node["name"])
        return _Value(out, x.layout, x.rank)

    def binary(self, name: str, onnx_op: str, inputs: list[str]) -> _Value:
        a, b = self.value(inputs[0]), self.value(inputs[1])
        if a.const is not None and b.const is not None:
            raise TfjsConversionError(f"{name}: an op on constants only is not supported (fold it)")
        live = [v for v in (a, b) if v.const is None]
        if any(v.layout == "nchw" for v in live) and all(
                v.layout == "nchw" or v.const is not None or v.rank == 4 for v in (a, b)) and all(
                v.const is None or v.const.ndim <= 4 for v in (a, b)):
            names = [self.as_nchw(v, f"{name}__{i}") for i, v in enumerate((a, b))]
            return _Value(self.emit(onnx_op, names, name), "nchw", 4)
        names = [self.as_tf(v, f"{name}__{i}") for i, v in enumerate((a, b))]
        ranks = [v.rank for v in (a, b)]
        rank = None if None in ranks else max(ranks)
        return _Value(self.emit(onnx_op, names, name), "tf", rank)

    def conv(self, node: dict[str, Any], inputs: list[str]) -> _Value:
        name, op = node["name"], node["op"]
        if _attr(node, "data_format", "NHWC") != "NHWC":
            raise TfjsConversionError(f"{name}: data_format {_attr(node, 'data_format')} is not supported")
        kernel = self.const_input(inputs[1], f"{name}: the filter").astype(np.float32)
        if kernel.ndim != 4:
            raise TfjsConversionError(f"{name}: filter must be 4-D, not {kernel.shape}")
        kh, kw, cin, cout = kernel.shape
        depthwise = "Depthwise" in op
        if depthwise:
            # [kh, kw, in, multiplier] -> [in*multiplier, 1, kh, kw], output channel c*multiplier + m
            weight = kernel.reshape(kh, kw, cin * cout).transpose(2, 0, 1)[:, None, :, :]
            group = cin
        else:
            weight = kernel.transpose(3, 2, 0, 1)  # HWIO -> OIHW
            group = 1
        attrs = self._window_attrs(node, name, [kh, kw])
        x = self.as_nchw(self.value(inputs[0]), name + "__x")
        w = self.materialise(_Value("", "nchw", 4, np.ascontiguousarray(weight)), name + "__w")
        conv_inputs = [x, w]
        fused = _attr(node, "fused_ops", []) if op.startswith("_Fused") or op.startswith("Fused") else []
        acts = list(fused)
        if acts[:1] == ["BiasAdd"]:
            bias = self.const_input(inputs[2], f"{name}: the bias").astype(np.float32).reshape(-1)
            conv_inputs.append(self.materialise(_Value("", "tf", 1, bias), name + "__b"))
            acts = acts[1:]
        if len(acts) > 1 or (acts and acts[0] not in _FUSED_ACTIVATIONS):
            raise TfjsConversionError(f"{name}: fused ops {fused} are not supported")
        out = self.emit("Conv", conv_inputs, name if not acts else name + "__conv", group=group, **attrs)
        if acts:
            out = self._activation(out, acts[0], name, node)
        return _Value(out, "nchw", 4)

    def _window_attrs(self, node: dict[str, Any], name: str, kernel: list[int] | None = None) -> dict[str, Any]:
        strides = _attr(node, "strides", [1, 1, 1, 1])
        dilations = _attr(node, "dilations", [1, 1, 1, 1])
        if len(strides) != 4 or strides[0] != 1 or strides[3] != 1:
            raise TfjsConversionError(f"{name}: strides {strides} are not supported")
        attrs: dict[str, Any] = {"strides": strides[1:3]}
        if dilations and dilations != [1, 1, 1, 1]:
            attrs["dilations"] = dilations[1:3]
        padding = _attr(node, "padding", "VALID")
        if padding == "SAME" and strides[1:3] == [1, 1]:
            # Stride 1: SAME pads (k-1)*d in all, the odd pixel at the end, whatever the input size. Explicit
            # pads, because onnxruntime refuses auto_pad with dilations.
            ksize = kernel if kernel is not None else _attr(node, "ksize", [1, 1, 1, 1])[1:3]
            d = attrs.get("dilations", [1, 1])
            total = [(k - 1) * di for k, di in zip(ksize, d)]
            attrs["pads"] = [total[0] // 2, total[1] // 2, total[0] - total[0] // 2, total[1] - total[1] // 2]
        elif padding == "SAME":
            if "dilations" in attrs:
                raise TfjsConversionError(f"{name}: SAME padding with both strides and dilations is not supported")
            attrs["auto_pad"] = "SAME_UPPER"  # TF's SAME puts the odd pixel at the end, like SAME_UPPER
        elif padding == "EXPLICIT":
            p = _attr(node, "explicit_paddings", [])
            if len(p) != 8:
                raise TfjsConversionError(f"{name}: explicit_paddings must list 8 values")
            attrs["pads"] = [p[2], p[4], p[3], p[5]]
        elif padding != "VALID":
            raise TfjsConversionError(f"{name}: padding {padding!r} is not supported")
        return attrs

    def pool(self, node: dict[str, Any], inputs: list[str]) -> _Value:
        name = node["name"]
        if _attr(node, "data_format", "NHWC") != "NHWC":
            raise TfjsConversionError(f"{name}: data_format {_attr(node, 'data_format')} is not supported")
        ksize = _attr(node, "ksize", [1, 1, 1, 1])
        attrs = self._window_attrs(node, name)
        attrs.pop("dilations", None)
        x = self.as_nchw(self.value(inputs[0]), name + "__x")
        onnx_op = "MaxPool" if node["op"] == "MaxPool" else "AveragePool"
        # TF's AvgPool leaves padding out of the average: ONNX's count_include_pad=0, the default.
        return _Value(self.emit(onnx_op, [x], name, kernel_shape=ksize[1:3], **attrs), "nchw", 4)

    def pad(self, node: dict[str, Any], inputs: list[str]) -> _Value:
        name = node["name"]
        paddings = self.const_input(inputs[1], f"{name}: the paddings").astype(np.int64)
        x = self.value(inputs[0])
        fill = 0.0
        if node["op"] == "PadV2":
            fill = float(self.const_input(inputs[2], f"{name}: the pad value"))
        if paddings.ndim != 2 or paddings.shape[1] != 2:
            raise TfjsConversionError(f"{name}: paddings must be [rank, 2]")
        if x.layout == "nchw":
            paddings = paddings[list(NCHW_PERM)]
            src, layout = x.name, "nchw"
        else:
            src, layout = self.as_tf(x, name + "__x"), "tf"
        pads = self.materialise(_Value("", "tf", 1, np.concatenate([paddings[:, 0], paddings[:, 1]])), name + "__pads")
        value = self.materialise(_Value("", "tf", 0, np.array(fill, np.float32)), name + "__value")
        return _Value(self.emit("Pad", [src, pads, value], name, mode="constant"), layout, paddings.shape[0])

    def matmul(self, node: dict[str, Any], inputs: list[str]) -> _Value:
        name = node["name"]
        a, b = self.value(inputs[0]), self.value(inputs[1])
        ta, tb = bool(_attr(node, "transpose_a", False)), bool(_attr(node, "transpose_b", False))
        x = self.as_tf(a, name + "__a")
        if ta:
            if a.rank != 2:
                raise TfjsConversionError(f"{name}: transpose_a needs a 2-D input")
            x = self.emit("Transpose", [x], name + "__at", perm=[1, 0])
        if b.const is not None:
            wb = b.const.astype(np.float32)
            y = self.materialise(_Value("", "tf", 2, np.ascontiguousarray(wb.T if tb else wb)), name + "__w")
        else:
            y = self.as_tf(b, name + "__b")
            if tb:
                y = self.emit("Transpose", [y], name + "__bt", perm=[1, 0])
        fused = _attr(node, "fused_ops", []) if node["op"] == "_FusedMatMul" else []
        acts = list(fused)
        steps = bool(acts)
        out = self.emit("MatMul", [x, y], name if not steps else name + "__mm")
        if acts[:1] == ["BiasAdd"]:
            bias = self.const_input(inputs[2], f"{name}: the bias").astype(np.float32).reshape(-1)
            bname = self.materialise(_Value("", "tf", 1, bias), name + "__bias")
            acts = acts[1:]
            out = self.emit("Add", [out, bname], name if not acts else name + "__add")
        if len(acts) > 1 or (acts and acts[0] not in _FUSED_ACTIVATIONS):
            raise TfjsConversionError(f"{name}: fused ops {fused} are not supported")
        if acts:
            out = self._activation(out, acts[0], name, node)
        return _Value(out, "tf", a.rank)

    def reduce(self, node: dict[str, Any], inputs: list[str]) -> _Value:
        name = node["name"]
        x = self.value(inputs[0])
        axes = [int(v) for v in np.atleast_1d(self.const_input(inputs[1], f"{name}: the axes"))]
        keep = bool(_attr(node, "keep_dims", False))
        onnx_op = _REDUCE[node["op"]]
        if x.rank is not None:
            axes = sorted(a % x.rank for a in axes)
        layout, src = "tf", None
        if x.layout == "nchw":
            mapped = sorted(NCHW_PERM.index(a) for a in axes)  # position of each TF axis in the NCHW tensor
            kept_tf = [NCHW_PERM[i] for i in range(4) if i not in mapped]
            if keep or kept_tf == sorted(kept_tf):
                src, axes, layout = x.name, mapped, ("nchw" if keep else "tf")
        if src is None:
            src = self.as_tf(x, name + "__x")
        rank = None if x.rank is None else (x.rank if keep else x.rank - len(axes))
        if onnx_op == "ReduceSum":  # axes became an input at opset 13
            ax = self.materialise(_Value("", "tf", 1, np.array(axes, np.int64)), name + "__axes")
            out = self.emit(onnx_op, [src, ax], name, keepdims=int(keep))
        else:
            out = self.emit(onnx_op, [src], name, axes=axes, keepdims=int(keep))
        return _Value(out, layout, rank)

    def concat(self, node: dict[str, Any], inputs: list[str]) -> _Value:
        name = node["name"]
        if node["op"] == "ConcatV2":
            axis_ref, refs = inputs[-1], inputs[:-1]
        else:
            axis_ref, refs = inputs[0], inputs[1:]
        axis = int(self.const_input(axis_ref, f"{name}: the axis"))
        values = [self.value(r) for r in refs]
        if all(v.layout == "nchw" for v in values):
            return _Value(self.emit("Concat", [v.name for v in values], name, axis=NCHW_PERM.index(axis % 4)), "nchw", 4)
        names = [self.as_tf(v, f"{name}__{i}") for i, v in enumerate(values)]
        return _Value(self.emit("Concat", names, name, axis=axis), "tf", values[0].rank)


def _fuse_clips(nodes: list[onnx.NodeProto], initializers: list[onnx.TensorProto],
                keep: set[str]) -> list[onnx.NodeProto]:
    """Relu / Min / Max chains with scalar constants (Keras' clipped ReLU: Relu, Minimum 6, Maximum 0) -> Clip.

    Why: onnxruntime fuses Conv + Clip into its blocked-layout convolution; separate Min and Max nodes break that
    chain, so every conv paid a layout reorder on each side (a third of faceres' time) plus two passes.
    Max(Min(x, hi), lo) and Min(Max(x, lo), hi) both equal Clip(x, lo, hi) when lo <= hi; a Relu before
    raises lo to 0.
    """
    scalars = {t.name: float(numpy_helper.to_array(t).reshape(-1)[0]) for t in initializers
               if math.prod(t.dims) == 1 and t.data_type == TensorProto.FLOAT}
    consumers: dict[str, int] = {}
    for n in nodes:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    producer = {n.output[0]: n for n in nodes}
    removed: set[int] = set()

    def bound(n: onnx.NodeProto) -> tuple[str, float, float, list[onnx.NodeProto]] | None:
        """(x, lo, hi, absorbed producers) when n computes clip(x, lo, hi); no side effects."""
        if n.op_type == "Relu":
            src, lo, hi = n.input[0], 0.0, math.inf
        elif n.op_type in ("Min", "Max") and len(n.input) == 2 and n.input[1] in scalars:
            src, c = n.input[0], scalars[n.input[1]]
            lo, hi = (-math.inf, c) if n.op_type == "Min" else (c, math.inf)
        else:
            return None
        prev = producer.get(src)
        if prev is not None and consumers.get(src) == 1 and src not in keep:
            inner = bound(prev)
            # clamp(clamp(x, ilo, ihi), lo, hi) = clamp(x, max(lo, ilo), min(hi, ihi)) when the ranges overlap
            if inner is not None and max(lo, inner[1]) <= min(hi, inner[2]):
                return inner[0], max(lo, inner[1]), min(hi, inner[2]), inner[3] + [prev]
        return src, lo, hi, []

    out: list[onnx.NodeProto] = []
    for n in reversed(nodes):  # outermost first, so each chain is fused from its end
        if id(n) in removed:
            continue
        b = bound(n)
        if b is None or not b[3]:  # nothing absorbed: a lone Relu, Min or Max stays as it is
            out.append(n)
            continue
        src, lo, hi, absorbed = b
        removed.update(id(p) for p in absorbed)
        inputs = [src]
        for tag, v in (("lo", lo), ("hi", hi)):
            if math.isinf(v):
                inputs.append("")
            else:
                name = f"{n.output[0]}__clip_{tag}"
                initializers.append(numpy_helper.from_array(np.array(v, np.float32), name))
                inputs.append(name)
        while inputs and inputs[-1] == "":
            inputs.pop()
        out.append(helper.make_node("Clip", inputs, list(n.output), name=n.name + "__clip"))
    out.reverse()
    used = {i for n in out for i in n.input}
    initializers[:] = [t for t in initializers if t.name in used]
    return out


def _const_to_nchw(arr: np.ndarray) -> np.ndarray:
    """A constant that broadcasts against an NHWC tensor, rearranged to broadcast against its NCHW form."""
    if arr.ndim == 0:
        return arr
    full = arr.reshape((1,) * (4 - arr.ndim) + arr.shape)
    return np.ascontiguousarray(full.transpose(NCHW_PERM))


def _with_output_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fill the outputs' shapes from shape inference, so readers (the registry) see e.g. [N, 1024]."""
    inferred = onnx.shape_inference.infer_shapes(model)
    known = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    for out in model.graph.output:
        if out.name in known and known[out.name].type.HasField("tensor_type"):
            out.type.CopyFrom(known[out.name].type)
    return model


def graph_outputs(model_json: Mapping[str, Any]) -> list[str]:
    """The outputs a TF.js model declares (its signature), else the nodes nothing consumes."""
    signature = model_json.get("signature") or {}
    outs = signature.get("outputs") if isinstance(signature, dict) else None
    if outs:
        return [_split_input(v.get("name", k) if isinstance(v, dict) else k)[0] for k, v in outs.items()]
    nodes = model_json["modelTopology"]["node"]
    used = {_split_input(i.lstrip("^"))[0] for n in nodes for i in n.get("input", [])}
    return [n["name"] for n in nodes if n["name"] not in used and n["op"] not in ("Const", "Placeholder", "NoOp")]


def convert(model_json: Mapping[str, Any] | bytes | str, read_file: Callable[[str], bytes],
            outputs: list[str] | None = None) -> onnx.ModelProto:
    """Convert a parsed (or raw) ``model.json``; ``read_file(path)`` returns a weight shard's bytes."""
    if isinstance(model_json, (bytes, str)):
        try:
            model_json = json.loads(model_json)
        except ValueError as exc:
            raise TfjsConversionError(f"model.json is not JSON: {exc}") from None
    if not isinstance(model_json, Mapping):
        raise TfjsConversionError("model.json must be a JSON object")
    if model_json.get("format", "graph-model") != "graph-model":
        raise TfjsConversionError(f"format {model_json.get('format')!r}: only TF.js graph models are supported "
                                  "(a layers model needs tensorflowjs_converter --output_format tfjs_graph_model)")
    topology = model_json.get("modelTopology")
    if not isinstance(topology, Mapping) or not isinstance(topology.get("node"), list):
        raise TfjsConversionError("model.json has no modelTopology.node list")
    if topology.get("library", {}).get("function"):
        raise TfjsConversionError("graph functions (control flow) are not supported")
    weights = read_weights(model_json.get("weightsManifest", []), read_file)
    nodes = topology["node"]
    if not all(isinstance(n, Mapping) and isinstance(n.get("name"), str) and isinstance(n.get("op"), str)
               for n in nodes):
        raise TfjsConversionError("every node needs a name and an op")
    wanted = outputs or graph_outputs(model_json)
    if not wanted:
        raise TfjsConversionError("the model has no outputs")
    return _Converter(list(nodes), weights).run(wanted)


def convert_dir(model_json_path: str | Path, outputs: list[str] | None = None) -> onnx.ModelProto:
    """Convert a ``model.json`` on disk whose shards lie beside it."""
    path = Path(model_json_path)
    base = path.parent
    return convert(path.read_bytes(), lambda p: (base / p).read_bytes(), outputs)
