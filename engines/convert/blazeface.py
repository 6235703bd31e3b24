"""BlazeFace's box decoding and non-maximum suppression, appended to the converted raw graph.

The raw TF.js BlazeFace gives, per anchor, a score logit and 16 regressors (box centre x, y, width,
height, then six keypoints x, y), all in input pixels relative to the anchor centre; two heads: 512
anchors on the stride-``size/16`` grid (2 per cell) and 384 on the stride-``size/8`` grid (6 per
cell), exactly as Human's decoder lays them out (``src/face/blazeface.ts`` and ``generateAnchors`` in
``src/face/facemeshutil.ts`` of ``@vladmandic/human`` 3.3.6, read to check this). Doing the decoding in the graph means the
registered model answers what the contract asks of a detector: ``boxes`` ``[K,4]`` (x1, y1, x2, y2
in input pixels), ``scores`` ``[K]`` (best first) and ``keypoints`` ``[K,6,2]`` (right eye, left eye,
nose, mouth, right ear, left ear; x, y in input pixels), with no decoding code outside the file.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["anchors", "add_detection_head", "decode"]

SCORE_THRESHOLD = 0.5  # MediaPipe's min_score_thresh
IOU_THRESHOLD = 0.3  # MediaPipe's min_suppression_threshold
MAX_DETECTIONS = 100
# (raw score output, raw regressor output) per anchor grid, in anchor order
HEADS = (("Identity", "Identity_2"), ("Identity_1", "Identity_3"))


def anchors(size: int) -> np.ndarray:
    """Anchor centres ``[896, 2]`` (x, y) in input pixels for a ``size``×``size`` input."""
    out = []
    for stride, per_cell in ((size // 16, 2), (size // 8, 6)):
        cells = (size + stride - 1) // stride
        for gy in range(cells):
            for gx in range(cells):
                out += [(stride * (gx + 0.5), stride * (gy + 0.5))] * per_cell
    return np.array(out, dtype=np.float32)


def decode(scores_logit: np.ndarray, regressors: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Numpy decoding of raw outputs (``[896]``, ``[896,16]``) before NMS: boxes, scores, keypoints."""
    a = anchors(size)
    centre, half = regressors[:, 0:2] + a, regressors[:, 2:4] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    scores = (1 / (1 + np.exp(-np.clip(scores_logit.astype(np.float64), -100, 100)))).astype(np.float32)
    return boxes, scores, regressors[:, 4:16].reshape(-1, 6, 2) + a[:, None, :]


def add_detection_head(raw: onnx.ModelProto, size: int, *, score_threshold: float = SCORE_THRESHOLD,
                       iou_threshold: float = IOU_THRESHOLD, max_detections: int = MAX_DETECTIONS) -> onnx.ModelProto:
    """``raw`` (the converted BlazeFace with its four raw outputs) with decoding + NMS as its outputs."""
    model = onnx.ModelProto()
    model.CopyFrom(raw)
    g = model.graph
    names = {o.name for o in g.output}
    need = {n for head in HEADS for n in head}
    if not need <= names:
        raise ValueError(f"not a raw BlazeFace graph: outputs {sorted(names)}, expected {sorted(need)}")
    count = len(anchors(size))

    def const(name: str, value: np.ndarray) -> str:
        g.initializer.append(numpy_helper.from_array(value, name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs: object) -> str:
        g.node.append(helper.make_node(op, inputs, [output], name="decode/" + output, **attrs))
        return output

    i64 = lambda *v: np.array(v, dtype=np.int64)  # noqa: E731
    f32 = lambda *v: np.array(v, dtype=np.float32)  # noqa: E731
    logit = node("Concat", [HEADS[0][0], HEADS[1][0]], "decode/logit_cat", axis=1)
    logit = node("Reshape", [logit, const("decode/shape_n", i64(count))], "decode/logit")
    reg = node("Concat", [HEADS[0][1], HEADS[1][1]], "decode/reg_cat", axis=1)
    reg = node("Reshape", [reg, const("decode/shape_n16", i64(count, 16))], "decode/reg")
    clipped = node("Clip", [logit, const("decode/lo", f32(-100)), const("decode/hi", f32(100))], "decode/clipped")
    all_scores = node("Sigmoid", [clipped], "decode/all_scores")

    def cols(start: int, end: int, out: str) -> str:
        return node("Slice", [reg, const(out + "/s", i64(start)), const(out + "/e", i64(end)),
                              const(out + "/a", i64(1))], out)

    anchor = const("decode/anchors", anchors(size))
    centre = node("Add", [cols(0, 2, "decode/offset"), anchor], "decode/centre")
    half = node("Mul", [cols(2, 4, "decode/size"), const("decode/half", f32(0.5))], "decode/halfsize")
    lo = node("Sub", [centre, half], "decode/lo_corner")
    hi = node("Add", [centre, half], "decode/hi_corner")
    all_boxes = node("Concat", [lo, hi], "decode/all_boxes", axis=1)
    kp = node("Reshape", [cols(4, 16, "decode/kp_offset"), const("decode/shape_kp", i64(count, 6, 2))], "decode/kp_raw")
    anchor3 = node("Unsqueeze", [anchor, const("decode/axis1", i64(1))], "decode/anchor3")
    all_kp = node("Add", [kp, anchor3], "decode/all_keypoints")
    # ONNX NMS wants [batch, boxes, 4] and [batch, classes, boxes]; IoU does not care that x comes first.
    b3 = node("Unsqueeze", [all_boxes, const("decode/axis0", i64(0))], "decode/boxes3")
    s3 = node("Reshape", [all_scores, const("decode/shape_11n", i64(1, 1, count))], "decode/scores3")
    selected = node("NonMaxSuppression", [b3, s3, const("decode/max", i64(max_detections)),
                                          const("decode/iou", f32(iou_threshold)),
                                          const("decode/min_score", f32(score_threshold))], "decode/selected")
    index = node("Gather", [selected, const("decode/col2", np.array(2, dtype=np.int64))], "decode/index", axis=1)
    del g.output[:]
    node("Gather", [all_boxes, index], "boxes", axis=0)
    node("Gather", [all_scores, index], "scores", axis=0)
    node("Gather", [all_kp, index], "keypoints", axis=0)
    g.output.extend([
        helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["K", 4]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["K"]),
        helper.make_tensor_value_info("keypoints", TensorProto.FLOAT, ["K", 6, 2]),
    ])
    return model
