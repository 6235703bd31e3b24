"""Small real images for tests that store, move or refuse files: uploads must decode whole, so a signature
followed by junk is no longer an image the API takes."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def png(seed: int = 0, side: int = 8) -> bytes:
    """A grey PNG of noise; distinct seeds give distinct bytes."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "L").save(out, "PNG")
    return out.getvalue()


def jpeg(seed: int = 0, side: int = 8) -> bytes:
    """An RGB JPEG of noise; distinct seeds give distinct bytes."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


def bmp(seed: int = 0, side: int = 2) -> bytes:
    """An RGB BMP of noise: headers without CR or LF bytes, for bodies whose line endings get rewritten."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, "BMP")
    return out.getvalue()


def cut(image: bytes) -> bytes:
    """The image cut short: its signature is right, its pixels never end."""
    return image[: max(16, len(image) // 2)]
