"""What a training measured, read from its model's ``jsondata.evaluation`` and ``calibration``: one read model
that GraphQL's EvaluationResult and the REST training resource both render."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from storage.rows import EngineModel


@dataclass(frozen=True)
class SplitSizes:
    """Identifiers in each split of a training (seeded, reproducible)."""

    training: int
    validation: int
    test: int


@dataclass(frozen=True)
class EntityEvaluation:
    entity_id: str
    count: int  # evaluated identifiers of the entity
    correct: int  # of those, recognized as the entity (top-1)


@dataclass(frozen=True)
class Calibration:
    """How the acceptance threshold was calibrated (engines/calibration.py)."""

    method: str
    threshold: float
    genuine: int
    impostor: int
    true_positive_rate: float | None
    true_negative_rate: float | None
    # The share of calibration impostors the threshold accepts, and the 95 % upper bound so few of them can show.
    false_accept_rate: float | None = None
    false_accept_rate_bound: float | None = None


@dataclass(frozen=True)
class BackboneCandidate:
    """One backbone a training measured before choosing what to embed with (engines/backbone_choice.py)."""

    model: str  # a registered version's reference (name@version), or pixel-projection
    model_version_id: str | None
    top1: float | None  # held-out top-1 on the comparison's sample; None: nothing could be held out
    embedded: int  # sampled identifiers it embedded
    chosen: bool


@dataclass(frozen=True)
class BackboneComparison:
    """The comparison that chose the backbone: each candidate's held-out accuracy, the split, the winner and why."""

    method: str
    sampled: int  # identifiers in the sample
    evaluated: int  # of those, held out once each (the folds together)
    split_sizes: SplitSizes  # one fold's gallery (training) and held-out rows (test)
    candidates: list[BackboneCandidate]
    chosen: str
    reason: str


@dataclass(frozen=True)
class Evaluation:
    method: str | None
    top1: float | None  # top-1 accuracy (0-1) on the evaluated rows
    evaluated: int | None  # rows evaluated
    split_sizes: SplitSizes
    per_entity: list[EntityEvaluation]
    calibration: Calibration | None
    backbone_comparison: BackboneComparison | None = None  # None: the backbone was named, or had no rival


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def evaluation_of(model: EngineModel) -> Evaluation | None:
    """The model's evaluation; None before it was trained (its jsondata holds no evaluation yet)."""
    data = model.jsondata if isinstance(model.jsondata, dict) else {}
    evaluation = data.get("evaluation")
    if not isinstance(evaluation, dict):
        return None
    splits = evaluation.get("splits") if isinstance(evaluation.get("splits"), dict) else None
    if splits is None:  # engines that report no split: what they trained on and validated with
        validation = _int(evaluation.get("validationRows"))
        splits = {"training": max(0, _int(data.get("identifiers")) - validation), "validation": validation, "test": 0}
    per_entity = evaluation.get("perEntity") if isinstance(evaluation.get("perEntity"), dict) else {}
    calibration = data.get("calibration") if isinstance(data.get("calibration"), dict) else None
    top1 = evaluation.get("top1")
    evaluated = evaluation.get("evaluated", evaluation.get("validationRows"))
    return Evaluation(
        method=evaluation.get("method") if isinstance(evaluation.get("method"), str) else None,
        top1=float(top1) if isinstance(top1, (int, float)) else None,
        evaluated=_int(evaluated) if evaluated is not None else None,
        split_sizes=SplitSizes(training=_int(splits.get("training")), validation=_int(splits.get("validation")),
                               test=_int(splits.get("test"))),
        per_entity=[
            EntityEvaluation(entity_id=str(k), count=_int(v.get("count")), correct=_int(v.get("correct")))
            for k, v in per_entity.items() if isinstance(v, dict)
        ],
        calibration=Calibration(
            method=str(calibration.get("method")), threshold=float(calibration.get("threshold") or 0.0),
            genuine=_int(calibration.get("genuine")), impostor=_int(calibration.get("impostor")),
            true_positive_rate=calibration.get("truePositiveRate"), true_negative_rate=calibration.get("trueNegativeRate"),
            false_accept_rate=_rate(calibration.get("falseAcceptRate")),
            false_accept_rate_bound=_rate(calibration.get("falseAcceptRateBound")),
        ) if calibration else None,
        backbone_comparison=_comparison(evaluation.get("backboneComparison")),
    )


def _rate(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _splits(value: Any) -> SplitSizes:
    splits = value if isinstance(value, dict) else {}
    return SplitSizes(training=_int(splits.get("training")), validation=_int(splits.get("validation")),
                      test=_int(splits.get("test")))


def _comparison(value: Any) -> BackboneComparison | None:
    if not isinstance(value, dict):
        return None
    candidates = value.get("candidates") if isinstance(value.get("candidates"), list) else []
    return BackboneComparison(
        method=str(value.get("method") or ""),
        sampled=_int(value.get("sampled")),
        evaluated=_int(value.get("evaluated")),
        split_sizes=_splits(value.get("splits")),
        candidates=[
            BackboneCandidate(
                model=str(c.get("model") or ""),
                model_version_id=str(c["modelVersionId"]) if c.get("modelVersionId") else None,
                top1=float(c["top1"]) if isinstance(c.get("top1"), (int, float)) else None,
                embedded=_int(c.get("embedded")),
                chosen=c.get("chosen") is True,
            )
            for c in candidates if isinstance(c, dict)
        ],
        chosen=str(value.get("chosen") or ""),
        reason=str(value.get("reason") or ""),
    )
