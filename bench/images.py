"""Generated identifier images: distinct bytes for every identifier, similar within an entity.

Each entity has a smooth base pattern (low-resolution noise, upscaled); each identifier adds its own
seeded noise, so no two identifiers share content (identical content would hit the embedding cache)
and the gallery still has something to recognise. Even identifiers are PNG, odd ones JPEG.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

SIZE = 64


def _base(entity_seed: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(entity_seed)
    coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse, "RGB").resize((size, size), Image.BILINEAR), np.int16)


def make_image(entity_seed: int, identifier_seed: int, *, size: int = SIZE, jpeg: bool | None = None) -> tuple[bytes, str]:
    """(encoded bytes, content type) of one identifier image."""
    rng = np.random.default_rng((entity_seed, identifier_seed))
    pixels = _base(entity_seed, size) + rng.integers(-40, 41, (size, size, 3), dtype=np.int16)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    out = io.BytesIO()
    if jpeg is None:
        jpeg = identifier_seed % 2 == 1
    if jpeg:
        image.save(out, "JPEG", quality=90)
        return out.getvalue(), "image/jpeg"
    image.save(out, "PNG")
    return out.getvalue(), "image/png"
