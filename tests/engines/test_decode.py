"""Decoding and the quality gates, one image at a time."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from engines.decode import decode_one


def _encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def test_a_colour_jpeg_becomes_a_grey_array_of_the_backbone_size():
    pixels = np.random.default_rng(0).integers(0, 256, (300, 200, 3), dtype=np.uint8)
    array, skip = decode_one(_encoded(Image.fromarray(pixels), "JPEG"), 32, 1)
    assert skip is None and array.shape == (32, 32, 1) and array.dtype == np.uint8


def test_an_rgb_backbone_gets_three_channels():
    array, _ = decode_one(_encoded(Image.new("L", (40, 40), 9)), 16, 3)
    assert array.shape == (16, 16, 3)


def test_an_image_over_the_pixel_cap_is_refused_without_decoding():
    array, skip = decode_one(_encoded(Image.new("1", (4000, 3000))), 32, 1, max_pixels=1_000_000)
    assert array is None and skip["reason"] == "too-large"


def test_min_size_is_the_shorter_side_before_resizing():
    wide = _encoded(Image.new("L", (200, 20), 128))
    assert decode_one(wide, 32, 1, min_size=21)[1]["reason"] == "too-small"
    assert decode_one(wide, 32, 1, min_size=20)[1] is None


def test_a_flat_image_is_blurry_and_a_sharpness_threshold_of_zero_disables_the_gate():
    flat = _encoded(Image.new("L", (64, 64), 128))
    array, skip = decode_one(flat, 32, 1, sharpness_threshold=1.0)
    assert skip["reason"] == "blurry" and skip["sharpness"] == 0.0
    assert decode_one(flat, 32, 1, sharpness_threshold=0.0)[1] is None


def test_truncated_data_is_corrupt():
    data = _encoded(Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)))
    array, skip = decode_one(data[: len(data) // 2], 32, 1)
    assert array is None and skip["reason"] == "corrupt" and skip["detail"]


def test_bytes_that_are_no_image_are_corrupt_with_a_reason_a_person_can_read():
    array, skip = decode_one(b"\x89PNG\r\n\x1a\n and then nothing an image holds", 32, 1)
    assert array is None and skip["reason"] == "corrupt"
    assert skip["detail"] == "cannot identify image file"  # Pillow's message names a BytesIO repr: the address goes
