"""LibraryEngineModel: a model an engine trained on a library, as a version with its evaluation, and the
mutations that record, change, delete it or make it the default."""

from __future__ import annotations

from typing import Optional

import strawberry
from strawberry import UNSET
from strawberry.file_uploads import Upload

from gateway.schema.common import DeletePayload, Paginated, sent
from gateway.schema.context import Info
from gateway.schema.engines import Engine
from gateway.schema.enums import LibraryEngineModelTrainStatus
from gateway.schema.libraries import Library
from gateway.schema.scalars import DateTime, JSONData
from gateway.services.training import engine_models as model_service
from gateway.services.training import promotion
from gateway.services.training import report as training_report
from gateway.services.training import versions as model_versions
from gateway.services.training.evaluation import Evaluation, evaluation_of
from storage import rows


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
    false_accept_rate: Optional[float] = strawberry.field(
        default=None, description="The share of calibration impostors the threshold accepts.")
    false_accept_rate_bound: Optional[float] = strawberry.field(
        default=None, description="The 95 % upper bound of the false-accept rate that this many impostors can show: "
                                  "0 of 3 accepted bounds it only by 0.63, 0 of 300 by 0.01.")


@strawberry.type(description="One backbone a training measured before choosing what to embed the library with.")
class BackboneCandidate:
    model: str = strawberry.field(description="The registered version (name@version), or pixel-projection.")
    model_version_id: Optional[strawberry.ID]
    top1: Optional[float] = strawberry.field(description="Top-1 accuracy (0-1) on the held-out rows of the sample.")
    embedded: int = strawberry.field(description="Sampled identifiers it embedded.")
    chosen: bool


@strawberry.type(description="How the training chose its backbone when config.modelId named none: each candidate "
                             "measured on the same held-out split of a sample of the library, the best kept.")
class BackboneComparison:
    method: str
    sampled: int = strawberry.field(description="Identifiers in the sample.")
    evaluated: int = strawberry.field(description="Of those, held out once each (the folds together).")
    split_sizes: SplitSizes = strawberry.field(description="One fold's gallery (training) and held-out (test) rows.")
    candidates: list[BackboneCandidate]
    chosen: str
    reason: str


@strawberry.type(description="What the training measured, on the rows its split held out.")
class EvaluationResult:
    method: Optional[str]
    top1: Optional[float] = strawberry.field(description="Top-1 accuracy (0-1) on the evaluated rows.")
    evaluated: Optional[int] = strawberry.field(description="Rows evaluated.")
    split_sizes: SplitSizes
    per_entity: list[EntityEvaluation]
    calibration: Optional[Calibration]
    backbone_comparison: Optional[BackboneComparison] = strawberry.field(
        default=None, description="How the backbone was chosen; null when config.modelId named it or none rivalled it.")

    @classmethod
    def of(cls, evaluation: Evaluation) -> EvaluationResult:
        splits, calibration = evaluation.split_sizes, evaluation.calibration
        return cls(
            method=evaluation.method,
            top1=evaluation.top1,
            evaluated=evaluation.evaluated,
            split_sizes=SplitSizes(training=splits.training, validation=splits.validation, test=splits.test),
            per_entity=[EntityEvaluation(entity_id=strawberry.ID(e.entity_id), count=e.count, correct=e.correct)
                        for e in evaluation.per_entity],
            calibration=Calibration(
                method=calibration.method, threshold=calibration.threshold, genuine=calibration.genuine,
                impostor=calibration.impostor, true_positive_rate=calibration.true_positive_rate,
                true_negative_rate=calibration.true_negative_rate, false_accept_rate=calibration.false_accept_rate,
                false_accept_rate_bound=calibration.false_accept_rate_bound,
            ) if calibration else None,
            backbone_comparison=_backbone_comparison(evaluation),
        )


