"""torchvision's MobileNetV2, written out as an ONNX graph, with weights from a state dict (numpy).

The architecture is code here (torchvision.models.mobilenetv2, width 1.0): a 3×3 stride-2 stem, 17
inverted-residual blocks (expand 1×1, depthwise 3×3, project 1×1; a skip when stride 1 and the width
stays), a 1×1 conv to 1280, global average pooling, then the ImageNet classifier. Every BatchNorm
(eval mode, eps 1e-5) is folded into the conv before it, so the graph is Conv, Clip (ReLU6), Add,
GlobalAveragePool and Gemm only.

Input ``images`` NCHW ``[N, 3, 224, 224]`` float32, RGB, ImageNet mean/std normalised; outputs
``features`` ``[N, 1280]`` (the pooled embedding) and, optionally, ``logits`` ``[N, 1000]``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["INVERTED_RESIDUAL_SETTING", "MEAN", "STD", "build", "MobileNetV2Error"]

IR_VERSION = 10
OPSET = 17
BN_EPS = 1e-5
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# (expansion t, output channels c, repeats n, first stride s), as in torchvision
INVERTED_RESIDUAL_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                             (6, 160, 3, 2), (6, 320, 1, 1))


class MobileNetV2Error(ValueError):
    """The state dict does not hold torchvision MobileNetV2 weights."""


class _Builder:
    def __init__(self, state: Mapping[str, np.ndarray]):
        self.state = state
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.used: set[str] = set()
        six = numpy_helper.from_array(np.array(6.0, np.float32), "six")
        zero = numpy_helper.from_array(np.array(0.0, np.float32), "zero")
        self.inits += [six, zero]

    def get(self, key: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        if key not in self.state:
            raise MobileNetV2Error(f"state dict lacks {key!r}")
        arr = np.asarray(self.state[key], dtype=np.float32)
        if shape is not None and arr.shape != shape:
            raise MobileNetV2Error(f"{key}: shape {arr.shape}, expected {shape}")
        self.used.add(key)
        return arr

    def conv_bn(self, x: str, conv: str, bn: str, cin: int, cout: int, k: int, stride: int, groups: int,
                relu6: bool) -> str:
        w = self.get(conv + ".weight", (cout, cin // groups, k, k))
        gamma, beta = self.get(bn + ".weight", (cout,)), self.get(bn + ".bias", (cout,))
        mean, var = self.get(bn + ".running_mean", (cout,)), self.get(bn + ".running_var", (cout,))
        self.used.add(bn + ".num_batches_tracked")
        scale = gamma / np.sqrt(var + BN_EPS)
        wf = (w * scale[:, None, None, None]).astype(np.float32)
        bf = (beta - mean * scale).astype(np.float32)
        self.inits += [numpy_helper.from_array(wf, conv + ".w"), numpy_helper.from_array(bf, conv + ".b")]
        out = conv + ".out"
        pad = (k - 1) // 2
        self.nodes.append(helper.make_node("Conv", [x, conv + ".w", conv + ".b"], [out], name=conv,
                                           kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4,
                                           group=groups))
        if not relu6:
            return out
        act = conv + ".relu6"
        self.nodes.append(helper.make_node("Clip", [out, "zero", "six"], [act], name=act))
        return act


def build(state: Mapping[str, np.ndarray], *, logits: bool = False, input_size: int = 224) -> onnx.ModelProto:
    """The ONNX MobileNetV2 for a torchvision state dict (``features.*``, ``classifier.1.*``)."""
    b = _Builder(state)
    x = b.conv_bn("images", "features.0.0", "features.0.1", 3, 32, 3, 2, 1, True)
    cin, index = 32, 1
    for t, c, n, s in INVERTED_RESIDUAL_SETTING:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * t
            p = f"features.{index}.conv"
            y, layer = x, 0
            if t != 1:
                y = b.conv_bn(y, f"{p}.0.0", f"{p}.0.1", cin, hidden, 1, 1, 1, True)
                layer = 1
            y = b.conv_bn(y, f"{p}.{layer}.0", f"{p}.{layer}.1", hidden, hidden, 3, stride, hidden, True)
            y = b.conv_bn(y, f"{p}.{layer + 1}", f"{p}.{layer + 2}", hidden, c, 1, 1, 1, False)
            if stride == 1 and cin == c:
                out = f"features.{index}.add"
                b.nodes.append(helper.make_node("Add", [x, y], [out], name=out))
                y = out
            x, cin, index = y, c, index + 1
    x = b.conv_bn(x, f"features.{index}.0", f"features.{index}.1", cin, 1280, 1, 1, 1, True)
    b.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"], name="pool"))
    b.nodes.append(helper.make_node("Flatten", ["pooled"], ["features"], name="flatten", axis=1))
    outputs = [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 1280])]
    if logits:
        w = b.get("classifier.1.weight")
        if w.ndim != 2 or w.shape[1] != 1280:
            raise MobileNetV2Error(f"classifier.1.weight: shape {w.shape}, expected [classes, 1280]")
        bias = b.get("classifier.1.bias", (w.shape[0],))
        b.inits += [numpy_helper.from_array(w, "classifier.w"), numpy_helper.from_array(bias, "classifier.b")]
        b.nodes.append(helper.make_node("Gemm", ["features", "classifier.w", "classifier.b"], ["logits"],
                                        name="classifier", transB=1))
        outputs.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", int(w.shape[0])]))
    unused = sorted(set(state) - b.used - ({"classifier.1.weight", "classifier.1.bias"} if not logits else set()))
    if unused:
        raise MobileNetV2Error(f"state dict has weights MobileNetV2 does not use: {', '.join(unused[:5])}")
    graph = helper.make_graph(
        b.nodes, "mobilenet_v2",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, input_size, input_size])],
        outputs, b.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                             producer_name="engineshed.convert.mobilenet_v2")
