"""Helpers that read recognitions the way a user checks them."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import onnxruntime as ort
from PIL import Image

from engines.artifact import ArtifactMeta, read_artifact
from engines.interface import Recognition


def top1(recognitions: Sequence[Recognition], expected: Sequence[str]) -> float:
    """Share of images whose best match is the expected entity (no match counts as wrong)."""
    hits = [bool(r.matches) and r.matches[0].entity_id == e for r, e in zip(recognitions, expected, strict=True)]
    return float(np.mean(hits))


def run_downloaded_artifact(data: bytes, images: Sequence[bytes]) -> tuple[list[list[str]], np.ndarray]:
    """Entity ids and scores from the artifact file with plain onnxruntime and its metadata only."""
    model, metadata = read_artifact(data)
    meta = ArtifactMeta.from_metadata(metadata)
    # The documented preprocessing, with Pillow alone: grey, size×size, bilinear, uint8 NHWC.
    size, mode = meta.image_size, "L" if meta.channels == 1 else "RGB"
    batch = np.stack([
        np.asarray(Image.open(io.BytesIO(b)).convert(mode).resize((size, size), Image.Resampling.BILINEAR), np.uint8)
        .reshape(size, size, meta.channels)
        for b in images
    ])
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    scores, indices = session.run(["scores", "indices"], {session.get_inputs()[0].name: batch})
    return [[meta.labels[i].entity_id for i in row] for row in indices], scores
