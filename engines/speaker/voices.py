"""Window embeddings to voices to time: clustering, smoothing, and cutting the time line into one-speaker pieces.

Plain numpy (and scikit-learn's clustering) on arrays the stream collected; no audio, no models.
"""

from __future__ import annotations

import numpy as np

__all__ = ["cluster", "cut", "smooth"]

CLUSTER_DISTANCE = 0.28  # average-linkage cosine distance at which two groups of windows are two voices
DIRECT_MAX = 1000  # windows clustered directly (8 min of voice): sklearn holds N² doubles, and copies, for it
MIN_CLUSTER_WINDOWS = 5  # a voice heard in fewer windows (under 2.5 s) is folded into its nearest voice


def cluster(vectors: np.ndarray, speakers: int | None, distance: float = CLUSTER_DISTANCE) -> np.ndarray:
    """A voice index per unit-length window embedding, numbered by first appearance.

    ``speakers`` given: exactly that many voices (fewer only when there are fewer windows). Otherwise
    agglomerative clustering, cosine, average linkage, cut at ``distance``; tiny clusters are folded in.
    Beyond DIRECT_MAX windows, DIRECT_MAX of them evenly spread over the recording are clustered and every
    window joins the voice whose mean it is nearest: memory stays bounded and the distance means what it
    means between windows (a speaker heard for under DIRECT_MAX / N of the windows may go unsampled and is
    then given to the nearest voice).
    """
    n = len(vectors)
    if n < 2:
        return np.zeros(n, np.int64)
    if n > DIRECT_MAX:
        sample = np.linspace(0, n - 1, DIRECT_MAX).round().astype(np.int64)
        sub = _agglomerate(vectors[sample], speakers, distance)
        means = _unit(np.stack([vectors[sample][sub == c].mean(axis=0) for c in range(int(sub.max()) + 1)]))
        labels = np.concatenate([np.argmax(vectors[i : i + 4096] @ means.T, axis=1) for i in range(0, n, 4096)])
    else:
        labels = _agglomerate(vectors, speakers, distance)
    if speakers is None:
        labels = _fold_small(vectors, labels)
    return _by_appearance(labels)


def _agglomerate(vectors: np.ndarray, speakers: int | None, distance: float) -> np.ndarray:
    from sklearn.cluster import AgglomerativeClustering

    if len(vectors) < 2:
        return np.zeros(len(vectors), np.int64)
    if speakers is not None:
        model = AgglomerativeClustering(n_clusters=min(speakers, len(vectors)), metric="cosine", linkage="average")
    else:
        model = AgglomerativeClustering(n_clusters=None, distance_threshold=distance, metric="cosine",
                                        linkage="average")
    return model.fit_predict(vectors).astype(np.int64)


def _fold_small(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    counts = np.bincount(labels)
    big = np.flatnonzero(counts >= MIN_CLUSTER_WINDOWS)
    small = np.flatnonzero((counts > 0) & (counts < MIN_CLUSTER_WINDOWS))
    if not big.size or not small.size:
        return labels
    means = _unit(np.stack([vectors[labels == c].mean(axis=0) for c in big]))
    labels = labels.copy()
    for c in small:
        mine = labels == c
        labels[mine] = big[int(np.argmax(means @ _unit(vectors[mine].mean(axis=0)[None])[0]))]
    return labels


def _by_appearance(labels: np.ndarray) -> np.ndarray:
    _, first = np.unique(labels, return_index=True)
    order = labels[np.sort(first)]
    mapping = {int(old): new for new, old in enumerate(order)}
    return np.array([mapping[int(x)] for x in labels], np.int64)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def smooth(labels: np.ndarray, centres: np.ndarray, hop: float) -> np.ndarray:
    """A window whose voice differs from both its neighbours, one hop either side and agreeing with each other,
    takes theirs: a voice does not speak for 0.5 s inside another's turn, a noisy window does."""
    out = labels.copy()
    if labels.size < 3:
        return out
    inside = (labels[:-2] == labels[2:]) & (labels[1:-1] != labels[:-2]) & (centres[2:] - centres[:-2] <= 2 * hop + 1e-6)
    out[1:-1][inside] = labels[:-2][inside]
    return out


def cut(
    labels: np.ndarray, centres: np.ndarray, voiced: list[tuple[float, float]], reach: float, merge_gap: float
) -> list[tuple[float, float, int]]:
    """``(start, end, voice)`` pieces of the voiced time, each instant given the voice of the window centred
    nearest to it (so a change of speaker falls halfway between two window centres, and a pause ends a
    piece at the voice's edge); voice farther than ``reach`` from every centre is nobody's. One voice's
    pieces closer than ``merge_gap`` are joined."""
    if not labels.size or not voiced:
        return []
    order = np.argsort(centres, kind="stable")
    c, lab = centres[order], labels[order]
    mids = (c[:-1] + c[1:]) / 2
    lo = np.maximum(np.concatenate([[-np.inf], mids]), c - reach)
    hi = np.minimum(np.concatenate([mids, [np.inf]]), c + reach)
    # Consecutive cells of one voice that touch are one interval.
    intervals: list[list[float]] = []
    for a, b, v in zip(lo.tolist(), hi.tolist(), lab.tolist(), strict=True):
        if intervals and intervals[-1][2] == v and a - intervals[-1][1] <= 1e-9:
            intervals[-1][1] = b
        else:
            intervals.append([a, b, v])
    pieces: list[tuple[float, float, int]] = []
    i = j = 0
    while i < len(intervals) and j < len(voiced):
        a = max(intervals[i][0], voiced[j][0])
        b = min(intervals[i][1], voiced[j][1])
        if b > a:
            v = int(intervals[i][2])
            if pieces and pieces[-1][2] == v and a - pieces[-1][1] <= merge_gap:
                pieces[-1] = (pieces[-1][0], b, v)
            else:
                pieces.append((a, b, v))
        if intervals[i][1] <= voiced[j][1]:
            i += 1
        else:
            j += 1
    return pieces
