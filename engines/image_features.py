"""Per-image scalar features auto-grouping can cluster on instead of embeddings, and the downscaling
auto-tagging applies to its inputs. Runs in the worker's process pool (numpy and Pillow only; results pickle).

* ``blur``: the variance of the 4-neighbour Laplacian of the grey image, longer side at most 256 px
  (engines.decode.sharpness, the training gate's measure); low is blurry. Clustered on its logarithm,
  since it spans orders of magnitude.
* ``brightness``: the mean of the grey (ITU-R 601 luma) image, 0 (black) to 255 (white).
* ``colorfulness``: Hasler and Süsstrunk's metric (2003): with rg = R - G and yb = (R + G) / 2 - B,
  sqrt(σ_rg² + σ_yb²) + 0.3 · sqrt(μ_rg² + μ_yb²); 0 for grey images, about 100+ for vivid ones.
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
from PIL import Image, ImageOps

from engines.decode import DEFAULT_MAX_PIXELS, SHARPNESS_SIDE, sharpness

__all__ = ["FEATURES", "features_batch", "fit_within_batch", "larger_than"]

FEATURES = ("blur", "brightness", "colorfulness")


def _open(blob: bytes) -> Image.Image | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(blob))
            if image.size[0] * image.size[1] > DEFAULT_MAX_PIXELS:
                return None
            image.draft("RGB", (SHARPNESS_SIDE, SHARPNESS_SIDE))
            image = ImageOps.exif_transpose(image)
            image = image.convert("RGB")
    except Exception:  # Pillow raises OSError, SyntaxError, ValueError, ... for bad data
        return None
    if max(image.size) > SHARPNESS_SIDE:
        image.thumbnail((SHARPNESS_SIDE, SHARPNESS_SIDE), Image.Resampling.BILINEAR)
    return image


def feature_of(image: Image.Image, feature: str) -> float:
    if feature == "blur":
        return math.log1p(sharpness(image))
    if feature == "brightness":
        return float(np.asarray(image.convert("L"), np.float32).mean())
    if feature == "colorfulness":
        rgb = np.asarray(image, np.float32)
        rg = rgb[..., 0] - rgb[..., 1]
        yb = (rgb[..., 0] + rgb[..., 1]) / 2.0 - rgb[..., 2]
        return float(math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean()))
    raise ValueError(f"unknown feature {feature!r}")


def features_batch(blobs: list[bytes], feature: str) -> list[float | None]:
    """The feature of each blob; None for one that cannot be decoded."""
    out: list[float | None] = []
    for blob in blobs:
        image = _open(blob)
        out.append(None if image is None else feature_of(image, feature))
    return out


def larger_than(blob: bytes, width: int, height: int) -> bool:
    """Whether the image's header says it is larger than width×height (reads the header only; False when
    it cannot be read, so the model's own path reports the bad image)."""
    try:
        with Image.open(io.BytesIO(blob)) as image:
            return image.size[0] > width or image.size[1] > height
    except Exception:
        return False


def fit_within_batch(blobs: list[bytes], width: int, height: int) -> list[bytes]:
    """Each image larger than width×height downscaled to fit inside it (aspect kept, PNG); others as given.

    Bounds the decode work of the model's own preprocessing for very large inputs; an undecodable blob is
    returned as it is, so the model's path reports it.
    """
    out = []
    for blob in blobs:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(blob))
                if image.size[0] <= width and image.size[1] <= height:
                    out.append(blob)
                    continue
                image.draft("RGB", (width, height))
                image = ImageOps.exif_transpose(image)
                image.thumbnail((width, height), Image.Resampling.BILINEAR)
                buffer = io.BytesIO()
                image.convert("RGB" if image.mode not in ("L", "RGB") else image.mode).save(buffer, "PNG")
                out.append(buffer.getvalue())
        except Exception:
            out.append(blob)
    return out
