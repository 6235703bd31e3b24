"""The face engine's decode stage, run in the worker's decode processes: photo bytes to one aligned face.

Each process keeps one single-threaded session of the detect-and-align graph (engines.face.align)
per graph digest, so a chunk of photos costs no session set-up; only numpy, Pillow and onnxruntime
run here and everything returned pickles.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from engines.face.align import PhotoTooLarge, crop_sharpness, load_photo
from engines.runtime import get_runner

__all__ = ["Face", "decode_faces", "faces_in", "largest"]

Face = dict[str, Any]  # box {left, top, width, height}, landmarks [{x, y}] , detectionScore


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


def largest(faces: list[Face]) -> int:
    """Index of the face with the largest box (the one training uses when a photo has several)."""
    return max(range(len(faces)), key=lambda i: faces[i]["box"]["width"] * faces[i]["box"]["height"])


def decode_one(blob: bytes, front: bytes, min_face_size: int, sharpness_threshold: float) -> tuple[Any, Any, Any]:
    """(aligned crop, None, note) for a usable photo, (None, skip, note) otherwise; see decode_faces."""
    try:
        photo, scale = load_photo(blob)
    except ValueError as exc:
        reason = "too-large" if isinstance(exc, PhotoTooLarge) else "corrupt"
        return None, {"reason": reason, "detail": str(exc)}, None
    runner = get_runner(front, "cpu", threads=1)
    outputs = dict(zip(runner.output_names, runner.run_all(photo), strict=True))
    faces = faces_in(outputs, scale, photo.shape)
    if not faces:
        return None, {"reason": "no-face", "detail": "no face was found in the photo"}, {"facesFound": 0}
    chosen = largest(faces)
    face = dict(faces[chosen], facesFound=len(faces))
    side = min(face["box"]["width"], face["box"]["height"])
    if side < min_face_size:
        return None, {"reason": "too-small",
                      "detail": f"the face box's smaller side is {side:.0f} px, under minFaceSize {min_face_size}"}, face
    crop = outputs["aligned"][chosen]
    face["sharpness"] = round(crop_sharpness(crop), 2)
    if face["sharpness"] < sharpness_threshold:
        return None, {"reason": "blurry", "detail": f"the face's sharpness {face['sharpness']:.1f} is under "
                                                    f"sharpnessThreshold {sharpness_threshold:g}"}, face
    return np.ascontiguousarray(crop), None, face


def decode_faces(blobs: list[bytes], front: bytes, min_face_size: int, sharpness_threshold: float) -> tuple[list[Any], float]:
    """Per blob: decode, detect, take the largest face, gate it, return its aligned crop; and the seconds taken.

    Skip reasons: ``corrupt``, ``too-large``, ``no-face``, ``too-small`` (the face box's smaller side
    under ``min_face_size`` photo pixels), ``blurry`` (:func:`engines.face.align.crop_sharpness` under
    ``sharpness_threshold``; 0 disables). The note (third item) is the face used, with ``facesFound``.
    """
    started = time.perf_counter()
    results = [decode_one(blob, front, min_face_size, sharpness_threshold) for blob in blobs]
    return results, time.perf_counter() - started
