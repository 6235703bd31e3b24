"""LibraryEngineModel and Engine types."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import strawberry
from strawberry import UNSET
from strawberry.file_uploads import Upload

from gateway.schema.context import Info
from gateway.schema.engine_fields import EngineFilter, EngineReferenceFields, EngineSortField, filter_dict, order_pairs
from gateway.schema.enums import EngineState, LibraryEngineModelTrainStatus
from gateway.schema.paging import page_fields
from gateway.schema.scalars import DateTime, JSONData
from gateway.services import engine_models as model_service
from gateway.services import engines as engine_service
from gateway.schema.trainings import ModelVersionFields
from storage import rows

if TYPE_CHECKING:
    from gateway.schema.libraries import EntityIdentifierTypeList, Library


@strawberry.type
class EngineType:
    name: Optional[str]
    description: Optional[str]


COGNITION = EngineType(name="Cognition", description="Engines that recognize: every engine here is one.")


@strawberry.type
class EngineDependency:
    dependency_type: str
    asset_type: Optional[str]


@strawberry.type
class ExportFormat:
    format: str
    label: str
    types: list[Optional[str]]


@strawberry.type
class EngineCategory:
    """A category as the active engines in it describe it (categories are not stored on their own)."""

    id: strawberry.ID
    name: str
    library_entity_identifier_type_ids: list[strawberry.ID]
    _engines: strawberry.Private[list[rows.Engine]]

    @strawberry.field
    async def library_entity_identifier_types(
        self, info: Info
    ) -> Annotated[EntityIdentifierTypeList, strawberry.lazy("gateway.schema.libraries")]:
        from gateway.schema.libraries import EntityIdentifierType, EntityIdentifierTypeList, visible_identifier_types

        wanted = set(self.library_entity_identifier_type_ids)
        records = [EntityIdentifierType.from_row(t) for t in await visible_identifier_types(info) if t.id in wanted]
        return EntityIdentifierTypeList(offset=0, limit=len(records), count=len(records), total_count=len(records), records=records)

    @strawberry.field(description="Cognition: every engine here recognizes.")
    def type(self) -> EngineType:
        return COGNITION

    @strawberry.field(description="When the first of its engines was registered.")
    def created_date_time(self) -> DateTime:
        return min(e.created_at for e in self._engines)

    @strawberry.field(description="When one of its engines last changed.")
    def modified_date_time(self) -> DateTime:
        return max(e.modified_at for e in self._engines)

    @strawberry.field
    def engine_ids(self) -> list[strawberry.ID]:
        return [strawberry.ID(e.id) for e in self._engines]

    @strawberry.field
    def total_engines(self) -> int:
        return len(self._engines)

    @strawberry.field(description="False: a category follows from its engines and is not edited on its own.")
    def editable(self) -> bool:
        return False

    @strawberry.field(description="False: no engine here needs video.")
    def video_only(self) -> bool:
        return False

    @strawberry.field(description="Empty: no category here consumes another's results.")
    def dependencies(self) -> list[EngineDependency]:
        return []

    @strawberry.field(description="Empty: results are JSON task outputs, with no export formats.")
    def export_formats(self) -> list[Optional[ExportFormat]]:
        return []

    @strawberry.field
    async def engines(
        self,
        info: Info,
        offset: Optional[int] = 0,
        limit: Optional[int] = 30,
        filter: Optional[EngineFilter] = None,
        order_by: Optional[list[Optional[EngineSortField]]] = None,
    ) -> EngineList:
        filters = engine_service.engine_filters(filter=filter_dict(filter))
        key = (str(self.id), filters, tuple(order_pairs(order_by)), offset, limit)
        page = await info.context.loaders.category_engine_page.load(key)
        return EngineList(**page_fields(page, [Engine.from_row(r) for r in page.records]))


@strawberry.type
class EngineCategoryList:
    offset: int
    limit: int
    count: int
    total_count: int
    records: list[EngineCategory]


@strawberry.type
class Engine(EngineReferenceFields):
    id: strawberry.ID
    name: str
    category_id: str
    library_required: bool
    modes: list[str]
    concurrency_limit: int
    builtin: bool
    state: EngineState
    version: str
    config_schema: JSONData
    created_date_time: DateTime
    modified_date_time: DateTime
    _row: strawberry.Private[rows.Engine]

    @strawberry.field
    def category(self) -> EngineCategory:
        return category_of([self._row])

    @strawberry.field
    def identifier_type_ids(self) -> list[strawberry.ID]:
        return [strawberry.ID(t) for t in self._row.identifier_type_ids]

    @strawberry.field
    def library_type_ids(self) -> list[strawberry.ID]:
        return [strawberry.ID(t) for t in self._row.library_type_ids]

    @classmethod
    def from_row(cls, row: rows.Engine) -> Engine:
        return cls(
            id=strawberry.ID(row.id),
            name=row.name,
            category_id=row.category_id,
            library_required=row.library_required,
            modes=list(row.modes),
            concurrency_limit=row.concurrency_limit,
            builtin=row.builtin,
            state=EngineState(row.state),
            version=row.version,
            config_schema=row.config_schema,
            created_date_time=row.created_at,
            modified_date_time=row.modified_at,
            _row=row,
        )


def category_of(engines: list[rows.Engine]) -> EngineCategory:
    """A category as the engines in it describe it: the identifier types any of them consume."""
    types: list[str] = []
    for engine in engines:
        types.extend(t for t in engine.identifier_type_ids if t not in types)
    category_id = engines[0].category_id
    return EngineCategory(
        id=strawberry.ID(category_id),
        name=category_id.replace("-", " ").title(),
        library_entity_identifier_type_ids=[strawberry.ID(t) for t in types],
        _engines=list(engines),
    )


@strawberry.type
class EngineList:
    offset: int
    limit: int
    count: int
    total_count: int
    records: list[Engine]


@strawberry.type
class LibraryEngineModel(ModelVersionFields):
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

    @strawberry.field(description="Where the trained artifact can be downloaded (a presigned URL for stored artifacts).")
    async def data_url(self, info: Info) -> Optional[str]:
        return await model_service.data_url(info.context.resources, self._row)

    @strawberry.field
    async def engine(self, info: Info) -> Optional[Engine]:
        row = await info.context.loaders.engine.load(self._row.engine_id)
        return Engine.from_row(row) if row else None

    @strawberry.field
    async def library(self, info: Info) -> Optional[Annotated[Library, strawberry.lazy("gateway.schema.libraries")]]:
        from gateway.schema.libraries import Library

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


@strawberry.type
class LibraryEngineModelList:
    offset: int
    limit: int
    count: int
    total_count: int
    records: list[LibraryEngineModel]


async def library_engine_models(info: Info, library: rows.Library, **args: object) -> LibraryEngineModelList:
    status = args["train_status"]
    key = (
        library.id, args["id"], args["engine_id"], status.value if status is not None else None,
        args["library_version"], args["current_version"], bool(args["last_modified"]), args["offset"], args["limit"],
    )
    page = await info.context.loaders.model_page.load(key)
    return LibraryEngineModelList(**page_fields(page, [LibraryEngineModel.from_row(r) for r in page.records]))


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


@strawberry.input
class CreateEngine:
    id: strawberry.ID
    name: Optional[str] = None
    category_id: Optional[str] = None
    identifier_type_ids: list[strawberry.ID] = strawberry.field(default_factory=list)
    library_type_ids: Optional[list[strawberry.ID]] = None
    modes: Optional[list[str]] = None
    library_required: Optional[bool] = True
    concurrency_limit: Optional[int] = 2
    description: Optional[str] = None
