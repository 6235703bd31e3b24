"""Find and align faces in one ONNX graph: photo in, detections and aligned face crops out.

The graph (the "front" of the face engine's artifact, also what training runs in the decode
processes, so both see the same crops) takes one photo and does::

    image uint8 [H, W, 3] RGB
      -> pad bottom/right to a square of side S = max(H, W)
      -> bilinear resize to P·D with P = MAX_SIDE // D (an upsampling: S is at most MAX_SIDE), then P×P
         average pooling to D×D (the detector's side): a box-filtered letterbox that does not alias
      -> the registered detector (its manifest's value mapping baked in): boxes, scores, 6 keypoints
      -> detections under the minimum confidence dropped, at most MAX_FACES kept, best first
      -> per face, the least-squares similarity transform mapping the template's eyes, nose and
         mouth onto the detected ones (closed form, no solver)
      -> GridSample of the photo at 2× the crop's resolution, 2×2 average pooling: CROP×CROP crops,
         rounded to uint8 (what an embedding backbone takes, engines.backbone); a photo without a face
         gets one crop of the identity transform when ``pad_one`` (zero-row batches are refused)

Outputs: ``boxes`` float32 [K, 4] (x1, y1, x2, y2 in the photo's pixels), ``detection_scores`` [K],
``landmarks`` [K, 6, 2] (right eye, left eye, nose, mouth, right ear, left ear; x, y in the photo's
pixels), ``aligned`` uint8 [K, CROP, CROP, 3]. K may be 0.

Photos whose longer side is over MAX_SIDE are shrunk by the caller before the graph (Pillow's
antialiased thumbnail, :func:`load_photo`), so the letterbox resize only ever upsamples; boxes are
then in the shrunk photo's pixels and the caller scales them back (:func:`scale_back`).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.compose import add_prefix
from PIL import Image, ImageOps

from engines.backbone import INPUT, IR_VERSION
from engines.decode import DEFAULT_MAX_PIXELS, error_text
from engines.model_backbone import _preprocess

__all__ = [
    "CROP",
    "KEYPOINTS",
    "MAX_FACES",
    "MAX_SIDE",
    "PhotoTooLarge",
    "TEMPLATE",
    "build_front",
    "crop_sharpness",
    "load_photo",
    "opset_of",
    "region_crop",
]

CROP = 224  # the aligned crop's side (the face-embedding model's input)
SUPERSAMPLE = 2  # the crop is sampled at 2× and averaged down, so large faces do not alias
MAX_SIDE = 1024  # photos are shrunk to at most this on their longer side before the graph
SHARPNESS_SIDE = 112  # the template scale sharpness is measured at
MAX_FACES = 32  # most faces aligned per photo (best detection scores first)
PHOTO = "image"
KEYPOINTS = ("rightEye", "leftEye", "nose", "mouth", "rightEar", "leftEar")
# The usual 112×112 five-point template (ArcFace), scaled to the crop, its mouth corners averaged to one
# mouth point because BlazeFace gives one; eyes in image order (the subject's right eye is on the left).
TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [56.1396, 92.2848]], np.float64)
TEMPLATE_SIDE = 112
MIN_OPSET = 17
_USED = (0, 1, 2, 3)  # which detector keypoints the template matches


class PhotoTooLarge(ValueError):
    """The photo has more pixels than allowed (read from its header; nothing was decoded)."""


def load_photo(blob: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int = MAX_SIDE) -> tuple[np.ndarray, float]:
    """Decode a photo to uint8 [H, W, 3] RGB (EXIF orientation applied), longer side at most ``max_side``.

    Returns the array and the factor from its pixels back to the photo's own (1.0 when not shrunk).
    Raises ValueError with a readable message for what Pillow cannot read or what is too large.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(blob))
            width, height = image.size
            if width * height > max_pixels:
                raise PhotoTooLarge(f"{width}×{height} is over {max_pixels} pixels")
            image.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale when that still covers it
            image = ImageOps.exif_transpose(image).convert("RGB")
    except ValueError:
        raise
    except Exception as exc:  # Pillow raises OSError, SyntaxError, DecompressionBomb... for bad data
        raise ValueError(error_text(exc)) from None
    # draft() may have decoded at a reduced scale; orientation does not change the longer side.
    full = max(width, height)
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return np.ascontiguousarray(np.asarray(image, np.uint8)), full / max(image.size)


