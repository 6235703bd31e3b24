"""Identifiers that cannot be used are skipped with a reason the user can read."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageFilter

from engines.gallery import GalleryEngine
from engines.interface import NothingToTrain
from sampledata.library import Entry
from tests.engines.memory_context import MemoryContext

ENGINE = GalleryEngine()


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _blurred(data: bytes) -> bytes:
    return _png(Image.open(io.BytesIO(data)).filter(ImageFilter.GaussianBlur(4)))


async def test_corrupt_small_blurry_and_unreachable_images_are_skipped_with_reasons(decode_pool, digit_library):
    good = digit_library.train[:40]
    bad = [
        Entry("corrupt", "digit-1", "one", b"\x89PNG\r\n\x1a\nthis is not really a png"),
        Entry("tiny", "digit-1", "one", _png(Image.new("L", (4, 4), 128))),
        Entry("blurry", "digit-2", "two", _blurred(good[0].data)),
        Entry("missing", "digit-3", "three", b"", by_reference=True),
    ]
    config = ENGINE.info.validate_config({"minSize": 16, "sharpnessThreshold": 30.0})
    ctx = MemoryContext(good[:20] + bad + good[20:], config=config, decode_pool=decode_pool, failing=frozenset({"missing"}))
    artifact = await ENGINE.train(ctx)
    report = artifact.jsondata
    reasons = {s["identifierId"]: s["reason"] for s in report["skipped"]}
    assert reasons == {"corrupt": "corrupt", "tiny": "too-small", "blurry": "blurry", "missing": "fetch-failed"}
    assert all(s["detail"] for s in report["skipped"])
    assert "404" in next(s["detail"] for s in report["skipped"] if s["identifierId"] == "missing")
    assert report["issues"] == {"hasWarning": True}
    assert report["identifiers"] == 40


async def test_a_library_where_every_image_fails_the_gates_has_nothing_to_train(decode_pool, digit_library):
    config = ENGINE.info.validate_config({"minSize": 64})  # the digits are 32 px
    ctx = MemoryContext(digit_library.train[:12], config=config, decode_pool=decode_pool)
    with pytest.raises(NothingToTrain, match=r"no identifier passed the quality gates \(12 skipped\)"):
        await ENGINE.train(ctx)


async def test_an_empty_library_has_nothing_to_train(decode_pool):
    ctx = MemoryContext([], config=ENGINE.info.validate_config({}), decode_pool=decode_pool)
    with pytest.raises(NothingToTrain):
        await ENGINE.train(ctx)
