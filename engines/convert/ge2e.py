"""Resemblyzer's GE2E speaker encoder written in code as ONNX; weights from its ``pretrained.pt`` via torchzip.

The network (``resemblyzer/voice_encoder.py`` in the 0.1.4 wheel): ``nn.LSTM(40, 256, 3, batch_first=True)``,
the last layer's final hidden state, ``nn.Linear(256, 256)``, ReLU, then division by the L2 norm. Its input is
a batch of power (not log) mel spectrograms ``[N, frames, 40]`` (160 frames a partial utterance); its output is
``[N, 256]``, unit length, non-negative.

PyTorch stores each layer's four gates as ``[input, forget, cell, output]`` rows; ONNX's LSTM wants
``[input, output, forget, cell]``, and one bias ``[W_b; R_b]``. Each layer is one ONNX LSTM node (sequence
first, so the default ``layout=0``); the sequence output of one layer is the input of the next.

``build(state, utterance=True)`` adds the mean over the batch of partial embeddings (``[P, 160, 40]`` ->
``[1, 256]``, not renormalised): Resemblyzer's ``embed_utterance`` averages the partials and then normalises,
which the artifact heads do anyway.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["GE2EError", "HIDDEN", "LAYERS", "MELS", "PARTIAL_FRAMES", "build", "state_from_checkpoint"]

MELS = 40
HIDDEN = 256
LAYERS = 3
PARTIAL_FRAMES = 160
INPUT = "mels"
OUTPUT = "embedding"
OPSET = 17
IR_VERSION = 10
_PREFIX = "model_state."  # the checkpoint is {"model_state": state_dict, "step": ..., "optimizer_state": ...}


class GE2EError(ValueError):
    """The checkpoint lacks a tensor of the GE2E encoder, or one has the wrong shape."""


def state_from_checkpoint(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The encoder's tensors from ``torchzip.read_checkpoint(pretrained.pt)`` (prefix stripped)."""
    return {k[len(_PREFIX):]: v for k, v in tensors.items() if k.startswith(_PREFIX)} or dict(tensors)


def _gates_to_onnx(w: np.ndarray) -> np.ndarray:
    i, f, g, o = np.split(np.asarray(w, np.float32), 4, axis=0)
    return np.concatenate([i, o, f, g], axis=0)


def _get(state: Mapping[str, np.ndarray], key: str, shape: tuple[int, ...]) -> np.ndarray:
    if key not in state:
        raise GE2EError(f"the checkpoint has no {key!r}")
    value = np.asarray(state[key], np.float32)
    if value.shape != shape:
        raise GE2EError(f"{key!r} has shape {value.shape}, expected {shape}")
    return value


def build(state: Mapping[str, np.ndarray], *, utterance: bool = False) -> onnx.ModelProto:
    """The encoder graph: ``mels`` float32 ``[N, T, 40]`` -> ``embedding`` float32 ``[N, 256]`` (``[1, 256]``
    with ``utterance``)."""
    state = state_from_checkpoint(state)
    h = HIDDEN
    init: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = [helper.make_node("Transpose", [INPUT], ["x0"], perm=[1, 0, 2])]  # [T, N, 40]
    x = "x0"
    for layer in range(LAYERS):
        width = MELS if layer == 0 else h
        w = _gates_to_onnx(_get(state, f"lstm.weight_ih_l{layer}", (4 * h, width)))[None]
        r = _gates_to_onnx(_get(state, f"lstm.weight_hh_l{layer}", (4 * h, h)))[None]
        b = np.concatenate([
            _gates_to_onnx(_get(state, f"lstm.bias_ih_l{layer}", (4 * h,))),
            _gates_to_onnx(_get(state, f"lstm.bias_hh_l{layer}", (4 * h,))),
        ])[None]
        for name, value in (("W", w), ("R", r), ("B", b)):
            init.append(numpy_helper.from_array(value, f"lstm{layer}/{name}"))
        y, y_h = f"lstm{layer}/Y", f"lstm{layer}/Y_h"
        nodes.append(helper.make_node(
            "LSTM", [x, f"lstm{layer}/W", f"lstm{layer}/R", f"lstm{layer}/B"], [y, y_h], hidden_size=h,
        ))
        if layer < LAYERS - 1:  # Y is [T, 1, N, H]: drop the direction axis for the next layer
            init.append(numpy_helper.from_array(np.array([1], np.int64), f"lstm{layer}/axis"))
            nodes.append(helper.make_node("Squeeze", [y, f"lstm{layer}/axis"], [f"x{layer + 1}"]))
            x = f"x{layer + 1}"
    init.append(numpy_helper.from_array(np.array([0], np.int64), "hidden/axis"))
    nodes.append(helper.make_node("Squeeze", [f"lstm{LAYERS - 1}/Y_h", "hidden/axis"], ["hidden"]))  # [N, H]
    init.append(numpy_helper.from_array(_get(state, "linear.weight", (h, h)).T.copy(), "linear/W"))
    init.append(numpy_helper.from_array(_get(state, "linear.bias", (h,)), "linear/B"))
    init.append(numpy_helper.from_array(np.ones((h, 1), np.float32), "norm/ones"))
    init.append(numpy_helper.from_array(np.array(1e-12, np.float32), "norm/eps"))
    nodes += [
        helper.make_node("MatMul", ["hidden", "linear/W"], ["linear/mm"]),
        helper.make_node("Add", ["linear/mm", "linear/B"], ["linear/out"]),
        helper.make_node("Relu", ["linear/out"], ["raw"]),
        helper.make_node("Mul", ["raw", "raw"], ["norm/sq"]),
        helper.make_node("MatMul", ["norm/sq", "norm/ones"], ["norm/sum"]),
        helper.make_node("Sqrt", ["norm/sum"], ["norm/len"]),
        helper.make_node("Max", ["norm/len", "norm/eps"], ["norm/safe"]),
        helper.make_node("Div", ["raw", "norm/safe"], ["partials" if utterance else OUTPUT]),
    ]
    if utterance:
        nodes.append(helper.make_node("ReduceMean", ["partials"], [OUTPUT], axes=[0], keepdims=1))
    batch = 1 if utterance else "N"
    graph = helper.make_graph(
        nodes, "ge2e-utterance" if utterance else "ge2e",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", "T", MELS])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [batch, h])],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    model.producer_name = "engineshed"
    return model
