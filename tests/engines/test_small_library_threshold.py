"""Calibrated thresholds on a small library (3 photos per person) are not degenerate: the classifier's softmax
gives ~1.0 on every validation photo it answers right, and a threshold at the lowest of those (0.9997) rejected
most held-out photos of the people it knows. Strangers, asked as such, give the impostor scores it lacked; the
evaluation reports the false-accept rate the threshold is set for, and how little a few impostors prove."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest_asyncio

from engines.calibration import balanced_threshold
from engines.classifier import ClassifierEngine
from tests.engines.memory_context import MemoryContext

ENGINE = ClassifierEngine()
KNOWN = ["digit-0", "digit-1", "digit-2", "digit-3", "digit-4"]
STRANGERS = ["digit-5", "digit-6", "digit-7"]


@pytest_asyncio.fixture(scope="module")
async def small(decode_pool, digit_library):
    by = defaultdict(list)
    for entry in digit_library.train:
        by[entry.entity_id].append(entry)
    enrolled = [e for k in KNOWN for e in by[k][:3]]
    held_out = [e for k in KNOWN for e in by[k][3:23]]
    strangers = [e for k in STRANGERS for e in by[k][:20]]
    ctx = MemoryContext(enrolled, config=ENGINE.info.validate_config({}), decode_pool=decode_pool)
    return await ENGINE.train(ctx), held_out, strangers


async def test_held_out_photos_of_enrolled_people_match_at_the_calibrated_threshold(small):
    artifact, held_out, strangers = small
    answers = await ENGINE.recognize(artifact.data, [e.data for e in held_out], top_k=1, threshold=None,
                                     execution_provider="cpu")
    right = sum(bool(a.matches) and a.matches[0].entity_id == e.entity_id for a, e in zip(answers, held_out, strict=True))
    assert right / len(held_out) >= 0.7, (right, artifact.jsondata["calibration"])
    stray = await ENGINE.recognize(artifact.data, [e.data for e in strangers], top_k=1, threshold=None,
                                   execution_provider="cpu")
    matched = sum(bool(a.matches) for a in stray)
    # A softmax over five digits is sure of many strangers; the threshold still turns away a share of them.
    assert matched / len(strangers) < right / len(held_out), (matched, right)


async def test_the_threshold_is_calibrated_against_impostors_and_reports_its_false_accept_rate(small):
    artifact, _, _ = small
    calibration = artifact.jsondata["calibration"]
    assert calibration["method"] == "balanced-accuracy" and calibration["impostor"] >= len(KNOWN)
    assert calibration["threshold"] < 0.9995
    evaluation = artifact.jsondata["evaluation"]
    assert 0.0 <= evaluation["falseAcceptRate"] <= evaluation["falseAcceptRateBound"] <= 1.0
    assert evaluation["falseAcceptRate"] == calibration["falseAcceptRate"]


def test_without_impostor_scores_a_prior_is_used_not_the_lowest_genuine_score():
    genuine = np.array([0.99991, 0.99995, 0.99999])
    calibration = balanced_threshold(genuine, np.empty(0), default=0.0, prior=0.5)
    assert calibration.method == "prior" and calibration.threshold == 0.5
    assert calibration.as_json()["falseAcceptRate"] is None  # no impostors: no rate to claim


def test_a_few_impostors_bound_the_false_accept_rate_only_loosely():
    calibration = balanced_threshold(np.array([0.9, 0.95, 0.97]), np.array([0.2, 0.3, 0.4]), default=0.0)
    assert calibration.false_accept_rate == 0.0
    assert 0.6 < calibration.false_accept_bound < 0.65  # 0 of 3 accepted: the rate may still be up to ~0.63
