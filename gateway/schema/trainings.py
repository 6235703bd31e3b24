"""Training jobs and model versions (issue #15): the fields Job, LibraryEngineModel and Library gain, the
typed evaluation result, and setDefaultModel. Mixed into the types in jobs.py, engine_models.py, libraries.py."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Optional

import strawberry

from gateway.schema.context import Info
from gateway.schema.scalars import DateTime, JSONData
from gateway.services import promotion
from storage import rows

if TYPE_CHECKING:
    from gateway.schema.engine_models import LibraryEngineModel
    from gateway.schema.libraries import EntityIdentifier

FINISHED = ("complete", "failed", "cancelled")


# ---- evaluation ----


@strawberry.type(description="Identifiers in each split of a training (seeded, reproducible).")
class SplitSizes:
    training: int
    validation: int
    test: int


@strawberry.type
class EntityEvaluation:
    entity_id: strawberry.ID
    count: int = strawberry.field(description="Evaluated identifiers of the entity.")
    correct: int = strawberry.field(description="Of those, recognized as the entity (top-1).")


@strawberry.type(description="How the acceptance threshold was calibrated (engines/calibration.py).")
class Calibration:
    method: str
    threshold: float
    genuine: int
    impostor: int
    true_positive_rate: Optional[float]
    true_negative_rate: Optional[float]


@strawberry.type(description="What the training measured, on the rows its split held out.")
class EvaluationResult:
    method: Optional[str]
    top1: Optional[float] = strawberry.field(description="Top-1 accuracy (0-1) on the evaluated rows.")
    evaluated: Optional[int] = strawberry.field(description="Rows evaluated.")
    split_sizes: SplitSizes
    per_entity: list[EntityEvaluation]
    calibration: Optional[Calibration]


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def evaluation_result(row: rows.EngineModel) -> Optional[EvaluationResult]:
    """The typed view of an artifact's ``jsondata.evaluation`` / ``calibration``; null before training."""
    data = row.jsondata if isinstance(row.jsondata, dict) else {}
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
    return EvaluationResult(
        method=evaluation.get("method") if isinstance(evaluation.get("method"), str) else None,
        top1=float(top1) if isinstance(top1, (int, float)) else None,
        evaluated=_int(evaluated) if evaluated is not None else None,
        split_sizes=SplitSizes(training=_int(splits.get("training")), validation=_int(splits.get("validation")),
                               test=_int(splits.get("test"))),
        per_entity=[
            EntityEvaluation(entity_id=strawberry.ID(str(k)), count=_int(v.get("count")), correct=_int(v.get("correct")))
            for k, v in per_entity.items() if isinstance(v, dict)
        ],
        calibration=Calibration(
            method=str(calibration.get("method")), threshold=float(calibration.get("threshold") or 0.0),
            genuine=_int(calibration.get("genuine")), impostor=_int(calibration.get("impostor")),
            true_positive_rate=calibration.get("truePositiveRate"), true_negative_rate=calibration.get("trueNegativeRate"),
        ) if calibration else None,
    )


# ---- LibraryEngineModel ----


@strawberry.type
class ModelVersionFields:
    """Mixed into LibraryEngineModel: each resolver reads the model row (``_row``)."""

    _row: strawberry.Private[rows.EngineModel]

    @strawberry.field
    def name(self) -> Optional[str]:
        return self._row.name

    @strawberry.field
    def description(self) -> Optional[str]:
        return self._row.description

    @strawberry.field(description="What changed in this version (seed 001's output_model_changelog).")
    def changelog(self) -> Optional[str]:
        return self._row.changelog

    @strawberry.field(description="User labels, string to string.")
    def labels(self) -> JSONData:
        return self._row.labels or {}

    @strawberry.field(description="The model it was retrained from: the default when its training started.")
    def parent_model_id(self) -> Optional[strawberry.ID]:
        return strawberry.ID(str(self._row.parent_model_id)) if self._row.parent_model_id else None

    @strawberry.field(description="Version aliases; `default` while it is the default model.")
    def aliases(self) -> list[str]:
        return (["default"] if self._row.is_default else []) + list(self._row.aliases or [])

    @strawberry.field(description="Whether recognize and library-run use it when no model is named.")
    def is_default(self) -> bool:
        return self._row.is_default

    @strawberry.field(description="Whether it becomes the default on completion even if it scores worse.")
    def auto_promote(self) -> bool:
        return self._row.auto_promote

    @strawberry.field(description="What was compared when it completed: promoted, reason, accuracy, previousAccuracy, "
                      "previousModelId, autoPromote.")
    def promotion(self) -> Optional[JSONData]:
        return self._row.promotion

    @strawberry.field
    def evaluation_result(self) -> Optional[EvaluationResult]:
        return evaluation_result(self._row)


# ---- Job ----


