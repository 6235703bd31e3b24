"""A match's score is a cosine similarity: never reported past 1, whichever engine made it."""

from __future__ import annotations

import numpy as np

from engines.interface import Match


def test_a_cosine_that_float32_rounding_takes_past_one_is_one():
    v = np.random.default_rng(3).standard_normal(512).astype(np.float32)
    v /= np.linalg.norm(v)
    assert Match("e", "name", None, float(v @ v) + 2e-7).score == 1.0
    assert Match("e", "name", None, 0.25).score == 0.25
    assert Match("e", "name", None, -0.5).score == -0.5
