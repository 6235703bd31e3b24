"""Acceptance thresholds calibrated from scores of right and wrong answers.

Method: the threshold that maximises **balanced accuracy**, (TPR + TNR) / 2, where a score at or
above the threshold is accepted: TPR is the share of genuine scores accepted, TNR the share of
impostor scores rejected. Balanced accuracy weighs both kinds of error equally whatever the ratio
of genuine to impostor samples (near the equal-error point, but never worse than it on the
calibration data). The threshold is put halfway between the best cut-off score and the score
below it, so it does not sit exactly on a calibration sample.
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
    method: str  # "balanced-accuracy" | "lowest-genuine" | "default"
    genuine: int
    impostor: int
    true_positive_rate: float | None
    true_negative_rate: float | None

    def as_json(self) -> dict[str, Any]:
        """The form reported in an artifact's ``jsondata.calibration``."""
        return {
            "method": self.method,
            "threshold": self.threshold,
            "genuine": self.genuine,
            "impostor": self.impostor,
            "truePositiveRate": self.true_positive_rate,
            "trueNegativeRate": self.true_negative_rate,
        }


def balanced_threshold(genuine: np.ndarray, impostor: np.ndarray, *, default: float) -> Calibration:
    """The score threshold maximising balanced accuracy between ``genuine`` and ``impostor`` scores.

    With no impostor scores it accepts every genuine one ("lowest-genuine"); with no genuine
    scores it returns ``default``.
    """
    g = np.sort(np.asarray(genuine, np.float64).ravel())
    i = np.sort(np.asarray(impostor, np.float64).ravel())
    if g.size == 0:
        return Calibration(float(default), "default", 0, int(i.size), None, None)
    if i.size == 0:
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
