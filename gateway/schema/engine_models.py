"""LibraryEngineModel and Engine types."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import strawberry
from strawberry import UNSET
from strawberry.file_uploads import Upload

from gateway.schema.context import Info
from gateway.schema.enums import LibraryEngineModelTrainStatus
from gateway.schema.paging import page_fields
from gateway.schema.scalars import DateTime, JSONData
from gateway.services import engine_models as model_service
from storage import rows

if TYPE_CHECKING:
    from gateway.schema.libraries import EntityIdentifierTypeList, Library


@strawberry.type
class EngineCategory:
    id: strawberry.ID
    name: str
    library_entity_identifier_type_ids: list[strawberry.ID]

    @strawberry.field
    async def library_entity_identifier_types(
        self, info: Info
    ) -> Annotated[EntityIdentifierTypeList, strawberry.lazy("gateway.schema.libraries")]:
        from gateway.schema.libraries import EntityIdentifierType, EntityIdentifierTypeList
        from gateway.services import catalogue

        wanted = set(self.library_entity_identifier_type_ids)
        records = [EntityIdentifierType.from_row(t) for t in await catalogue.identifier_types(info.context.resources) if t.id in wanted]
        return EntityIdentifierTypeList(offset=0, limit=len(records), count=len(records), total_count=len(records), records=records)


@strawberry.type
class EngineCategoryList:
    offset: int
    limit: int
    count: int
    total_count: int
    records: list[EngineCategory]


@strawberry.type
class Engine:
    id: strawberry.ID
    name: str
    category_id: str
    library_required: bool
    modes: list[str]
    concurrency_limit: int
    builtin: bool
    state: str
    version: str
    creates_tdo: bool
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
            state=row.state,
            version=row.version,
            creates_tdo=False,
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
    )


@strawberry.type
class EngineList:
    offset: int
    limit: int
    count: int
    total_count: int
    records: list[Engine]


@strawberry.type
class LibraryEngineModel:
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
