"""Hand-built TF.js graph models (model.json + shard bytes) and numpy references of the TF ops they use."""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from engines.convert import tfjs


def _attr(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"b": value}
    if isinstance(value, int):
        return {"i": str(value)}
    if isinstance(value, float):
        return {"f": value}
    if isinstance(value, str):
        if value.startswith("DT_"):
            return {"type": value}
        return {"s": base64.b64encode(value.encode()).decode()}
    if isinstance(value, list) and value and isinstance(value[0], str):
        return {"list": {"s": [base64.b64encode(v.encode()).decode() for v in value]}}
    if isinstance(value, list):
        return {"list": {"i": [str(v) for v in value]}}
    raise TypeError(value)


class Graph:
    """Nodes and weights of one TF.js graph model; ``model()`` gives (model.json dict, read_file)."""

    def __init__(self) -> None:
        self.nodes: list[dict[str, Any]] = []
        self.weights: list[dict[str, Any]] = []
        self.blob = bytearray()

    def placeholder(self, name: str, shape: list[int]) -> str:
        self.nodes.append({"name": name, "op": "Placeholder", "attr": {
            "dtype": {"type": "DT_FLOAT"}, "shape": {"shape": {"dim": [{"size": str(d)} for d in shape]}}}})
        return name

    def const(self, name: str, value: np.ndarray, quantize: str | None = None) -> str:
        value = np.asarray(value)
        dtype = {"f": "float32", "i": "int32"}[value.dtype.kind]
        entry: dict[str, Any] = {"name": name, "shape": list(value.shape), "dtype": dtype}
        if quantize == "float16":
            self.blob += value.astype("<f2").tobytes()
            entry["quantization"] = {"dtype": "float16", "original_dtype": "float32"}
        elif quantize == "uint8":
            lo, hi = float(value.min()), float(value.max())
            scale = (hi - lo) / 255 or 1.0
            self.blob += np.round((value - lo) / scale).astype(np.uint8).tobytes()
            entry["quantization"] = {"dtype": "uint8", "scale": scale, "min": lo, "original_dtype": "float32"}
        else:
            self.blob += value.astype("<f4" if dtype == "float32" else "<i4").tobytes()
        self.weights.append(entry)
        self.nodes.append({"name": name, "op": "Const", "attr": {"dtype": {"type": "DT_FLOAT"}}})
        return name

    def op(self, op: str, name: str, inputs: list[str], **attrs: Any) -> str:
        node: dict[str, Any] = {"name": name, "op": op, "input": inputs, "attr": {"T": {"type": "DT_FLOAT"}}}
        for k, v in attrs.items():
            node["attr"][k] = _attr(v)
        self.nodes.append(node)
        return name

    def model(self, signature_outputs: list[str] | None = None, shards: int = 1) -> tuple[dict[str, Any], Any]:
        blob = bytes(self.blob)
        cut = math.ceil(len(blob) / shards) if blob else 0
        files = {f"group1-shard{i + 1}of{shards}.bin": blob[i * cut:(i + 1) * cut] for i in range(shards)}
        model = {"format": "graph-model", "modelTopology": {"node": self.nodes},
                 "weightsManifest": [{"paths": list(files), "weights": self.weights}]}
        if signature_outputs:
            model["signature"] = {"outputs": {f"{o}:0": {"name": f"{o}:0"} for o in signature_outputs}}
        return model, files.__getitem__


def run(graph: Graph, feeds: dict[str, np.ndarray], outputs: list[str] | None = None, **kw: Any) -> list[np.ndarray]:
    """Convert, check the ONNX model fully, run it on the CPU."""
    model_json, read = graph.model(**kw)
    model = tfjs.convert(model_json, read, outputs)
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


# ------------------------------------------------------------------ numpy references (TF semantics, NHWC)


def _same_pads(size: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _windows(x: np.ndarray, kh: int, kw: int, stride: int, padding: Any, dilation: int = 1,
             fill: float = 0.0) -> np.ndarray:
    """[N, OH, OW, kh, kw, C] patches, TF's padding."""
    n, h, w, c = x.shape
    if padding == "SAME":
        (pt, pb), (pl, pr) = _same_pads(h, kh, stride, dilation), _same_pads(w, kw, stride, dilation)
    elif padding == "VALID":
        pt = pb = pl = pr = 0
    else:
        pt, pb, pl, pr = padding
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=fill)
    oh = (xp.shape[1] - (kh - 1) * dilation - 1) // stride + 1
    ow = (xp.shape[2] - (kw - 1) * dilation - 1) // stride + 1
    out = np.empty((n, oh, ow, kh, kw, c), x.dtype)
    for a in range(kh):
        for b in range(kw):
            out[:, :, :, a, b, :] = xp[:, a * dilation: a * dilation + stride * oh: stride,
                                       b * dilation: b * dilation + stride * ow: stride, :][:, :oh, :ow]
    return out


def conv2d(x: np.ndarray, w: np.ndarray, stride: int = 1, padding: Any = "SAME", dilation: int = 1) -> np.ndarray:
    p = _windows(x.astype(np.float64), w.shape[0], w.shape[1], stride, padding, dilation)
    return np.einsum("nijabc,abco->nijo", p, w.astype(np.float64))


def depthwise(x: np.ndarray, w: np.ndarray, stride: int = 1, padding: Any = "SAME") -> np.ndarray:
    p = _windows(x.astype(np.float64), w.shape[0], w.shape[1], stride, padding)
    y = np.einsum("nijabc,abcm->nijcm", p, w.astype(np.float64))
    return y.reshape(*y.shape[:3], -1)


def max_pool(x: np.ndarray, k: int, stride: int, padding: str) -> np.ndarray:
    return _windows(x, k, k, stride, padding, fill=-np.inf).max(axis=(3, 4))


def avg_pool(x: np.ndarray, k: int, stride: int, padding: str) -> np.ndarray:
    total = _windows(x.astype(np.float64), k, k, stride, padding).sum(axis=(3, 4))
    count = _windows(np.ones_like(x[..., :1], np.float64), k, k, stride, padding).sum(axis=(3, 4))
    return total / count