@strawberry.type
class JobTrainingFields:
    """Mixed into Job: what its tasks say about it, its display name and labels, the model it produced."""

    _row: strawberry.Private[rows.Job]

    @strawberry.field
    def display_name(self) -> Optional[str]:
        return self._row.display_name

    @strawberry.field(description="User labels, string to string.")
    def labels(self) -> JSONData:
        return self._row.labels or {}

    @strawberry.field(description="Whether the job has finished: complete, failed or cancelled.")
    def done(self) -> bool:
        return self._row.status in FINISHED

    @strawberry.field(description="0-1: the mean of its tasks' progress (a complete task counts 1).")
    async def progress(self, info: Info) -> float:
        summary = await info.context.loaders.job_summary.load(self._row.id)
        if summary is None or summary["progress"] is None:
            return 1.0 if self._row.status == "complete" else 0.0
        return round(float(summary["progress"]), 6)

    @strawberry.field(description="When its first task started.")
    async def started_date_time(self, info: Info) -> Optional[DateTime]:
        summary = await info.context.loaders.job_summary.load(self._row.id)
        return summary["started_at"] if summary else None

    @strawberry.field(description="When its last task finished, once all have.")
    async def completed_date_time(self, info: Info) -> Optional[DateTime]:
        summary = await info.context.loaders.job_summary.load(self._row.id)
        return summary["completed_at"] if summary else None

    @strawberry.field(description="Why it failed (its first failed task's message); null unless failed or cancelled.")
    async def error(self, info: Info) -> Optional[str]:
        if self._row.status == "cancelled":
            return "the job was cancelled"
        if self._row.status != "failed":
            return None
        summary = await info.context.loaders.job_summary.load(self._row.id)
        return (summary["error"] if summary else None) or "the job failed"

    @strawberry.field(description="The model a training job produces (null for other jobs).")
    async def output_model(
        self, info: Info
    ) -> Optional[Annotated[LibraryEngineModel, strawberry.lazy("gateway.schema.engine_models")]]:
        from gateway.schema.engine_models import LibraryEngineModel

        row = await info.context.loaders.job_output_model.load(self._row.id)
        return LibraryEngineModel.from_row(row) if row else None


# ---- Library ----


@strawberry.type(description="Counts as seed 001's dataset has them.")
class LibraryCounts:
    entities: int
    active_entities: int = strawberry.field(description="Entities with at least one identifier.")
    identifiers: int = strawberry.field(description="Every identifier of the library, unassigned ones (no entity) included.")
    usable_identifiers: int = strawberry.field(description=(
        "Identifiers a training uses: those with an entity (unassigned ones are never trained on), less those the "
        "last complete training skipped."))


@strawberry.type
class LibraryIssueReason:
    kind: str = strawberry.field(description=(
        "training-failed, too-few-identifiers, duplicate (identical bytes, or a stored vector near-identical to one "
        "under another entity), duplicate-check-skipped, or a quality gate's reason."))
    severity: str = strawberry.field(description=(
        "error, warning, or info (a check that could not run, e.g. the near-duplicate scan of a library over its "
        "vector limit; info sets neither hasError nor hasWarning)"))
    message: str
    identifier_id: Optional[strawberry.ID]
    entity_id: Optional[strawberry.ID]
    detail: Optional[str]


@strawberry.type
class LibraryIssues:
    has_error: bool
    has_warning: bool
    reasons: list[LibraryIssueReason]


@strawberry.type
class LibraryInsightFields:
    """Mixed into Library: counts, preview identifiers, and issues from its last training."""

    _row: strawberry.Private[rows.Library]

    @strawberry.field
    async def counts(self, info: Info) -> LibraryCounts:
        insight = await info.context.loaders.library_insight.load(self._row.id)
        return LibraryCounts(entities=insight.entities, active_entities=insight.active_entities,
                             identifiers=insight.identifiers, usable_identifiers=insight.usable_identifiers)

    @strawberry.field(description="Its first few identifiers (priority ones first), for a preview.")
    async def preview_identifiers(
        self, info: Info
    ) -> list[Annotated[EntityIdentifier, strawberry.lazy("gateway.schema.libraries")]]:
        from gateway.schema.libraries import EntityIdentifier

        return [EntityIdentifier.from_row(r) for r in await info.context.loaders.library_preview.load(self._row.id)]

    @strawberry.field
    async def issues(self, info: Info) -> LibraryIssues:
        insight = await info.context.loaders.library_issues.load(self._row.id)
        return LibraryIssues(
            has_error=insight.has_error,
            has_warning=insight.has_warning,
            reasons=[
                LibraryIssueReason(
                    kind=r["kind"], severity=r["severity"], message=r["message"],
                    identifier_id=strawberry.ID(str(r["identifierId"])) if r["identifierId"] else None,
                    entity_id=strawberry.ID(str(r["entityId"])) if r["entityId"] else None,
                    detail=str(r["detail"]) if r["detail"] is not None else None,
                )
                for r in insight.reasons
            ],
        )


# ---- mutations ----


@strawberry.type
class TrainingMutation:
    @strawberry.mutation(description="Make a complete model the default of its library and engine (rollback).")
    async def set_default_model(
        self, info: Info, library_engine_model_id: strawberry.ID
    ) -> Annotated[LibraryEngineModel, strawberry.lazy("gateway.schema.engine_models")]:
        from gateway.schema.engine_models import LibraryEngineModel

        row = await promotion.set_default(info.context.resources, info.context.principal, library_engine_model_id)
        return LibraryEngineModel.from_row(row)
