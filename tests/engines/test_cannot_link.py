"""Auto-grouping's cannot-link: rows a person said are not the same person never share a group."""

from __future__ import annotations

import numpy as np

from engines.clustering import cluster


def two_people(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 0.05, (5, 8)) + np.eye(8)[0]
    b = rng.normal(0, 0.05, (5, 8)) + np.eye(8)[1]
    x = np.vstack([a, b])
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_without_constraints_each_person_is_one_group() -> None:
    labels = cluster(two_people(), n_clusters=2, similarity_threshold=None).labels
    assert len(set(labels[:5])) == 1 and len(set(labels[5:])) == 1 and labels[0] != labels[5]


def test_a_row_marked_not_the_others_is_set_apart_alone_and_the_rest_stay_together() -> None:
    # Row 0 is marked not the person rows 1-4 are (a negative against each of their identifiers).
    found = cluster(two_people(), n_clusters=2, similarity_threshold=None, cannot_link=[(0, r) for r in range(1, 5)])
    labels = found.labels
    assert all(labels[0] != labels[r] for r in range(1, 5))
    assert len(set(labels[1:5])) == 1 and len(set(labels[5:])) == 1
    assert np.bincount(labels).tolist() == [5, 4, 1]  # largest first; the row set apart is a group of its own
    assert found.representatives[2] == 0


def test_every_pair_ends_apart_with_the_similarity_threshold_too() -> None:
    x = np.ones((6, 4)) / 2.0  # identical rows: one group without constraints
    pairs = [(0, 1), (1, 2), (3, 4)]
    labels = cluster(x, n_clusters=None, similarity_threshold=0.5, cannot_link=pairs).labels
    assert all(labels[a] != labels[b] for a, b in pairs)