def _backbone_comparison(evaluation: Evaluation) -> Optional[BackboneComparison]:
    c = evaluation.backbone_comparison
    if c is None:
        return None
    sizes = c.split_sizes
    return BackboneComparison(
        method=c.method, sampled=c.sampled, evaluated=c.evaluated, chosen=c.chosen, reason=c.reason,
        split_sizes=SplitSizes(training=sizes.training, validation=sizes.validation, test=sizes.test),
        candidates=[BackboneCandidate(model=b.model, top1=b.top1, embedded=b.embedded, chosen=b.chosen,
                                      model_version_id=strawberry.ID(b.model_version_id) if b.model_version_id else None)
                    for b in c.candidates],
    )


@strawberry.type(description="An identifier a training skipped, and why.")
class SkippedIdentifier:
    identifier_id: strawberry.ID
    entity_id: Optional[strawberry.ID]
    detail: str


@strawberry.type(description="The identifiers one reason skipped: all counted, a bounded number listed.")
class TrainingSkipReason:
    reason: str = strawberry.field(description="too-small, blurry, no-face, corrupt, fetch-failed, too-large …")
    count: int
    message: str = strawberry.field(description="What the reason means and what to change.")
    identifiers: list[SkippedIdentifier] = strawberry.field(description="The first of them (at most 50).")
    capped: bool = strawberry.field(description="Whether more were skipped than are listed.")


@strawberry.type(description="An entity the model does not know: every identifier skipped (all-skipped), none of a type "
                 "the engine reads (no-identifier), or none used (not-used).")
class EntityWithoutIdentifiers:
    id: strawberry.ID
    name: str
    reason: str
    message: str


@strawberry.type(description="What a completed training used and left out.")
class TrainingReport:
    recorded: bool = strawberry.field(
        description="Whether the engine recorded the entities it used; when false, entitiesWithoutIdentifiers holds only "
        "those its skips name.")
    identifiers_used: Optional[int]
    identifiers_skipped: int
    entities_used: Optional[int]
    skipped: list[TrainingSkipReason] = strawberry.field(description="Skipped identifiers by reason, most first.")
    entities_without_identifiers: list[EntityWithoutIdentifiers] = strawberry.field(
        description="Entities of the library left with no usable identifier (at most 1000 listed).")
    entities_without_identifiers_count: int
    entities_without_identifiers_capped: bool

    @classmethod
    def of(cls, report: training_report.TrainingReport) -> TrainingReport:
        return cls(
            recorded=report.recorded, identifiers_used=report.identifiers_used,
            identifiers_skipped=report.identifiers_skipped, entities_used=report.entities_used,
            skipped=[TrainingSkipReason(
                reason=s.reason, count=s.count, message=s.message, capped=s.capped,
                identifiers=[SkippedIdentifier(identifier_id=strawberry.ID(i.identifier_id),
                                               entity_id=strawberry.ID(i.entity_id) if i.entity_id else None,
                                               detail=i.detail) for i in s.identifiers],
            ) for s in report.skipped],
            entities_without_identifiers=[EntityWithoutIdentifiers(id=strawberry.ID(e.id), name=e.name, reason=e.reason,
                                                                   message=e.message)
                                          for e in report.entities_without_identifiers],
            entities_without_identifiers_count=report.entities_without_identifiers_count,
            entities_without_identifiers_capped=report.entities_without_identifiers_capped,
        )


def _evaluation_result(root: LibraryEngineModel) -> Optional[EvaluationResult]:
    evaluation = evaluation_of(root._row)
    return EvaluationResult.of(evaluation) if evaluation is not None else None


