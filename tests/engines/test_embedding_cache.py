"""Embeddings are computed once per (content, backbone): retraining reuses them."""

from __future__ import annotations

import dataclasses
import time

from engines.gallery import GalleryEngine
from tests.engines.memory_context import EmbeddingStore, MemoryContext

ENGINE = GalleryEngine()
CONFIG = ENGINE.info.validate_config({"pageSize": 25, "batchSize": 64})


async def test_retraining_the_same_library_runs_the_backbone_on_no_image(decode_pool, digit_library):
    store = EmbeddingStore()
    entries = digit_library.train[:200]
    first = MemoryContext(entries, config=CONFIG, decode_pool=decode_pool, store=store)
    trained = await ENGINE.train(first)
    again = MemoryContext(entries, config=CONFIG, decode_pool=decode_pool, store=store)
    retrained = await ENGINE.train(again)
    assert first.inferred == 200
    assert again.inferred == 0
    assert again.fetched == 0  # known content hashes are not even downloaded
    assert retrained.data == trained.data
    assert retrained.jsondata["embeddings"] == {"cached": 200, "computed": 0}


async def test_adding_ten_identifiers_embeds_exactly_ten(decode_pool, digit_library):
    store = EmbeddingStore()
    await ENGINE.train(MemoryContext(digit_library.train[:100], config=CONFIG, decode_pool=decode_pool, store=store))
    grown = MemoryContext(digit_library.train[:110], config=CONFIG, decode_pool=decode_pool, store=store)
    artifact = await ENGINE.train(grown)
    assert grown.inferred == 10
    assert artifact.jsondata["identifiers"] == 110


async def test_identifiers_stored_by_reference_are_fetched_but_not_embedded_again(decode_pool, digit_library):
    store = EmbeddingStore()
    entries = [dataclasses.replace(e, by_reference=True) for e in digit_library.train[:60]]
    await ENGINE.train(MemoryContext(entries, config=CONFIG, decode_pool=decode_pool, store=store))
    again = MemoryContext(entries, config=CONFIG, decode_pool=decode_pool, store=store)
    await ENGINE.train(again)
    assert again.fetched == 60  # their hash is only known from the bytes
    assert again.inferred == 0


async def test_the_same_image_in_two_identifiers_is_embedded_once(decode_pool, digit_library):
    original = digit_library.train[0]
    copy = dataclasses.replace(original, identifier_id="copy-of-first")
    by_reference = dataclasses.replace(original, identifier_id="url-copy", by_reference=True)
    entries = [original, copy, *digit_library.train[1:40], by_reference]
    ctx = MemoryContext(entries, config=CONFIG, decode_pool=decode_pool)
    artifact = await ENGINE.train(ctx)
    assert artifact.jsondata["identifiers"] == 42
    assert ctx.inferred == 40


async def test_fetch_rate_caps_downloads_per_second(decode_pool, digit_library):
    config = ENGINE.info.validate_config({"fetchRate": 20.0})
    ctx = MemoryContext(digit_library.train[:30], config=config, decode_pool=decode_pool)
    started = time.perf_counter()
    await ENGINE.train(ctx)
    # A bucket of 20 starts at once; the other 10 wait 1/20 s each.
    assert time.perf_counter() - started >= 0.4
