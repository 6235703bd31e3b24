"""A photo-like image library from the two photos scikit-learn ships (``china.jpg``, ``flower.jpg``, CC-BY).

Each entity is one region of a photo (a roof, a tree, a petal ...); its identifiers are views of that region
as a camera would take it again: framed a little differently (shifted, zoomed in or out), mirrored, lighter
or darker, recompressed. Recognising them asks for what a photo backbone knows (textures, shapes) rather
than pixel positions, the opposite of glyph-like digits. Enrolled and held-out views never share a seed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from sampledata.library import Entry

REGION = 150  # side of an entity's region in the photo's pixels
GRID = 3  # regions per side of each photo: 2 photos × 3 × 3 = 18 entities


@dataclass(frozen=True)
class PhotoViews:
    """Training entries and held-out views with their entity ids."""

    train: list[Entry]
    test_images: list[bytes]
    test_entity_ids: list[str]


def _photos() -> dict[str, Image.Image]:
    from sklearn.datasets import load_sample_image

    return {name: Image.fromarray(load_sample_image(f"{name}.jpg")) for name in ("china", "flower")}


def view(photo: Image.Image, box: tuple[int, int, int, int], rng: np.random.Generator) -> bytes:
    """One view of ``box``: shifted up to a sixth of its side, zoomed 0.8–1.25×, maybe mirrored, lit 0.7–1.3×,
    saved as a JPEG of quality 60–95."""
    left, top, right, bottom = box
    side = (right - left) * float(rng.uniform(0.8, 1.25))
    cx = (left + right) / 2 + float(rng.uniform(-1, 1)) * (right - left) / 6
    cy = (top + bottom) / 2 + float(rng.uniform(-1, 1)) * (bottom - top) / 6
    image = photo.crop((int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2)))
    image = image.resize((128, 128), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        image = ImageOps.mirror(image)
    image = ImageEnhance.Brightness(image).enhance(float(rng.uniform(0.7, 1.3)))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=int(rng.integers(60, 96)))
    return out.getvalue()


def load(per_entity: int = 8, held_out: int = 4, seed: int = 0) -> PhotoViews:
    """``per_entity`` enrolled and ``held_out`` query views of each of the 18 regions."""
    train: list[Entry] = []
    test_images: list[bytes] = []
    test_ids: list[str] = []
    enrol, query = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    for name, photo in _photos().items():
        width, height = photo.size
        step_x, step_y = (width - REGION) // (GRID - 1), (height - REGION) // (GRID - 1)
        for gy in range(GRID):
            for gx in range(GRID):
                x, y = gx * step_x, gy * step_y
                # Kept inside the photo however a view shifts and zooms.
                x = min(max(x, REGION // 2), width - REGION - REGION // 2)
                y = min(max(y, REGION // 2), height - REGION - REGION // 2)
                box = (x, y, x + REGION, y + REGION)
                entity = f"{name}-{gy}{gx}"
                train += [Entry(f"{entity}-view-{i}", entity, entity, view(photo, box, enrol)) for i in range(per_entity)]
                for _ in range(held_out):
                    test_images.append(view(photo, box, query))
                    test_ids.append(entity)
    return PhotoViews(train, test_images, test_ids)