@strawberry.type
class LibraryEngineModel:
    # The version's fields come first in the published schema: declared as annotated fields with a resolver, since
    # Strawberry lists a method resolver after every annotated field.
    name: Optional[str] = strawberry.field(resolver=lambda root: root._row.name)
    description: Optional[str] = strawberry.field(resolver=lambda root: root._row.description)
    changelog: Optional[str] = strawberry.field(
        resolver=lambda root: root._row.changelog, description="What changed in this version (a REST training's output_model_changelog).")
    labels: JSONData = strawberry.field(resolver=lambda root: root._row.labels or {}, description="User labels, string to string.")
    parent_model_id: Optional[strawberry.ID] = strawberry.field(
        resolver=lambda root: strawberry.ID(str(root._row.parent_model_id)) if root._row.parent_model_id else None,
        description="The model it was retrained from: the default when its training started.")
    aliases: list[str] = strawberry.field(
        resolver=lambda root: (["default"] if root._row.is_default else []) + list(root._row.aliases or []),
        description="Version aliases; `default` while it is the default model.")
    is_default: bool = strawberry.field(
        resolver=lambda root: root._row.is_default, description="Whether recognize and library-run use it when no model is named.")
    auto_promote: bool = strawberry.field(
        resolver=lambda root: root._row.auto_promote,
        description="Whether it becomes the default on completion even if it scores worse.")
    promotion: Optional[JSONData] = strawberry.field(
        resolver=lambda root: root._row.promotion,
        description="What was compared when it completed: promoted, reason, accuracy, previousAccuracy, "
        "previousModelId, autoPromote.")
    evaluation_result: Optional[EvaluationResult] = strawberry.field(resolver=_evaluation_result)
    configuration_id: Optional[strawberry.ID] = strawberry.field(
        resolver=lambda: None,
        description="Always null: engine configurations belong to dataset libraries; engines take theirs from the task "
                    "payload's config.")
    id: strawberry.ID
    engine_id: strawberry.ID
    library_id: strawberry.ID
    library_version: int
    train_job_id: Optional[strawberry.ID]
    train_status: LibraryEngineModelTrainStatus
    content_type: Optional[str]
    jsondata: JSONData
    accuracy: Optional[float]
    created_date_time: DateTime
    modified_date_time: DateTime
    model_version_id: Optional[strawberry.ID] = strawberry.field(
        description="The registered embedding model version it was trained on; null: the built-in pixel-projection "
        "(or not trained yet)."
    )
    _row: strawberry.Private[rows.EngineModel]

    @strawberry.field(description="The embedding model it was trained on, as users name it (face-embedding@1), or "
                      "pixel-projection; null until trained.")
    def embedding_model(self) -> Optional[str]:
        backbone = (self._row.jsondata or {}).get("backbone") if isinstance(self._row.jsondata, dict) else None
        return backbone.get("model") if isinstance(backbone, dict) else None

    @strawberry.field(description="What the training used, skipped by reason, and the entities it left with no usable "
                      "identifier; null until the model is complete.")
    async def training_report(self, info: Info) -> Optional[TrainingReport]:
        found = await training_report.report_of(info.context.resources, self._row)
        return TrainingReport.of(found) if found is not None else None

    @strawberry.field(description="Where the trained artifact can be downloaded: for stored artifacts an expiring signed link (S3's, or the gateway's under ENGINESHED_PUBLIC_URL).")
    async def data_url(self, info: Info) -> Optional[str]:
        return await model_service.data_url(info.context.resources, self._row)

    @strawberry.field
    async def engine(self, info: Info) -> Optional[Engine]:
        row = await info.context.loaders.engine.load(self._row.engine_id)
        return Engine.from_row(row) if row else None

    @strawberry.field
    async def library(self, info: Info) -> Optional[Library]:
        row = await info.context.loaders.library.load(self._row.library_id)
        return Library.from_row(row) if row else None

    @classmethod
    def from_row(cls, row: rows.EngineModel) -> LibraryEngineModel:
        return cls(
            id=strawberry.ID(str(row.id)),
            engine_id=strawberry.ID(row.engine_id),
            library_id=strawberry.ID(str(row.library_id)),
            library_version=row.library_version,
            train_job_id=strawberry.ID(str(row.train_job_id)) if row.train_job_id else None,
            train_status=LibraryEngineModelTrainStatus(row.train_status),
            content_type=row.content_type,
            jsondata=row.jsondata,
            accuracy=row.accuracy,
            created_date_time=row.created_at,
            modified_date_time=row.modified_at,
            model_version_id=strawberry.ID(str(row.model_version_id)) if row.model_version_id else None,
            _row=row,
        )


