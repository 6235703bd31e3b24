"""scikit-learn's handwritten digits as a 10-entity image library with a held-out fifth."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from sampledata.library import Entry

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@dataclass(frozen=True)
class Digits:
    """Training entries (4/5 of each digit) and held-out PNGs with their entity ids."""

    train: list[Entry]
    test_images: list[bytes]
    test_entity_ids: list[str]


def png(pixels: np.ndarray, size: int = 32) -> bytes:
    """An 8×8 digit (values 0..16) as a size×size grey PNG."""
    image = Image.fromarray((pixels.reshape(8, 8) * (255.0 / 16.0)).astype(np.uint8), "L")
    out = io.BytesIO()
    image.resize((size, size), Image.Resampling.BILINEAR).save(out, "PNG")
    return out.getvalue()


def load() -> Digits:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    indices = np.arange(len(data.target))
    train_idx, test_idx = train_test_split(indices, test_size=0.2, stratify=data.target, random_state=0)
    train = [
        Entry(f"digit-image-{i}", f"digit-{data.target[i]}", NAMES[data.target[i]], png(data.data[i]))
        for i in train_idx
    ]
    return Digits(
        train,
        [png(data.data[i]) for i in test_idx],
        [f"digit-{data.target[i]}" for i in test_idx],
    )
