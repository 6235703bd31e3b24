"""The face engine's decode stage, run in the worker's decode processes: photo bytes to one aligned face.

Each process keeps one single-threaded session of the detect-and-align graph (engines.face.align)
per graph digest, so a chunk of photos costs no session set-up; only numpy, Pillow and onnxruntime
run here and everything returned pickles.

Which face of a photo is trained on (:func:`choose`):

* a box the user pinned (``faceBox`` in the identifier's jsondata, photo pixels): the detection overlapping
  it most (IoU at least ``PIN_IOU``), else the pinned region itself (looked at again by the detector,
  zoomed in, and used whole where it finds nothing there);
* otherwise detection score and size together: each detection ranks by its score less ``SIZE_WEIGHT`` per
  halving of its size against the largest. A detector's score separates faces from clutter better than
  size does (a large patch of clutter can pass the confidence, a face rarely scores like clutter), and
  between two real faces of similar scores the larger is the photo's subject.

A photo that is already a face crop is a face: one box covering at least ``CROP_COVER`` of the photo's
width and height is aligned by its landmarks and its size is the photo's (the whole photo is the face),
and a crop-shaped photo (``CROP_ASPECT``, at most ``CROP_MAX_SIDE`` px) the detector finds nothing in is
used whole, resized to the template. Recognition never does the latter: a photo with no detection has
no face (engines.face.engine).
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engines.face.align import PhotoTooLarge, crop_sharpness, load_photo, region_crop
from engines.runtime import get_runner

__all__ = ["Face", "FaceDecoder", "choose", "faces_in", "parse_face_box"]

Face = dict[str, Any]  # box {left, top, width, height}, landmarks [{x, y}] , detectionScore
Box = tuple[float, float, float, float]  # x1, y1, x2, y2

SIZE_WEIGHT = 0.1  # score a detection gives up per halving of its size against the largest one's
COMPETING = 0.15  # another detection scoring within this of the one used is a competing face: a warning
CROP_COVER = 0.45  # a box this share (or more) of the photo's width and height: the photo is a face crop
CROP_ASPECT = (0.6, 1.25)  # width / height of a photo used whole as a face crop when nothing is detected
CROP_MAX_SIDE = 400  # px, the longer side of such a photo: face datasets' crops are small, scenes are not
PIN_IOU = 0.2  # a detection overlapping a pinned faceBox this much (IoU) is the pinned face
PIN_CONTEXT = 1.6  # the pinned region is looked at again with this much around it (side multiple)


def faces_in(outputs: dict[str, np.ndarray], scale: float, fed_shape: tuple[int, ...] | None = None) -> list[Face]:
    """The graph's detections as JSON-ready faces in the photo's own pixels (``scale``: fed → own).

    ``fed_shape``: the fed photo's [H, W, ...]; boxes are clipped to the photo (a face cut by the edge is
    predicted as reaching past it, and a box with a negative left is no use to anyone drawing it). The
    landmarks are left as predicted."""
    faces = []
    for box, score, points in zip(outputs["boxes"], outputs["detection_scores"], outputs["landmarks"], strict=True):
        x1, y1, x2, y2 = (float(v) * scale for v in box)
        if fed_shape is not None:
            width, height = fed_shape[1] * scale, fed_shape[0] * scale
            x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
            y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
        faces.append({
            "box": {"left": round(x1, 2), "top": round(y1, 2), "width": round(x2 - x1, 2), "height": round(y2 - y1, 2)},
            "landmarks": [{"x": round(float(x) * scale, 2), "y": round(float(y) * scale, 2)} for x, y in points],
            "detectionScore": round(float(score), 4),
        })
    return faces


def corners(face: Face) -> Box:
    b = face["box"]
    return b["left"], b["top"], b["left"] + b["width"], b["top"] + b["height"]


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union if union > 0 else 0.0


def _side(face: Face) -> float:
    return max(1e-6, min(face["box"]["width"], face["box"]["height"]))


def choose(faces: list[Face]) -> tuple[int, list[int]]:
    """The face to train on (score and size together, module docstring) and the detections competing with it."""
    largest = max(_side(f) for f in faces)
    rank = [f["detectionScore"] + SIZE_WEIGHT * math.log2(_side(f) / largest) for f in faces]
    used = max(range(len(faces)), key=lambda i: rank[i])
    floor = faces[used]["detectionScore"] - COMPETING
    return used, [i for i, f in enumerate(faces) if i != used and f["detectionScore"] >= floor]


def parse_face_box(value: Any) -> Box:
    """A pinned ``faceBox`` checked: [x1, y1, x2, y2], finite numbers, x2 > x1 and y2 > y1; else ValueError."""
    if not isinstance(value, list | tuple) or len(value) != 4 or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value
    ):
        raise ValueError(f"faceBox must be [x1, y1, x2, y2] in photo pixels, got {value!r}")
    x1, y1, x2, y2 = (float(v) for v in value)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"faceBox [x1, y1, x2, y2] must have x2 > x1 and y2 > y1, got {list(value)!r}")
    return x1, y1, x2, y2


def _box_dict(box: Box) -> dict[str, float]:
    x1, y1, x2, y2 = box
    return {"left": round(x1, 2), "top": round(y1, 2), "width": round(x2 - x1, 2), "height": round(y2 - y1, 2)}


def _lower(value: float, step: int) -> str:
    """A round setting at or under ``value``, to suggest in a skip reason."""
    return f"{max(0, int(value) // step * step)}"


@dataclass
class FaceDecoder:
    """The decode stage's function (engines.pipeline ``decoder``): per blob, the aligned face and its note.

    ``pins``: the faceBox of pinned identifiers by the sha256 of their bytes (the training fills it as it
    fetches; the decoder is pickled with each chunk, so it sees the pins of the photos it is given).
    """

    front: bytes
    min_face_size: int
    sharpness_threshold: float
    pins: dict[str, Any] = field(default_factory=dict)

    def __call__(self, blobs: list[bytes]) -> tuple[list[Any], float]:
        """Per blob ``(crop, None, note)`` or ``(None, skip, note)``; and the seconds taken.

        Skip reasons: ``corrupt``, ``too-large``, ``invalid-face-box``, ``no-face``, ``too-small`` (the face
        under ``min_face_size`` photo pixels on its smaller side; a face crop measures the photo), ``blurry``
        (:func:`engines.face.align.crop_sharpness` under ``sharpness_threshold``; 0 disables); each detail
        says what to change. The note is the face used: box, landmarks, detectionScore, sharpness,
        facesFound, ``source`` (detected, crop, whole-crop, pinned, pinned-region) and ``competing``.
        """
        started = time.perf_counter()
        out = []
        for blob in blobs:
            pin = self.pins.get(hashlib.sha256(blob).hexdigest()) if self.pins else None
            out.append(self.decode_one(blob, pin))
        return out, time.perf_counter() - started

    def _detect(self, photo: np.ndarray, scale: float) -> tuple[list[Face], np.ndarray]:
        runner = get_runner(self.front, "cpu", threads=1)
        outputs = dict(zip(runner.output_names, runner.run_all(photo), strict=True))
        return faces_in(outputs, scale, photo.shape), outputs["aligned"]

    def decode_one(self, blob: bytes, pin: Any = None) -> tuple[Any, Any, Any]:
        try:
            photo, scale = load_photo(blob)
        except ValueError as exc:
            reason = "too-large" if isinstance(exc, PhotoTooLarge) else "corrupt"
            return None, {"reason": reason, "detail": str(exc)}, None
        faces, aligned = self._detect(photo, scale)
        side = aligned.shape[1]
        height, width = photo.shape[0] * scale, photo.shape[1] * scale
        if pin is not None:
            try:
                box = parse_face_box(pin)
            except ValueError as exc:
                return None, {"reason": "invalid-face-box", "detail": f"{exc}: correct or remove it"}, None
            if box[0] >= width or box[1] >= height or box[2] <= 0 or box[3] <= 0:
                return None, {"reason": "invalid-face-box", "detail": (
                    f"faceBox {list(pin)!r} is outside the photo ({width:.0f}×{height:.0f} px): correct or remove it")}, None
            box = (max(0.0, box[0]), max(0.0, box[1]), min(width, box[2]), min(height, box[3]))
            face, crop = self._pinned(photo, scale, faces, aligned, box)
        elif faces:
            used, competing = choose(faces)
            face = dict(faces[used], facesFound=len(faces), source="detected")
            if competing:
                face["competing"] = [{"box": faces[i]["box"], "detectionScore": faces[i]["detectionScore"]}
                                     for i in competing]
            box = face["box"]
            if box["width"] >= CROP_COVER * width and box["height"] >= CROP_COVER * height:
                face["source"] = "crop"
            crop = aligned[used]
        elif CROP_ASPECT[0] <= width / height <= CROP_ASPECT[1] and max(width, height) <= CROP_MAX_SIDE:
            face = {"box": _box_dict((0.0, 0.0, width, height)), "facesFound": 0, "source": "whole-crop"}
            crop = region_crop(photo, (0.0, 0.0, photo.shape[1], photo.shape[0]), side)
        else:
            return None, {"reason": "no-face", "detail": (
                "no face was found in the photo: upload one where the face is clear, or pin it with faceBox "
                "[x1, y1, x2, y2] (photo pixels) in the identifier's jsondata")}, {"facesFound": 0}
        # The face's size at the photo's resolution: its box, or the whole photo when the photo is the face.
        size = min(width, height) if face["source"] in ("crop", "whole-crop") else min(
            face["box"]["width"], face["box"]["height"])
        face["faceSize"] = round(size, 1)
        if size < self.min_face_size:
            return None, {"reason": "too-small", "detail": (
                f"face {size:.0f} px < minFaceSize {self.min_face_size}: set minFaceSize to "
                f"{_lower(size, 16)} or lower, or upload larger photos")}, face
        face["sharpness"] = round(crop_sharpness(crop), 2)
        if face["sharpness"] < self.sharpness_threshold:
            return None, {"reason": "blurry", "detail": (
                f"face sharpness {face['sharpness']:.1f} < sharpnessThreshold {self.sharpness_threshold:g}: set "
                f"sharpnessThreshold to {_lower(face['sharpness'], 5)} or lower, or upload sharper photos")}, face
        return np.ascontiguousarray(crop), None, face

    def _pinned(
        self, photo: np.ndarray, scale: float, faces: list[Face], aligned: np.ndarray, box: Box
    ) -> tuple[Face, np.ndarray]:
        """The detection overlapping the pinned box most; else the region, looked at again; else it whole."""
        overlaps = [iou(corners(f), box) for f in faces]
        if overlaps and max(overlaps) >= PIN_IOU:
            used = int(np.argmax(overlaps))
            return dict(faces[used], facesFound=len(faces), source="pinned", faceBox=list(box)), aligned[used]
        # Zoomed in on the region (with some context), the detector may find a face too small in the whole photo.
        x1, y1, x2, y2 = (v / scale for v in box)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        half = max(x2 - x1, y2 - y1) * PIN_CONTEXT / 2
        left, top = max(0, round(cx - half)), max(0, round(cy - half))
        window = np.ascontiguousarray(photo[top : max(top + 1, round(cy + half)), left : max(left + 1, round(cx + half))])
        found, crops = self._detect(window, 1.0)
        inside = [iou(corners(f), (x1 - left, y1 - top, x2 - left, y2 - top)) for f in found]
        if inside and max(inside) >= PIN_IOU:
            used = int(np.argmax(inside))
            f = found[used]
            moved = {
                "box": _box_dict(tuple(v * scale for v in (  # type: ignore[arg-type]
                    f["box"]["left"] + left, f["box"]["top"] + top, f["box"]["left"] + left + f["box"]["width"],
                    f["box"]["top"] + top + f["box"]["height"]))),
                "landmarks": [{"x": round((p["x"] + left) * scale, 2), "y": round((p["y"] + top) * scale, 2)}
                              for p in f["landmarks"]],
                "detectionScore": f["detectionScore"],
            }
            # The crop was aligned in the window, whose pixels are the (possibly shrunk) photo's.
            return dict(moved, facesFound=len(faces), source="pinned", faceBox=list(box)), crops[used]
        crop = region_crop(photo, (x1, y1, x2, y2), aligned.shape[1])
        return {"box": _box_dict(box), "facesFound": len(faces), "source": "pinned-region", "faceBox": list(box)}, crop
