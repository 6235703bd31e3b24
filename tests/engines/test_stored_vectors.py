"""The shared training pipeline takes an identifier's stored vector instead of fetching and embedding it, when
the vector was made by the run's own backbone, and hands back what it computed; engines embedding something
other than the whole image (``stored=False``) are unaffected."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from engines.backbone import default_backbone
from engines.gallery import GalleryEngine
from engines.pipeline import embed_library, pipeline_kwargs
from engines.runtime import get_runner
from tests.engines.memory_context import EmbeddingStore, MemoryContext

ENGINE = GalleryEngine()
CONFIG = ENGINE.info.validate_config({"pageSize": 20, "batchSize": 32})


class Stored:
    """Stored vectors of one backbone (engines.interface.StoredVectors), and what the pipeline hands back."""

    def __init__(self, vectors: dict[str, np.ndarray], digest: str) -> None:
        self.vectors = dict(vectors)
        self.digest = digest
        self.handed_back: dict[str, np.ndarray] = {}

    def take(self, ref):
        return self.vectors.get(ref.identifier_id)

    async def store(self, vectors: Mapping[str, np.ndarray]) -> None:
        self.handed_back.update(vectors)


class CountingStore(EmbeddingStore):
    """The content cache, counting its lookups."""

    lookups = 0

    async def cached_embeddings(self, backbone_digest, sha256s):
        self.lookups += 1
        return await super().cached_embeddings(backbone_digest, sha256s)


class StoredContext(MemoryContext):
    """A MemoryContext whose identifiers may have stored vectors of one backbone (``digest``)."""

    def __init__(self, *args, stored: dict[str, np.ndarray], digest: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cache = CountingStore(self.store.vectors, self.store.measures)
        self.stored = Stored(stored, digest)

    @property
    def handed_back(self) -> dict[str, np.ndarray]:
        return self.stored.handed_back

    @property
    def cache_lookups(self) -> int:
        return self.cache.lookups


async def _embedded(ctx, spec, stored=True):
    runner = get_runner(spec.model, "cpu")
    return await embed_library(ctx, spec, runner, stored=stored, **pipeline_kwargs(CONFIG))


async def test_stored_vectors_stand_in_and_only_the_missing_are_fetched(decode_pool, digit_library):
    entries = digit_library.train[:60]
    spec = default_backbone(CONFIG["imageSize"], 1)
    first = StoredContext(entries, config=CONFIG, decode_pool=decode_pool, stored={}, digest=spec.digest)
    full = await _embedded(first, spec)
    assert first.fetched == 60 and first.inferred == 60
    assert set(first.handed_back) == {e.identifier_id for e in entries}  # the next run can read them
    by_id = {r.identifier_id: v for r, v in zip(full.refs, full.embeddings, strict=True)}

    # 54 stored, 6 new: the 6 alone are fetched and embedded, and the rows equal a full run's.
    stored = {i: v for n, (i, v) in enumerate(by_id.items()) if n % 10}
    again = StoredContext(entries, config=CONFIG, decode_pool=decode_pool, stored=stored, digest=spec.digest,
                          store=None)
    partial = await _embedded(again, spec)
    assert again.fetched == 6 and again.inferred == 6 and partial.stored == 54
    assert set(again.handed_back) == set(by_id) - set(stored)
    assert [r.identifier_id for r in partial.refs] == [r.identifier_id for r in full.refs]
    np.testing.assert_allclose(partial.embeddings, full.embeddings, rtol=1e-5, atol=1e-6)
    assert 0 < again.cache_lookups <= 3  # only the pages holding one of the 6 ask the content cache

    # Everything stored: the content cache is not asked at all (it was one round trip per page).
    unchanged = StoredContext(entries, config=CONFIG, decode_pool=decode_pool, stored=by_id, digest=spec.digest,
                              store=None)
    whole = await _embedded(unchanged, spec)
    assert unchanged.cache_lookups == 0 and unchanged.fetched == 0 and whole.stored == 60
    np.testing.assert_allclose(whole.embeddings, full.embeddings, rtol=1e-5, atol=1e-6)


async def test_vectors_of_another_backbone_or_a_crop_engine_are_not_used(decode_pool, digit_library):
    entries = digit_library.train[:20]
    spec = default_backbone(CONFIG["imageSize"], 1)
    wrong = {e.identifier_id: np.ones(spec.dim, np.float32) for e in entries}
    other = StoredContext(entries, config=CONFIG, decode_pool=decode_pool, stored=wrong, digest="another-backbone")
    out = await _embedded(other, spec)
    assert other.fetched == 20 and out.stored == 0 and other.handed_back == {}
    crops = StoredContext(entries, config=CONFIG, decode_pool=decode_pool, stored=wrong, digest=spec.digest)
    out = await _embedded(crops, spec, stored=False)
    assert crops.fetched == 20 and out.stored == 0 and crops.handed_back == {}
    assert not np.allclose(out.embeddings, 1.0)
