"""Clustering for auto-grouping, with scikit-learn's implementations (never hand-written).

* ``n_clusters`` given: KMeans (k-means++ initialisation, 4 restarts, fixed seed) on the rows as given —
  L2-normalised embeddings, so Euclidean distance orders like cosine distance;
* else ``similarity_threshold``: agglomerative clustering with average linkage on cosine distance, cut where
  the average similarity between two groups falls below the threshold (O(n²) memory: callers bound n).

Each group's representative is its member nearest the group's centre (the mean of its rows).

``cannot_link``: pairs of rows that may never share a group (a person said one is not the other's entity). After
clustering, a group holding both of a pair sets one of them apart in a group of its own: the row with the most
partners in the group (the identifier marked not that person), else the one farther from the group's centre. Every
pair ends apart; each row set apart is one more group, and a person sees it alone rather than mixed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Clusters", "cluster"]


@dataclass(frozen=True, slots=True)
class Clusters:
    labels: np.ndarray  # [N] group index 0..k-1, groups numbered largest first
    distances: np.ndarray  # [N] each row's distance to its group's centre
    representatives: list[int]  # per group, the row nearest its centre


def cluster(
    x: np.ndarray, *, n_clusters: int | None, similarity_threshold: float | None, seed: int = 0,
    cannot_link: Sequence[tuple[int, int]] = (),
) -> Clusters:
    """Group the rows of ``x`` [N, D]; exactly one of ``n_clusters`` or ``similarity_threshold``."""
    from sklearn.cluster import AgglomerativeClustering, KMeans

    x = np.asarray(x, np.float64)
    if (n_clusters is None) == (similarity_threshold is None):
        raise ValueError("give n_clusters or similarity_threshold")
    n = x.shape[0]
    if n == 0:
        raise ValueError("nothing to cluster")
    if n_clusters is not None:
        if not 1 <= n_clusters <= n:
            raise ValueError(f"n_clusters {n_clusters} is not between 1 and {n}")
        labels = KMeans(n_clusters=n_clusters, n_init=4, random_state=seed).fit_predict(x) if n_clusters > 1 else np.zeros(n, int)
    elif n == 1:
        labels = np.zeros(1, int)
    else:
        labels = AgglomerativeClustering(
            n_clusters=None, metric="cosine", linkage="average", distance_threshold=1.0 - float(similarity_threshold)
        ).fit_predict(x)
    if cannot_link:
        labels = _apart(x, np.asarray(labels).copy(), cannot_link)
    # Number groups largest first, so the first page of groups is the most useful one.
    sizes = np.bincount(labels)
    order = np.argsort(-sizes, kind="stable")
    relabel = np.empty_like(order)
    relabel[order] = np.arange(order.size)
    labels = relabel[labels]
    distances = np.empty(n, np.float64)
    representatives = []
    for g in range(order.size):
        rows = np.flatnonzero(labels == g)
        centre = x[rows].mean(axis=0)
        d = np.linalg.norm(x[rows] - centre, axis=1)
        distances[rows] = d
        representatives.append(int(rows[int(np.argmin(d))]))
    return Clusters(labels, distances, representatives)


def _apart(x: np.ndarray, labels: np.ndarray, cannot_link: Sequence[tuple[int, int]]) -> np.ndarray:
    """Labels with no cannot-link pair in one group (see the module docstring); group numbers stay 0..k-1."""
    partners: dict[int, set[int]] = {}
    for a, b in cannot_link:
        if a != b:
            partners.setdefault(a, set()).add(b)
            partners.setdefault(b, set()).add(a)
    # Each pass sets one row apart alone, so the pairs sharing a group fall each time and the loop ends.
    while True:
        clash = next(((a, b) for a, mates in partners.items() for b in mates if a < b and labels[a] == labels[b]), None)
        if clash is None:
            return labels
        group = labels[clash[0]]
        centre = x[labels == group].mean(axis=0)
        weights = {row: (sum(1 for m in partners[row] if labels[m] == group), float(np.linalg.norm(x[row] - centre)))
                   for row in clash}
        labels[max(clash, key=weights.__getitem__)] = int(labels.max()) + 1