@strawberry.type(name="LibraryEngineModelList")
class LibraryEngineModelList(Paginated[LibraryEngineModel]):
    pass


@strawberry.input
class CreateLibraryEngineModel:
    engine_id: strawberry.ID
    library_id: strawberry.ID
    train_job_id: Optional[strawberry.ID] = None
    train_status: Optional[LibraryEngineModelTrainStatus] = LibraryEngineModelTrainStatus.pending
    data_url: Optional[str] = None
    jsondata: Optional[JSONData] = None
    accuracy: Optional[float] = None


@strawberry.input
class UpdateLibraryEngineModel:
    id: strawberry.ID
    train_job_id: Optional[strawberry.ID] = UNSET
    train_status: Optional[LibraryEngineModelTrainStatus] = UNSET
    data_url: Optional[str] = UNSET
    jsondata: Optional[JSONData] = UNSET
    content_type: Optional[str] = UNSET
    file: Optional[Upload] = UNSET
    accuracy: Optional[float] = UNSET
    name: Optional[str] = UNSET
    description: Optional[str] = UNSET
    changelog: Optional[str] = UNSET
    labels: Optional[JSONData] = UNSET
    aliases: Optional[list[str]] = UNSET
    auto_promote: Optional[bool] = UNSET


@strawberry.type
class EngineModelQuery:
    @strawberry.field
    async def library_engine_model(self, info: Info, id: strawberry.ID) -> Optional[LibraryEngineModel]:
        return LibraryEngineModel.from_row(await model_service.get(info.context.resources, info.context.principal, id))


@strawberry.type
class EngineModelMutation:
    @strawberry.mutation
    async def create_library_engine_model(self, info: Info, input: CreateLibraryEngineModel) -> Optional[LibraryEngineModel]:
        data = {"engine_id": input.engine_id, "library_id": input.library_id, "train_job_id": input.train_job_id,
                "train_status": input.train_status.value if input.train_status else None, "data_url": input.data_url,
                "jsondata": input.jsondata, "accuracy": input.accuracy}
        return LibraryEngineModel.from_row(await model_service.create(info.context.resources, info.context.principal, data))

    @strawberry.mutation
    async def update_library_engine_model(self, info: Info, input: UpdateLibraryEngineModel) -> Optional[LibraryEngineModel]:
        changes = sent(input, "train_job_id", "train_status", "data_url", "jsondata", "content_type", "accuracy")
        if changes.get("train_status") is not None:
            changes["train_status"] = changes["train_status"].value
        version = sent(input, "name", "description", "changelog", "labels", "aliases", "auto_promote")
        file = input.file if input.file else info.context.form_file
        if changes or file or not version:
            # checked before anything is written, then written with the other fields in one transaction
            checked = model_versions.check_version(info.context.principal, version) if version else None
            row = await model_service.update(info.context.resources, info.context.principal, input.id, changes, file=file,
                                             version=checked)
        else:
            row = await model_versions.update_version(info.context.resources, info.context.principal, input.id, version)
        return LibraryEngineModel.from_row(row)

    @strawberry.mutation
    async def delete_library_engine_model(self, info: Info, id: strawberry.ID) -> Optional[DeletePayload]:
        deleted = await model_service.delete(info.context.resources, info.context.principal, id)
        return DeletePayload(id=strawberry.ID(str(deleted)), message=f"library engine model {deleted} deleted")


@strawberry.type
class DefaultModelMutation:
    @strawberry.mutation(description="Make a complete model the default of its library and engine (rollback).")
    async def set_default_model(self, info: Info, library_engine_model_id: strawberry.ID) -> LibraryEngineModel:
        row = await promotion.set_default(info.context.resources, info.context.principal, library_engine_model_id)
        return LibraryEngineModel.from_row(row)
