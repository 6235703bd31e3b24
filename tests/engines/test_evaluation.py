"""Leave-one-out evaluation: the same answers as the plain definition, in memory that does not grow with rows."""

from __future__ import annotations

import tracemalloc

import numpy as np

from engines import evaluation
from engines.evaluation import l2_normalise, leave_one_out


def _library(rows: int, per_entity: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((rows // per_entity, 64)).astype(np.float32)
    labels = np.repeat(np.arange(rows // per_entity), per_entity)
    vectors = centres[labels] + 0.8 * rng.standard_normal((rows, 64)).astype(np.float32)
    return vectors, labels


def test_chunked_results_equal_the_plain_definition(monkeypatch):
    vectors, labels = _library(300)
    labels[::7] = 0  # uneven entities, one large
    monkeypatch.setattr(evaluation, "CHUNK_ELEMENTS", 300 * 7)  # 7 queries a chunk: many chunks, a ragged last one
    result = leave_one_out(vectors, labels)

    x = l2_normalise(vectors)
    scores = x @ x.T
    np.fill_diagonal(scores, -np.inf)
    same = labels[:, None] == labels[None, :]
    genuine = np.where(same, scores, -np.inf).max(axis=1)
    impostor = np.where(same, -np.inf, scores).max(axis=1)
    evaluable = np.flatnonzero(np.bincount(labels)[labels] > 1)
    assert np.array_equal(result.queries, evaluable)
    np.testing.assert_allclose(result.genuine, genuine[evaluable], rtol=1e-6)
    np.testing.assert_allclose(result.impostor, impostor[evaluable], rtol=1e-6)
    assert result.top1 == float((genuine[evaluable] > impostor[evaluable]).mean())
    assert 0.5 < result.top1 < 1.0  # a library where the answer is informative, not trivially 0 or 1


def _peak_bytes(rows: int) -> int:
    vectors, labels = _library(rows)
    unit = l2_normalise(vectors)
    tracemalloc.start()
    try:
        leave_one_out(unit, labels, normalised=True)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_working_memory_does_not_grow_with_the_library():
    small, large = _peak_bytes(2_000), _peak_bytes(10_000)
    # 8,000 more rows of 64 floats are 2 MiB; the old fixed 1,024-query chunks grew by ~72 MiB here.
    assert large - small < 4 * 2**20, (small, large)
