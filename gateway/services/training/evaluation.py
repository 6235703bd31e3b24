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


@dataclass(frozen=True)
class Evaluation:
    method: str | None
    top1: float | None  # top-1 accuracy (0-1) on the evaluated rows
    evaluated: int | None  # rows evaluated
    split_sizes: SplitSizes
    per_entity: list[EntityEvaluation]
    calibration: Calibration | None


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
        ) if calibration else None,
    )
