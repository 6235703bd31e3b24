"""Image bytes to uint8 HWC arrays of the backbone size, with quality gates.

``decode_batch`` runs in the worker's process pool (a thread pool is held by the GIL and feeds
the model at a tenth of the speed, docs/gpu.md), so this module imports only numpy and Pillow
and everything it returns pickles. Image data is only ever parsed by Pillow's decoders.

Preprocessing, which a user running a downloaded artifact must repeat: EXIF orientation applied,
converted to grey ("L") or RGB, resized to size×size (aspect not kept) with bilinear filtering.
"""

from __future__ import annotations

import io
import re
import time
import warnings
from typing import Any

import numpy as np
from PIL import Image, ImageOps

__all__ = ["DEFAULT_MAX_PIXELS", "SHARPNESS_SIDE", "decode_batch", "decode_batch_timed", "decode_one", "gate", "sharpness"]

DEFAULT_MAX_PIXELS = 64_000_000  # 8000×8000: bigger images are refused, not decoded
SHARPNESS_SIDE = 256  # sharpness is measured with the longer side at most this, so it is scale-stable

# Pillow raises DecompressionBombError past twice this; our own cap below refuses earlier.
Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS

Skip = dict[str, Any]
# What the gates read of an image, kept per content so a cached or stored vector can be gated without the bytes:
# {"width", "height"} (from the header) and "sharpness" (None when the run had no sharpness gate to measure for).
Measures = dict[str, Any]


def gate(width: int, height: int, sharpness_value: float | None, min_size: int, sharpness_threshold: float) -> Skip | None:
    """The quality gates on an image's measures: ``too-small`` or ``blurry`` with their detail, or None (it passes).

    ``sharpness_value`` None is only allowed when the sharpness gate is off (0).
    """
    if min(width, height) < min_size:
        return {
            "reason": "too-small",
            "detail": f"shorter side {min(width, height)} px is under minSize {min_size}",
            "width": width,
            "height": height,
        }
    if sharpness_threshold > 0:
        assert sharpness_value is not None
        if sharpness_value < sharpness_threshold:
            return {
                "reason": "blurry",
                "detail": f"sharpness {sharpness_value:.1f} is under sharpnessThreshold {sharpness_threshold:g}",
                "sharpness": sharpness_value,
            }
    return None


def decode_batch(
    blobs: list[bytes],
    size: int,
    channels: int,
    min_size: int,
    sharpness_threshold: float,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    measure: bool = False,
) -> list[tuple[Any, ...]]:
    """Decode each blob to a uint8 ``[size, size, channels]`` array, or give the reason it was skipped.

    Skip reasons: ``corrupt`` (not a readable image), ``too-large`` (over ``max_pixels``),
    ``too-small`` (shorter side below ``min_size`` px before resizing), ``blurry`` (variance of the
    Laplacian below ``sharpness_threshold``; 0 disables the gate). Every reason has a ``detail``.
    With ``measure``, each result has a third item: the image's :data:`Measures` (None when it could not be read).
    """
    return [decode_one(blob, size, channels, min_size, sharpness_threshold, max_pixels, measure) for blob in blobs]


def decode_one(
    blob: bytes,
    size: int,
    channels: int,
    min_size: int = 0,
    sharpness_threshold: float = 0.0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    measure: bool = False,
) -> tuple[Any, ...]:
    """One blob of :func:`decode_batch`."""
    array, skip, measures = _decode_one(blob, size, channels, min_size, sharpness_threshold, max_pixels)
    return (array, skip, measures) if measure else (array, skip)


_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


def error_text(exc: BaseException) -> str:
    """A decoder's complaint fit for a client: Pillow names the in-memory file by its repr ("cannot identify image
    file <_io.BytesIO object at 0x7f...>"), a memory address that means nothing to anyone reading it."""
    return " ".join(_OBJECT_REPR.sub("", str(exc)).split())[:200] or type(exc).__name__


def _decode_one(
    blob: bytes, size: int, channels: int, min_size: int, sharpness_threshold: float, max_pixels: int,
) -> tuple[np.ndarray | None, Skip | None, Measures | None]:
    mode = "L" if channels == 1 else "RGB"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(blob))
            width, height = image.size  # from the header; nothing decoded yet
            if width * height > max_pixels:
                return None, {"reason": "too-large", "detail": f"{width}×{height} is over {max_pixels} pixels"}, None
            measures: Measures = {"width": width, "height": height, "sharpness": None}
            if (small := gate(width, height, None, min_size, 0.0)) is not None:
                return None, small, measures
            # JPEG only: decode at a reduced scale that still covers what we need (much faster).
            wanted = max(size, SHARPNESS_SIDE if sharpness_threshold > 0 else size)
            image.draft(mode, (wanted, wanted))
            image = ImageOps.exif_transpose(image)
            image = image.convert(mode)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return None, {"reason": "too-large", "detail": str(exc)}, None
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, ... for bad data
        return None, {"reason": "corrupt", "detail": error_text(exc)}, None
    if sharpness_threshold > 0:
        measures["sharpness"] = value = sharpness(image)
        if (blurry := gate(width, height, value, 0, sharpness_threshold)) is not None:
            return None, blurry, measures
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return np.ascontiguousarray(array), None, measures


def sharpness(image: Image.Image) -> float:
    """Variance of the 4-neighbour Laplacian of the grey image, longer side at most SHARPNESS_SIDE."""
    grey = image.convert("L")
    if max(grey.size) > SHARPNESS_SIDE:
        grey = grey.copy()
        grey.thumbnail((SHARPNESS_SIDE, SHARPNESS_SIDE), Image.Resampling.BILINEAR)
    g = np.asarray(grey, dtype=np.float32)
    if g.shape[0] < 3 or g.shape[1] < 3:
        return 0.0
    lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4.0 * g[1:-1, 1:-1]
    return float(lap.var())


def decode_batch_timed(
    blobs: list[bytes],
    size: int,
    channels: int,
    min_size: int,
    sharpness_threshold: float,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    measure: bool = False,
) -> tuple[list[tuple[Any, ...]], float]:
    """:func:`decode_batch` and the seconds it took inside the worker process (for stage timings)."""
    started = time.perf_counter()
    results = decode_batch(blobs, size, channels, min_size, sharpness_threshold, max_pixels, measure)
    return results, time.perf_counter() - started
