"""The gallery engine, trained on the digits library and checked on the held-out fifth."""

from __future__ import annotations

import time

import numpy as np
import onnx
import pytest
import pytest_asyncio

from engines.gallery import GalleryEngine
from engines.interface import Artifact
from tests.engines.accuracy import run_downloaded_artifact, top1
from tests.engines.memory_context import MemoryContext

ENGINE = GalleryEngine()


@pytest_asyncio.fixture(scope="module")
async def trained(decode_pool, digit_library) -> tuple[Artifact, MemoryContext]:
    ctx = MemoryContext(digit_library.train, config=ENGINE.info.validate_config({}), decode_pool=decode_pool)
    started = time.perf_counter()
    artifact = await ENGINE.train(ctx)
    artifact.jsondata["measuredWallSeconds"] = time.perf_counter() - started
    return artifact, ctx


async def test_the_gallery_recognises_at_least_95_percent_of_held_out_digits(trained, digit_library):
    artifact, _ = trained
    # Every held-out digit belongs to a known entity: closed-set identification, no threshold.
    answers = await ENGINE.recognize(
        artifact.data, digit_library.test_images, top_k=5, threshold=0.0, execution_provider="cpu"
    )
    assert top1(answers, digit_library.test_entity_ids) >= 0.95
    assert all(len(a.matches) == 5 for a in answers)
    assert [a.index for a in answers] == list(range(len(answers)))


async def test_answers_above_the_calibrated_threshold_are_almost_always_right(trained, digit_library):
    artifact, _ = trained
    answers = await ENGINE.recognize(
        artifact.data, digit_library.test_images, top_k=1, threshold=None, execution_provider="cpu"
    )
    accepted = [(a, e) for a, e in zip(answers, digit_library.test_entity_ids) if a.matches]
    assert len(accepted) >= 0.8 * len(answers)
    assert top1([a for a, _ in accepted], [e for _, e in accepted]) >= 0.98
    assert all(m.score >= artifact.jsondata["threshold"] for a, _ in accepted for m in a.matches)


async def test_the_downloaded_artifact_gives_the_gateways_answers_with_plain_onnxruntime(trained, digit_library):
    artifact, _ = trained
    images = digit_library.test_images[:64]
    answers = await ENGINE.recognize(artifact.data, images, top_k=3, threshold=-1.0, execution_provider="cpu")
    entity_ids, scores = run_downloaded_artifact(artifact.data, images)
    assert [[m.entity_id for m in a.matches] for a in answers] == [row[:3] for row in entity_ids]
    np.testing.assert_allclose([[m.score for m in a.matches] for a in answers], scores[:, :3], rtol=1e-6)


async def test_a_match_names_the_gallery_identifier_it_resembles_most(trained, digit_library):
    artifact, _ = trained
    # An image from the gallery itself matches itself with cosine ~1.
    entry = digit_library.train[7]
    [answer] = await ENGINE.recognize(artifact.data, [entry.data], top_k=1, threshold=None, execution_provider="cpu")
    assert answer.matches[0].entity_id == entry.entity_id
    assert answer.matches[0].entity_identifier_id == entry.identifier_id
    assert answer.matches[0].score == pytest.approx(1.0, abs=1e-4)


async def test_the_report_says_what_was_trained_and_how_well(trained, digit_library):
    artifact, ctx = trained
    report = artifact.jsondata
    assert artifact.content_type == "application/onnx" == report["contentType"]
    assert report["engine"] == "engineshed-gallery"
    assert report["provider"] == "CPUExecutionProvider"
    assert report["identifiers"] == len(digit_library.train) and report["entities"] == 10
    assert report["skipped"] == [] and "issues" not in report
    assert report["evaluation"]["top1"] == artifact.accuracy >= 0.95
    per_entity = report["evaluation"]["perEntity"]
    assert sum(v["count"] for v in per_entity.values()) == len(digit_library.train)
    assert len(report["backbone"]["digest"]) == 64
    assert set(report["timings"]) >= {"fetch", "decode", "inference", "total"}
    assert ctx.inferred == len(digit_library.train)
    assert ctx.progress_log[-1][0] == 1.0
    fractions = [f for f, _ in ctx.progress_log]
    assert fractions == sorted(fractions)
    model = onnx.load_from_string(artifact.data)
    assert model.ir_version <= 13
    print(f"gallery: trained {len(digit_library.train)} identifiers in {report['measuredWallSeconds']:.2f} s")


async def test_a_smaller_top_k_at_recognition_time_cuts_the_baked_list(trained, digit_library):
    artifact, _ = trained
    [answer] = await ENGINE.recognize(
        artifact.data, digit_library.test_images[:1], top_k=2, threshold=-1.0, execution_provider="cpu"
    )
    assert len(answer.matches) == 2
    assert answer.matches[0].score >= answer.matches[1].score
