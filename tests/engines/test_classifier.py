"""The classifier engine, trained on the digits library and checked on the held-out fifth."""

from __future__ import annotations

import numpy as np
import pytest_asyncio

from engines.classifier import ClassifierEngine
from engines.interface import Artifact
from tests.engines.accuracy import run_downloaded_artifact, top1
from tests.engines.memory_context import MemoryContext

ENGINE = ClassifierEngine()


@pytest_asyncio.fixture(scope="module")
async def trained(decode_pool, digit_library) -> tuple[Artifact, MemoryContext]:
    ctx = MemoryContext(digit_library.train, config=ENGINE.info.validate_config({}), decode_pool=decode_pool)
    return await ENGINE.train(ctx), ctx


async def test_the_classifier_recognises_at_least_95_percent_of_held_out_digits(trained, digit_library):
    artifact, _ = trained
    answers = await ENGINE.recognize(
        artifact.data, digit_library.test_images, top_k=3, threshold=0.0, execution_provider="cpu"
    )
    assert top1(answers, digit_library.test_entity_ids) >= 0.95
    assert all(0.0 <= m.score <= 1.0 and m.entity_identifier_id is None for a in answers for m in a.matches)


async def test_the_downloaded_classifier_gives_the_gateways_answers_with_plain_onnxruntime(trained, digit_library):
    artifact, _ = trained
    images = digit_library.test_images[:64]
    answers = await ENGINE.recognize(artifact.data, images, top_k=5, threshold=-1.0, execution_provider="cpu")
    entity_ids, scores = run_downloaded_artifact(artifact.data, images)
    assert [[m.entity_id for m in a.matches] for a in answers] == entity_ids
    np.testing.assert_allclose([[m.score for m in a.matches] for a in answers], scores, rtol=1e-6)


async def test_the_classifier_report_has_validation_accuracy_and_a_calibrated_threshold(trained):
    artifact, _ = trained
    report = artifact.jsondata
    evaluation = report["evaluation"]
    assert report["engine"] == "engineshed-classifier"
    assert evaluation["top1"] == artifact.accuracy >= 0.9
    # 20 % of each of the 10 digits validates.
    assert sum(v["count"] for v in evaluation["perEntity"].values()) == evaluation["validationRows"]
    assert 250 <= evaluation["validationRows"] <= 310
    assert 1 <= evaluation["epochs"] <= 200
    assert report["finalWeights"] == "refit on all rows"
    assert 0.0 < report["threshold"] < 1.0


async def test_training_twice_with_the_same_seed_gives_the_same_model(decode_pool, digit_library):
    entries = digit_library.train[:150]
    config = ENGINE.info.validate_config({"maxEpochs": 20, "refitOnAll": False})
    first = await ENGINE.train(MemoryContext(entries, config=config, decode_pool=decode_pool))
    second = await ENGINE.train(MemoryContext(entries, config=config, decode_pool=decode_pool))
    assert first.data == second.data
    assert first.jsondata["finalWeights"] == "validated"