def region_crop(photo: np.ndarray, box: tuple[float, float, float, float], side: int) -> np.ndarray:
    """The square around ``box`` (x1, y1, x2, y2 in ``photo``'s pixels, its longer side) resized to side×side.

    What stands in for alignment where no landmarks are known: a face crop the detector finds nothing in, or a
    region a user pinned. Outside the photo is black, as in the aligned crops.
    """
    x1, y1, x2, y2 = box
    cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1, 1.0) / 2
    square = Image.fromarray(photo).crop((round(cx - half), round(cy - half), round(cx + half), round(cy + half)))
    return np.ascontiguousarray(np.asarray(square.resize((side, side), Image.Resampling.BILINEAR, reducing_gap=2.0)))


def crop_sharpness(crop: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of an aligned face, grey, at the 112×112 template scale.

    The CROP×CROP aligned crop is converted to grey (Pillow's "L": ITU-R 601-2 luma, 0-255 pixel
    values) and box-averaged to 112×112, the standard five-point template's own size, so the figure
    describes the face at a fixed scale whatever the photo's size. Measured on real photos: sharp
    faces 50 to 800; the same faces after a Gaussian blur of 2 % of the face width 15 to 150, of 4 %
    under 35.
    """
    grey = Image.fromarray(crop).convert("L").resize((SHARPNESS_SIDE, SHARPNESS_SIDE), Image.Resampling.BOX)
    g = np.asarray(grey, np.float32)
    lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4.0 * g[1:-1, 1:-1]
    return float(lap.var())


def opset_of(model: onnx.ModelProto) -> int:
    """The default-domain opset a model imports."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


class _Graph:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, name: str, value: Any, dtype: Any = np.float32) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype), "face/" + name))
        return "face/" + name

    def op(self, op: str, inputs: list[str], name: str, *, outputs: int = 1, **attrs: Any) -> Any:
        outs = [f"face/{name}"] if outputs == 1 else [f"face/{name}_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, outs, name="face/" + name, **attrs))
        return outs[0] if outputs == 1 else outs


def _detector_parts(detector: bytes, manifest: Mapping[str, Any]) -> tuple[onnx.ModelProto, int, dict[str, str]]:
    """The detector graph with its names prefixed ``det/``, its input side, and its output names."""
    spec = manifest.get("input") or {}
    side = int(spec.get("height") or 0)
    if side <= 0 or int(spec.get("width") or 0) != side or int(spec.get("channels", 3)) != 3:
        raise ValueError("the detector must take square RGB images (manifest input height = width, 3 channels)")
    proto = onnx.load_from_string(detector)
    if opset_of(proto) < MIN_OPSET:  # GridSample is opset 16
        proto = onnx.version_converter.convert_version(proto, MIN_OPSET)
    out_spec = manifest.get("output") or {}
    names = {key: str(out_spec.get(key) or key) for key in ("boxes", "scores", "keypoints")}
    have = {o.name for o in proto.graph.output}
    missing = [f"{key} ({name})" for key, name in names.items() if name not in have]
    if missing:
        raise ValueError(
            "the face engine aligns on detected keypoints: the detector must give boxes [K,4], scores [K] and "
            f"keypoints [K,6,2] (eyes, nose, mouth first); it lacks {', '.join(missing)}"
        )
    return add_prefix(proto, "det/"), side, {k: "det/" + v for k, v in names.items()}


def build_front(
    detector: bytes,
    manifest: Mapping[str, Any],
    *,
    min_confidence: float,
    crop: int = CROP,
    pad_one: bool = False,
) -> onnx.ModelProto:
    """The detect-and-align graph (module docstring) around a registered detector.

    ``pad_one`` keeps, for a photo without a face, one crop of the identity transform (``aligned`` has
    max(K, 1) rows) so that what follows sees at least one row; the artifact uses it and slices its
    answers back to K (a zero-row batch is not something every backbone operator accepts). Raises ValueError when the
    detector does not give what alignment needs.
    """
    det, side, det_out = _detector_parts(detector, manifest)
    det_input = next(i for i in det.graph.input if i.name not in {t.name for t in det.graph.initializer})
    g = _Graph()
    # One transpose, of the uint8 photo: it is the largest tensor here, and GridSample takes NCHW too.
    photo_u8 = g.op("Transpose", [g.op("Unsqueeze", [PHOTO, g.const("ax0", [0], np.int64)], "photo4")], "photo_u8",
                    perm=[0, 3, 1, 2])
    photo_nchw = g.op("Cast", [photo_u8], "photo_nchw", to=TensorProto.FLOAT)  # [1, 3, H, W]
    shape = g.op("Shape", [PHOTO], "shape")
    hw = g.op("Slice", [shape, g.const("s0", [0], np.int64), g.const("s2", [2], np.int64)], "hw")
    # Elementwise forms rather than Reduce*: their axes moved from attribute to input at opset 18, and
    # the graph is composed at whatever opset the embedding model needs.
    h = g.op("Slice", [hw, g.const("i0", [0], np.int64), g.const("i1", [1], np.int64)], "h")
    s = g.op("Max", [h, g.op("Slice", [hw, g.const("i1b", [1], np.int64), g.const("i2", [2], np.int64)], "w")], "side")
    extra = g.op("Sub", [g.op("Concat", [s, s], "ss", axis=0), hw], "extra")  # [2]: S-H, S-W
    pads = g.op("Concat", [g.const("z6", [0, 0, 0, 0, 0, 0], np.int64), extra], "pads", axis=0)
    nchw = g.op("Pad", [photo_nchw, pads], "square", mode="constant")  # [1, 3, S, S]
    pool = max(1, MAX_SIDE // side)
    big = pool * side
    up = g.op("Resize", [nchw, "", "", g.const("big", [1, 3, big, big], np.int64)], "up",
              mode="linear", coordinate_transformation_mode="half_pixel")
    letterbox = g.op("AveragePool", [up], "letterbox", kernel_shape=[pool, pool], strides=[pool, pool])  # [1, 3, D, D]
    rounded = g.op("Clip", [g.op("Round", [letterbox], "lb_round"), g.const("lo", 0.0), g.const("hi", 255.0)], "lb_clip")
    nhwc = g.op("Transpose", [rounded], "lb_nhwc", perm=[0, 2, 3, 1])
    g.nodes.append(helper.make_node("Cast", [nhwc], [INPUT], name="face/lb_uint8", to=TensorProto.UINT8))
    pre_nodes, pre_inits = _preprocess(manifest["input"], det_input.type.tensor_type.elem_type, det_input.name)

    # Detections: keep those over the confidence, at most MAX_FACES, best first.
    scores_all = g.op("Reshape", [det_out["scores"], g.const("flat", [-1], np.int64)], "det_scores")
    keep = g.op("GreaterOrEqual", [scores_all, g.const("min_conf", float(min_confidence))], "keep")
    kept_scores = g.op("Compress", [scores_all, keep], "kept_scores", axis=0)
    count = g.op("Shape", [kept_scores], "kept_count")
    k = g.op("Min", [count, g.const("max_faces", [MAX_FACES], np.int64)], "k")
    top_scores, top_idx = g.op("TopK", [kept_scores, k], "top", outputs=2, axis=0, largest=1, sorted=1)
    kept_index = g.op("Compress", [g.op("Range", [g.const("r0", 0, np.int64), g.op("Squeeze", [g.op("Shape", [scores_all], "n_all")], "n_all_s"), g.const("r1", 1, np.int64)], "all_index"), keep], "kept_index", axis=0)
    chosen = g.op("Gather", [kept_index, top_idx], "chosen", axis=0)
    to_photo = g.op("Div", [g.op("Cast", [s], "side_f", to=TensorProto.FLOAT), g.const("det_side", float(side))], "to_photo")
    boxes_det = g.op("Gather", [g.op("Reshape", [det_out["boxes"], g.const("b4", [-1, 4], np.int64)], "det_boxes"), chosen], "boxes_det", axis=0)
    kps_det = g.op("Gather", [g.op("Reshape", [det_out["keypoints"], g.const("k62", [-1, 6, 2], np.int64)], "det_kps"), chosen], "kps_det", axis=0)
    boxes = g.op("Mul", [boxes_det, to_photo], "boxes_photo")
    kps = g.op("Mul", [kps_det, to_photo], "kps_photo")  # [K, 6, 2]

    # Similarity (template -> photo) by least squares: p = [[a, -b], [b, a]] t + c.
    template = TEMPLATE * (crop / TEMPLATE_SIDE)
    tmpl = template - template.mean(axis=0)
    denom = float((tmpl**2).sum())
    used = g.op("Gather", [kps, g.const("used", list(_USED), np.int64)], "used_kps", axis=1)  # [K, 4, 2]
    total = g.op("ReduceSum", [used, g.const("ax1m", [1], np.int64)], "kp_sum", keepdims=1)  # axes an input since 13
    mean = g.op("Div", [total, g.const("n_used", float(len(_USED)))], "kp_mean")  # [K, 1, 2]
    centred = g.op("Sub", [used, mean], "kp_centred")
    px = g.op("Squeeze", [g.op("Slice", [centred, g.const("c0", [0], np.int64), g.const("c1", [1], np.int64), g.const("a2", [2], np.int64)], "px3"), g.const("a2b", [2], np.int64)], "px")
    py = g.op("Squeeze", [g.op("Slice", [centred, g.const("c1b", [1], np.int64), g.const("c2", [2], np.int64), g.const("a2c", [2], np.int64)], "py3"), g.const("a2d", [2], np.int64)], "py")
    tx, ty = g.const("tx", tmpl[:, 0] / denom), g.const("ty", tmpl[:, 1] / denom)
    a = g.op("ReduceSum", [g.op("Add", [g.op("Mul", [px, tx], "pxtx"), g.op("Mul", [py, ty], "pyty")], "a_terms"), g.const("ax1", [1], np.int64)], "a", keepdims=1)  # [K, 1]
    b = g.op("ReduceSum", [g.op("Sub", [g.op("Mul", [py, tx], "pytx"), g.op("Mul", [px, ty], "pxty")], "b_terms"), g.const("ax1b", [1], np.int64)], "b", keepdims=1)
    mx = g.op("Reshape", [g.op("Slice", [mean, g.const("m0", [0], np.int64), g.const("m1", [1], np.int64), g.const("a2e", [2], np.int64)], "mx3"), g.const("k1", [-1, 1], np.int64)], "mx")
    my = g.op("Reshape", [g.op("Slice", [mean, g.const("m1b", [1], np.int64), g.const("m2", [2], np.int64), g.const("a2f", [2], np.int64)], "my3"), g.const("k1b", [-1, 1], np.int64)], "my")
    t0 = template.mean(axis=0)
    cx = g.op("Sub", [mx, g.op("Sub", [g.op("Mul", [a, g.const("t0x", float(t0[0]))], "at0x"), g.op("Mul", [b, g.const("t0y", float(t0[1]))], "bt0y")], "rot_x")], "cx")
    cy = g.op("Sub", [my, g.op("Add", [g.op("Mul", [b, g.const("t0x2", float(t0[0]))], "bt0x"), g.op("Mul", [a, g.const("t0y2", float(t0[1]))], "at0y")], "rot_y")], "cy")
    # max(K, 1) crops: GridSample and pooling refuse a zero-row grid, so a photo without a face gets one
    # crop of the identity transform, which the caller drops (an extra crop per photo would double the cost).
    rows = g.op("Max", [k, g.const("one_row", [1], np.int64)], "rows")
    zero = g.const("row0", [0], np.int64)

    def padded(x: str, fill: float, name: str) -> str:
        joined = g.op("Concat", [x, g.const(name + "_fill", [[fill]])], name + "_joined", axis=0)
        return g.op("Slice", [joined, zero, rows, g.const(name + "_axis", [0], np.int64)], name + "_rows")

    a, b, cx, cy = padded(a, 1.0, "a"), padded(b, 0.0, "b"), padded(cx, 0.0, "cx"), padded(cy, 0.0, "cy")

    # Sampling grid: output pixel centres (at SUPERSAMPLE× resolution) in template coordinates.
    n = crop * SUPERSAMPLE
    centres = (np.arange(n, dtype=np.float64) + 0.5) / SUPERSAMPLE
    gx_t = g.const("grid_x", centres.reshape(1, 1, n))
    gy_t = g.const("grid_y", centres.reshape(1, n, 1))
    a3 = g.op("Unsqueeze", [a, g.const("ax2", [2], np.int64)], "a3")  # [K, 1, 1]
    b3 = g.op("Unsqueeze", [b, g.const("ax2b", [2], np.int64)], "b3")
    cx3 = g.op("Unsqueeze", [cx, g.const("ax2c", [2], np.int64)], "cx3")
    cy3 = g.op("Unsqueeze", [cy, g.const("ax2d", [2], np.int64)], "cy3")
    X = g.op("Add", [g.op("Sub", [g.op("Mul", [a3, gx_t], "ax"), g.op("Mul", [b3, gy_t], "by")], "xrot"), cx3], "X")  # [K, n, n]
    Y = g.op("Add", [g.op("Add", [g.op("Mul", [b3, gx_t], "bx"), g.op("Mul", [a3, gy_t], "ay")], "yrot"), cy3], "Y")
    hw_f = g.op("Cast", [hw], "hw_f", to=TensorProto.FLOAT)
    h_f = g.op("Slice", [hw_f, g.const("h0", [0], np.int64), g.const("h1", [1], np.int64)], "h_f")
    w_f = g.op("Slice", [hw_f, g.const("w1", [1], np.int64), g.const("w2", [2], np.int64)], "w_f")
    two, one = g.const("two", 2.0), g.const("one", 1.0)
    gxn = g.op("Sub", [g.op("Div", [g.op("Mul", [X, two], "X2"), w_f], "Xw"), one], "gxn")  # align_corners=0
    gyn = g.op("Sub", [g.op("Div", [g.op("Mul", [Y, two], "Y2"), h_f], "Yh"), one], "gyn")
    last = g.const("ax3", [3], np.int64)
    grid = g.op("Concat", [g.op("Unsqueeze", [gxn, last], "gx4"), g.op("Unsqueeze", [gyn, last], "gy4")], "grid", axis=3)
    grid1 = g.op("Reshape", [grid, g.const("grid1", [1, -1, n, 2], np.int64)], "grid_stacked")  # faces stacked in height
    sampled = g.op("GridSample", [photo_nchw, grid1], "sampled", mode="bilinear", padding_mode="zeros", align_corners=0)
    pooled = g.op("AveragePool", [sampled], "pooled", kernel_shape=[SUPERSAMPLE, SUPERSAMPLE], strides=[SUPERSAMPLE, SUPERSAMPLE])
    crops = g.op("Transpose", [g.op("Reshape", [pooled, g.const("crops", [3, -1, crop, crop], np.int64)], "crops_c")], "crops_nhwc", perm=[1, 2, 3, 0])
    crops_u8 = g.op("Cast", [g.op("Clip", [g.op("Round", [crops], "crop_round"), g.const("lo2", 0.0), g.const("hi2", 255.0)], "crop_clip")], "crops_u8", to=TensorProto.UINT8)
    if not pad_one:
        crops_u8 = g.op("Slice", [crops_u8, g.const("k0", [0], np.int64), k, g.const("k_axis", [0], np.int64)], "crops_k")
    outputs = [
        helper.make_node("Identity", [boxes], ["boxes"], name="face/out_boxes"),
        helper.make_node("Identity", [top_scores], ["detection_scores"], name="face/out_scores"),
        helper.make_node("Identity", [kps], ["landmarks"], name="face/out_landmarks"),
        helper.make_node("Identity", [crops_u8], ["aligned"], name="face/out_aligned"),
    ]
    graph = helper.make_graph(
        _ordered(g.nodes, pre_nodes, det.graph.node, outputs),
        "engineshed-face-front",
        [helper.make_tensor_value_info(PHOTO, TensorProto.UINT8, ["H", "W", 3])],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["K", 4]),
            helper.make_tensor_value_info("detection_scores", TensorProto.FLOAT, ["K"]),
            helper.make_tensor_value_info("landmarks", TensorProto.FLOAT, ["K", 6, 2]),
            helper.make_tensor_value_info("aligned", TensorProto.UINT8, ["K1", crop, crop, 3]),
        ],
        initializer=g.inits + pre_inits + list(det.graph.initializer),
    )
    model = helper.make_model(graph, opset_imports=list(det.opset_import), ir_version=IR_VERSION,
                              producer_name="engineshed")
    return model


def _ordered(front: list[onnx.NodeProto], pre: list[onnx.NodeProto], det: Any, outputs: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """Letterbox nodes, then the detector's preprocessing and graph, then everything reading its outputs."""
    split = next(i for i, n in enumerate(front) if n.name == "face/lb_uint8") + 1
    return front[:split] + list(pre) + list(det) + front[split:] + outputs
