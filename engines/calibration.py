"""Acceptance thresholds calibrated from scores of right and wrong answers.

Method: the threshold that maximises **balanced accuracy**, (TPR + TNR) / 2, where a score at or
above the threshold is accepted: TPR is the share of genuine scores accepted, TNR the share of
impostor scores rejected. Balanced accuracy weighs both kinds of error equally whatever the ratio
of genuine to impostor samples (near the equal-error point, but never worse than it on the
calibration data). The threshold is put halfway between the best cut-off score and the score
below it, so it does not sit exactly on a calibration sample.

Small libraries: with no impostor scores the data says nothing about where strangers score, and the
lowest genuine score (a classifier's 0.9999 on its own training photos) would reject every photo it has
not seen; an engine's ``prior`` (a threshold that means something without data) is used instead, capped
at the lowest genuine score. Each calibration reports the false-accept rate it is set for: the share of
calibration impostors accepted, and its 95 % upper bound, which says how little a few impostors prove.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Calibration", "balanced_threshold"]


@dataclass(frozen=True, slots=True)
class Calibration:
    """A calibrated threshold and how well it separated the calibration scores."""

    threshold: float
    method: str  # "balanced-accuracy" | "prior" | "lowest-genuine" | "default"
    genuine: int
    impostor: int
    true_positive_rate: float | None
    true_negative_rate: float | None

    @property
    def false_accept_rate(self) -> float | None:
        """The share of calibration impostor scores at or above the threshold (None without impostors)."""
        return None if self.true_negative_rate is None else 1.0 - self.true_negative_rate

    @property
    def false_accept_bound(self) -> float | None:
        """The one-sided 95 % upper bound of the false-accept rate that ``impostor`` scores can show (Clopper-Pearson):
        0 of 3 impostors accepted bounds it only by 0.63, 0 of 300 by 0.01. None without impostors."""
        if not self.impostor or self.true_negative_rate is None:
            return None
        accepted = round((1.0 - self.true_negative_rate) * self.impostor)
        return _upper_bound(accepted, self.impostor)

    def as_json(self) -> dict[str, Any]:
        """The form reported in an artifact's ``jsondata.calibration``."""
        return {
            "method": self.method,
            "threshold": self.threshold,
            "genuine": self.genuine,
            "impostor": self.impostor,
            "truePositiveRate": self.true_positive_rate,
            "trueNegativeRate": self.true_negative_rate,
            "falseAcceptRate": self.false_accept_rate,
            "falseAcceptRateBound": self.false_accept_bound,
        }


def balanced_threshold(
    genuine: np.ndarray, impostor: np.ndarray, *, default: float, prior: float | None = None,
) -> Calibration:
    """The score threshold maximising balanced accuracy between ``genuine`` and ``impostor`` scores.

    With no impostor scores: ``prior`` capped at the lowest genuine score ("prior"), or without a prior
    the lowest genuine score ("lowest-genuine"); with no genuine scores it returns ``default``.
    """
    g = np.sort(np.asarray(genuine, np.float64).ravel())
    i = np.sort(np.asarray(impostor, np.float64).ravel())
    if g.size == 0:
        return Calibration(float(default), "default", 0, int(i.size), None, None)
    if i.size == 0:
        if prior is not None:
            threshold = min(float(prior), float(g[0]))
            return Calibration(threshold, "prior", int(g.size), 0, float(np.mean(g >= threshold)), None)
        return Calibration(float(g[0]), "lowest-genuine", int(g.size), 0, 1.0, None)
    candidates = np.unique(np.concatenate([g, i, [np.inf]]))
    tpr = 1.0 - np.searchsorted(g, candidates, side="left") / g.size
    tnr = np.searchsorted(i, candidates, side="left") / i.size
    score = tpr + tnr
    best = np.flatnonzero(score >= score.max() - 1e-12)
    k = int(best[len(best) // 2])  # middle of a plateau of equally good cut-offs
    cut = candidates[k]
    below = candidates[k - 1] if k > 0 else cut - 1e-3
    threshold = float(cut if not np.isfinite(cut) else (cut + below) / 2.0)
    if not np.isfinite(threshold):
        threshold = float(candidates[-2]) + 1e-6  # nothing genuine worth accepting: above every score
    return Calibration(threshold, "balanced-accuracy", int(g.size), int(i.size), float(tpr[k]), float(tnr[k]))


def _upper_bound(accepted: int, trials: int, confidence: float = 0.95) -> float:
    """Clopper-Pearson one-sided upper bound of a binomial rate: the p at which seeing ``accepted`` or fewer of
    ``trials`` has probability 1 - ``confidence`` (bisection; no SciPy)."""
    if accepted >= trials:
        return 1.0
    alpha = 1.0 - confidence

    def at_most(p: float) -> float:  # P(X <= accepted) for X ~ Binomial(trials, p)
        term = (1.0 - p) ** trials
        total = term
        for k in range(accepted):
            term *= (trials - k) / (k + 1) * p / (1.0 - p)
            total += term
        return total

    low, high = accepted / trials, 1.0
    for _ in range(60):
        mid = (low + high) / 2.0
        if at_most(mid) > alpha:
            low = mid
        else:
            high = mid
    return round(high, 6)
