"""Image bytes to uint8 HWC arrays of the backbone size, with quality gates.

``decode_batch`` runs in the worker's process pool (a thread pool is held by the GIL and feeds
the model at a tenth of the speed, docs/gpu.md), so this module imports only numpy and Pillow
and everything it returns pickles. Image data is only ever parsed by Pillow's decoders.

Preprocessing, which a user running a downloaded artifact must repeat: EXIF orientation applied,
converted to grey ("L") or RGB, resized to size×size (aspect not kept) with bilinear filtering.
"""

from __future__ import annotations

import io
import time
import warnings
from typing import Any

import numpy as np
from PIL import Image, ImageOps

__all__ = ["DEFAULT_MAX_PIXELS", "SHARPNESS_SIDE", "decode_batch", "decode_batch_timed", "decode_one", "sharpness"]

DEFAULT_MAX_PIXELS = 64_000_000  # 8000×8000: bigger images are refused, not decoded
SHARPNESS_SIDE = 256  # sharpness is measured with the longer side at most this, so it is scale-stable

# Pillow raises DecompressionBombError past twice this; our own cap below refuses earlier.
Image.MAX_IMAGE_PIXELS = DEFAULT_MAX_PIXELS

Skip = dict[str, Any]


def decode_batch(
    blobs: list[bytes],
    size: int,
    channels: int,
    min_size: int,
    sharpness_threshold: float,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[tuple[np.ndarray | None, Skip | None]]:
    """Decode each blob to a uint8 ``[size, size, channels]`` array, or give the reason it was skipped.

    Skip reasons: ``corrupt`` (not a readable image), ``too-large`` (over ``max_pixels``),
    ``too-small`` (shorter side below ``min_size`` px before resizing), ``blurry`` (variance of the
    Laplacian below ``sharpness_threshold``; 0 disables the gate). Every reason has a ``detail``.
    """
    return [decode_one(blob, size, channels, min_size, sharpness_threshold, max_pixels) for blob in blobs]


def decode_one(
    blob: bytes,
    size: int,
    channels: int,
    min_size: int = 0,
    sharpness_threshold: float = 0.0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[np.ndarray | None, Skip | None]:
    """One blob of :func:`decode_batch`."""
    mode = "L" if channels == 1 else "RGB"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(blob))
            width, height = image.size  # from the header; nothing decoded yet
            if width * height > max_pixels:
                return None, {"reason": "too-large", "detail": f"{width}×{height} is over {max_pixels} pixels"}
            if min(width, height) < min_size:
                return None, {
                    "reason": "too-small",
                    "detail": f"shorter side {min(width, height)} px is under minSize {min_size}",
                    "width": width,
                    "height": height,
                }
            # JPEG only: decode at a reduced scale that still covers what we need (much faster).
            wanted = max(size, SHARPNESS_SIDE if sharpness_threshold > 0 else size)
            image.draft(mode, (wanted, wanted))
            image = ImageOps.exif_transpose(image)
            image = image.convert(mode)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return None, {"reason": "too-large", "detail": str(exc)}
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, ... for bad data
        return None, {"reason": "corrupt", "detail": str(exc)[:200] or type(exc).__name__}
    if sharpness_threshold > 0:
        value = sharpness(image)
        if value < sharpness_threshold:
            return None, {
                "reason": "blurry",
                "detail": f"sharpness {value:.1f} is under sharpnessThreshold {sharpness_threshold:g}",
                "sharpness": value,
            }
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return np.ascontiguousarray(array), None


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
) -> tuple[list[tuple[np.ndarray | None, Skip | None]], float]:
    """:func:`decode_batch` and the seconds it took inside the worker process (for stage timings)."""
    started = time.perf_counter()
    results = decode_batch(blobs, size, channels, min_size, sharpness_threshold, max_pixels)
    return results, time.perf_counter() - started
