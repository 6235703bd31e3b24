"""Library, Entity, EntityIdentifier and the type catalogue, as the wire names them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import strawberry
from strawberry import UNSET
from strawberry.file_uploads import Upload

from gateway.schema.trainings import LibraryInsightFields
from gateway.schema.context import Info
from gateway.schema.identifier_filter import AnnotationType
from gateway.schema.enums import EntityIdentifierDataType, SetEntityProfileImage, LibraryEngineModelTrainStatus, LibraryEntityOrderBy, OrderDirection
from gateway.schema.paging import page_fields
from gateway.schema.scalars import DateTime, JSONData
from gateway.services import embeddings as embedding_service
from gateway.services import identifiers as identifier_service
from storage import rows

if TYPE_CHECKING:
    from gateway.schema.engine_models import LibraryEngineModelList
    from gateway.schema.labeling import Suggestion


async def visible_identifier_types(info: Info) -> list[rows.IdentifierType]:
    """Built-in identifier types and the caller's organization's, read once per request."""
    return await info.context.loaders.identifier_types.load(info.context.principal.org_id)


async def visible_library_types(info: Info) -> list[rows.LibraryType]:
    return await info.context.loaders.library_types.load(info.context.principal.org_id)


@strawberry.type
class EntityIdentifierType:
    id: strawberry.ID
    label: str
    label_plural: str
    icon_class: Optional[str]
    description: Optional[str]
    data_type: EntityIdentifierDataType

    @classmethod
    def from_row(cls, row: rows.IdentifierType) -> EntityIdentifierType:
        return cls(
            id=strawberry.ID(row.id),
            label=row.label,
            label_plural=row.label_plural,
            icon_class=row.icon_class,
            description=row.description,
            data_type=EntityIdentifierDataType(row.data_type),
        )


@strawberry.type
class EntityIdentifierTypeList:
    offset: int
    limit: int
    count: int
    total_count: int
    records: list[EntityIdentifierType]


@strawberry.type(description="What a library type's entities are: their names and the JSON Schema their jsondata must satisfy.")
class EntityType:
    name: str
    name_plural: str
    schema: JSONData


@strawberry.type
class LibraryType:
    id: strawberry.ID
    label: str
    icon_class: Optional[str]
    entity_type_name: str
    entity_type_name_plural: str
    _row: strawberry.Private[rows.LibraryType]

    @strawberry.field
    async def entity_identifier_types(self, info: Info) -> list[EntityIdentifierType]:
        types = {t.id: t for t in await visible_identifier_types(info)}
        return [EntityIdentifierType.from_row(types[i]) for i in self._row.identifier_type_ids if i in types]

    @strawberry.field
    def entity_type(self) -> EntityType:
        return EntityType(
            name=self._row.entity_type_name,
            name_plural=self._row.entity_type_name_plural,
            schema=self._row.entity_type_schema or {},
        )

    @classmethod
    def from_row(cls, row: rows.LibraryType) -> LibraryType:
        return cls(
            id=strawberry.ID(row.id),
            label=row.label,
            icon_class=row.icon_class,
            entity_type_name=row.entity_type_name,
            entity_type_name_plural=row.entity_type_name_plural,
            _row=row,
        )


@strawberry.type
class LibraryTypeList:
    offset: int
    limit: int
    count: int
    total_count: int
    records: list[LibraryType]


@strawberry.type
class EntityIdentifier:
    id: strawberry.ID
    entity_id: Optional[strawberry.ID] = strawberry.field(description="None: unassigned (in its library, no entity yet).")
    library_id: strawberry.ID
    identifier_type_id: strawberry.ID
    unique_name: Optional[str] = strawberry.field(
        description="The seed's uniqueName: unique within the library; set at upload, the file name by default.")
    title: Optional[str]
    is_priority: bool
    content_type: str
    jsondata: JSONData
    created_date_time: DateTime
    modified_date_time: DateTime
    annotation_type: AnnotationType = strawberry.field(
        description="raw: no entity yet; machine: a model suggested one; human: a person placed or confirmed it."
    )
    hard: bool = strawberry.field(description="Flagged by findHardExamples: the model was unsure of it.")
    hard_coefficient: Optional[float] = strawberry.field(description="1 - (top-1 - top-2 confidence) when hard: higher is harder.")
    _row: strawberry.Private[rows.Identifier]

    @strawberry.field(description="The models' suggestions for it, the most confident first.")
    async def suggestions(self, info: Info) -> list[Annotated[Suggestion, strawberry.lazy("gateway.schema.labeling")]]:
        from gateway.schema.labeling import Suggestion as SuggestionType

        rows_ = await info.context.loaders.identifier_suggestions.load(self._row.id)
        return [SuggestionType.from_row(r) for r in rows_ or []]

    @strawberry.field(description="A URL that serves the content: a presigned S3 URL, or the reference URL.")
    async def url(self, info: Info) -> str:
        return await identifier_service.url_for(info.context.resources, self._row)

    @strawberry.field(
        name="contentSha256",
        description="The hex SHA-256 of the stored content, as uploaded (clients skip files already uploaded by it); null for a reference.",
    )
    def content_sha256(self) -> Optional[str]:
        return self._row.content_sha256

    @strawberry.field(description="The stored content's size in bytes (a Float: it may pass 2^31); null for a reference.")
    def content_length(self) -> Optional[float]:
        return None if self._row.content_length is None else float(self._row.content_length)

    @strawberry.field
    async def entity(self, info: Info) -> Optional[Entity]:
        if self._row.entity_id is None:
            return None
        row = await info.context.loaders.entity.load(self._row.entity_id)
        return Entity.from_row(row) if row else None

    @strawberry.field
    async def identifier_type(self, info: Info) -> Optional[EntityIdentifierType]:
        for t in await visible_identifier_types(info):
            if t.id == self._row.identifier_type_id:
                return EntityIdentifierType.from_row(t)
        return None

    @strawberry.field(description="jsondata as a JSON text.")
    def jsonstring(self) -> Optional[str]:
        return _json_text(self._row.jsondata)

    @strawberry.field(description="The stored embeddings of this identifier, one per model version (oldest first).")
    async def embeddings(self, info: Info) -> list[IdentifierEmbedding]:
        found = await info.context.loaders.identifier_embeddings.load(self._row.id)
        return [IdentifierEmbedding.of(e) for e in found or []]

    @classmethod
    def from_row(cls, row: rows.Identifier) -> EntityIdentifier:
        return cls(
            id=strawberry.ID(str(row.id)),
            entity_id=strawberry.ID(str(row.entity_id)) if row.entity_id is not None else None,
            library_id=strawberry.ID(str(row.library_id)),
            identifier_type_id=strawberry.ID(row.identifier_type_id),
            unique_name=row.unique_name,
            title=row.title,
            is_priority=row.is_priority,
            content_type=row.content_type,
            jsondata=row.jsondata,
            created_date_time=row.created_at,
            modified_date_time=row.modified_at,
            annotation_type=AnnotationType(row.annotation_type),
            hard=row.hard,
            hard_coefficient=row.hard_coefficient,
            _row=row,
        )


@strawberry.type(description="One stored embedding of an identifier.")
class IdentifierEmbedding:
    model: str = strawberry.field(description="The model version, as name@version.")
    model_version_id: strawberry.ID
    dimension: int
    created_date_time: DateTime
    source: str = strawberry.field(description="computed (by a worker or a training) or inserted (insertEmbeddings).")

    @classmethod
    def of(cls, e: embedding_service.StoredEmbedding) -> IdentifierEmbedding:
        return cls(model=e.model, model_version_id=strawberry.ID(str(e.model_version_id)), dimension=e.dimension,
                   created_date_time=e.created_at, source=e.source)


@strawberry.type(description="Two identifiers under different entities of a library that hold the same picture.")
class DuplicateIdentifierPair:
    first: EntityIdentifier
    second: EntityIdentifier
    score: float = strawberry.field(description="Cosine similarity of their embeddings (1 for identical bytes).")
    reason: str = strawberry.field(description="same-content (identical bytes) or near-identical (embeddings).")


@strawberry.type
class EntityIdentifierList:
    offset: int
    limit: int
    count: int
    total_count: int
    records: list[EntityIdentifier]


@strawberry.type
class EntitySummary:
    identifier_counts_by_type: JSONData


@strawberry.type
class Entity:
    id: strawberry.ID
    name: str
    description: Optional[str]
    library_id: strawberry.ID
    is_published: bool
    jsondata: JSONData
    created_date_time: DateTime
    modified_date_time: DateTime
    created_by: Optional[str] = strawberry.field(description="The ID of the API token that created it.")
    modified_by: Optional[str] = strawberry.field(description="The ID of the API token that changed it last.")
    _row: strawberry.Private[rows.Entity]

    @strawberry.field
    async def library(self, info: Info) -> Optional[Library]:
        row = await info.context.loaders.library.load(self._row.library_id)
        return Library.from_row(row) if row else None

    @strawberry.field
    async def identifiers(
        self,
        info: Info,
        id: Optional[strawberry.ID] = None,
        identifier_type_id: Optional[strawberry.ID] = None,
        offset: Optional[int] = 0,
        limit: Optional[int] = 30,
    ) -> EntityIdentifierList:
        from gateway.services.paging import check_page

        offset, limit = check_page(offset, limit, info.context.resources.settings.max_page_size)
        identifier_id = None
        if id is not None:
            from gateway.services.ids import try_parse_ids

            parsed = try_parse_ids([id])
            identifier_id = parsed[0] if parsed else _NO_SUCH_ID
        page = await info.context.loaders.identifier_page.load(
            (self._row.id, identifier_type_id, identifier_id, offset, limit)
        )
        return EntityIdentifierList(**page_fields(page, [EntityIdentifier.from_row(r) for r in page.records]))

    @strawberry.field(description="jsondata as a JSON text.")
    def jsonstring(self) -> Optional[str]:
        return _json_text(self._row.jsondata)

    @strawberry.field(description="The URL set on the entity, or that of the identifier chosen by profileUpdateMode (fresh on each read).")
    async def profile_image_url(self, info: Info) -> Optional[str]:
        if self._row.profile_identifier_id is None:
            return self._row.profile_image_url
        row = await info.context.loaders.identifier.load(self._row.profile_identifier_id)
        return await identifier_service.url_for(info.context.resources, row) if row else None

    @strawberry.field
    async def summary(self, info: Info) -> EntitySummary:
        counts = await info.context.loaders.identifier_counts.load(self._row.id)
        return EntitySummary(identifier_counts_by_type=counts or {})

    @classmethod
    def from_row(cls, row: rows.Entity) -> Entity:
        return cls(
            id=strawberry.ID(str(row.id)),
            name=row.name,
            description=row.description,
            library_id=strawberry.ID(str(row.library_id)),
            is_published=row.is_published,
            jsondata=row.jsondata,
            created_date_time=row.created_at,
            modified_date_time=row.modified_at,
            created_by=row.created_by,
            modified_by=row.modified_by,
            _row=row,
        )


@strawberry.type
class EntityList:
    offset: int
    limit: int
    count: int
    total_count: int
    records: list[Entity]


@strawberry.type
class LibrarySummary:
    entity_count: int
    unpublished_entity_count: int
    last_trained_version: Optional[int]
    last_trained_date_time: Optional[DateTime]


@strawberry.type
class Library(LibraryInsightFields):
    id: strawberry.ID
    name: str
    description: Optional[str]
    library_type_id: strawberry.ID
    version: int
    organization_id: strawberry.ID
    cover_image_url: Optional[str]
    created_date_time: DateTime
    modified_date_time: DateTime
    created_by: Optional[str] = strawberry.field(description="The ID of the API token that created it.")
    modified_by: Optional[str] = strawberry.field(description="The ID of the API token that changed it last.")
    _row: strawberry.Private[rows.Library]

    @strawberry.field
    async def library_type(self, info: Info) -> Optional[LibraryType]:
        for t in await visible_library_types(info):
            if t.id == self._row.library_type_id:
                return LibraryType.from_row(t)
        return None

    @strawberry.field(description="Here each organization is its own application: the organization's ID.")
    def application_id(self) -> strawberry.ID:
        return strawberry.ID(str(self._row.org_id))

    @strawberry.field
    def security(self) -> Security:
        return Security(global_=False)

    @strawberry.field(description=(
        "Identifiers under different entities holding the same picture (identical bytes, or embeddings at cosine "
        "≥ threshold): labeling errors. modelId: whose embeddings compare (default: the one the library has most of)."))
    async def duplicate_identifiers(
        self, info: Info, model_id: Optional[str] = None, threshold: Optional[float] = 0.97, limit: Optional[int] = 100,
    ) -> list[DuplicateIdentifierPair]:
        pairs = await embedding_service.duplicates(
            info.context.resources, info.context.principal, self._row.id, model_ref=model_id,
            threshold=0.97 if threshold is None else threshold, limit=100 if limit is None else limit,
        )
        return [DuplicateIdentifierPair(first=EntityIdentifier.from_row(p.first), second=EntityIdentifier.from_row(p.second),
                                        score=p.score, reason=p.reason) for p in pairs]

    @strawberry.field
    async def summary(self, info: Info) -> LibrarySummary:
        record = await info.context.loaders.library_summary.load(self._row.id)
        return LibrarySummary(
            entity_count=record["entity_count"] if record else 0,
            unpublished_entity_count=record["unpublished_entity_count"] if record else 0,
            last_trained_version=record["last_trained_version"] if record else None,
            last_trained_date_time=record["last_trained_at"] if record else None,
        )

    @strawberry.field
    async def entities(
        self,
        info: Info,
        id: Optional[strawberry.ID] = None,
        ids: Optional[list[strawberry.ID]] = None,
        is_published: Optional[bool] = None,
        identifier_type_id: Optional[strawberry.ID] = None,
        name: Optional[str] = None,
        offset: Optional[int] = 0,
        limit: Optional[int] = 30,
        order_by: Optional[LibraryEntityOrderBy] = None,
        order_direction: Optional[OrderDirection] = None,
    ) -> EntityList:
        wanted = None
        if id is not None or ids is not None:
            wanted = ([id] if id is not None else []) + list(ids or [])
        order = (order_by or LibraryEntityOrderBy.createdDateTime).value
        key = (
            self._row.id, tuple(wanted) if wanted is not None else None, is_published, name, identifier_type_id,
            order, order_direction == OrderDirection.desc, offset, limit,
        )
        page = await info.context.loaders.entity_page.load(key)
        return EntityList(**page_fields(page, [Entity.from_row(r) for r in page.records]))

    @strawberry.field
    async def engine_models(
        self,
        info: Info,
        id: Optional[strawberry.ID] = None,
        engine_id: Optional[strawberry.ID] = None,
        train_status: Optional[LibraryEngineModelTrainStatus] = None,
        library_version: Optional[int] = None,
        current_version: Optional[bool] = None,
        last_modified: Optional[bool] = None,
        offset: Optional[int] = 0,
        limit: Optional[int] = 30,
    ) -> Annotated[LibraryEngineModelList, strawberry.lazy("gateway.schema.engine_models")]:
        from gateway.schema.engine_models import library_engine_models

        return await library_engine_models(
            info,
            self._row,
            id=id,
            engine_id=engine_id,
            train_status=train_status,
            library_version=library_version,
            current_version=current_version,
            last_modified=last_modified,
            offset=offset,
            limit=limit,
        )

    @classmethod
    def from_row(cls, row: rows.Library) -> Library:
        return cls(
            id=strawberry.ID(str(row.id)),
            name=row.name,
            description=row.description,
            library_type_id=strawberry.ID(row.library_type_id),
            version=row.version,
            organization_id=strawberry.ID(str(row.org_id)),
            cover_image_url=row.cover_image_url,
            created_date_time=row.created_at,
            modified_date_time=row.modified_at,
            created_by=row.created_by,
            modified_by=row.modified_by,
            _row=row,
        )


@strawberry.type
class Security:
    global_: bool = strawberry.field(name="global", description="False: a library is visible to its organization only.")


@strawberry.type
class LibraryList:
    offset: int
    limit: int
    count: int
    total_count: int
    records: list[Library]


def _json_text(value: object) -> Optional[str]:
    import json

    return None if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# An ID filter that parses as no UUID matches nothing; this one never exists.
from uuid import UUID as _UUID  # noqa: E402

_NO_SUCH_ID = _UUID(int=0)


# ---- inputs: names as upstream (no Input suffix); UNSET means "not sent" ----


@strawberry.input
class CreateLibrary:
    name: str
    library_type_id: strawberry.ID
    description: Optional[str] = None
    cover_image_url: Optional[str] = None
    organization_id: Optional[strawberry.ID] = None
    application_id: Optional[strawberry.ID] = None


@strawberry.input
class UpdateLibrary:
    id: strawberry.ID
    name: Optional[str] = UNSET
    description: Optional[str] = UNSET
    cover_image_url: Optional[str] = UNSET
    library_type_id: Optional[strawberry.ID] = UNSET
    version: Optional[int] = UNSET


@strawberry.input
class CreateEntity:
    name: str
    library_id: strawberry.ID
    description: Optional[str] = None
    jsondata: Optional[JSONData] = None
    jsonstring: Optional[str] = None
    profile_image_url: Optional[str] = None
    is_published: Optional[bool] = False


@strawberry.input
class UpdateEntity:
    id: strawberry.ID
    name: Optional[str] = UNSET
    description: Optional[str] = UNSET
    jsondata: Optional[JSONData] = UNSET
    jsonstring: Optional[str] = UNSET
    profile_image_url: Optional[str] = UNSET
    is_published: Optional[bool] = UNSET


@strawberry.input
class CreateEntityIdentifier:
    identifier_type_id: strawberry.ID
    entity_id: Optional[strawberry.ID] = strawberry.field(
        default=None, description="Omitted with a libraryId: the identifier is unassigned (annotationType raw)."
    )
    library_id: Optional[strawberry.ID] = strawberry.field(
        default=None, description="The library of an unassigned identifier (or, with entityId, its entity's library)."
    )
    unique_name: Optional[str] = strawberry.field(
        default=None, description="Unique within the library (a clash is invalid_input); default: the file name.")
    content_type: Optional[str] = None
    url: Optional[str] = None
    file: Optional[Upload] = None
    title: Optional[str] = None
    is_priority: Optional[bool] = False
    jsondata: Optional[JSONData] = None
    jsonstring: Optional[str] = None
    store_reference: Optional[bool] = False
    profile_update_mode: Optional[SetEntityProfileImage] = strawberry.field(
        default=SetEntityProfileImage.none,
        description="ifNotSet / always: the new (image) identifier becomes the entity's profile image.",
    )


@strawberry.input
class UpdateEntityIdentifier:
    id: strawberry.ID
    title: Optional[str] = UNSET
    is_priority: Optional[bool] = UNSET
    url: Optional[str] = strawberry.field(
        default=UNSET, description="New content: a reference identifier refers to it, a stored one stores a copy."
    )
    jsondata: Optional[JSONData] = UNSET
    jsonstring: Optional[str] = UNSET


@strawberry.type
class DeletePayload:
    id: Optional[strawberry.ID]
    message: Optional[str]


def sent(input_obj: object, *names: str) -> dict[str, object]:
    """The fields a client actually sent (UNSET ones are left out, null ones kept)."""
    out: dict[str, object] = {}
    for name in names:
        value = getattr(input_obj, name)
        if value is not UNSET:
            out[name] = value
    return out


__all__ = [
    "EntityType",
    "visible_identifier_types",
    "visible_library_types",
    "CreateEntity",
    "CreateEntityIdentifier",
    "CreateLibrary",
    "DeletePayload",
    "Entity",
    "DuplicateIdentifierPair",
    "EntityIdentifier",
    "IdentifierEmbedding",
    "EntityIdentifierList",
    "EntityIdentifierType",
    "EntityIdentifierTypeList",
    "EntityList",
    "Library",
    "LibraryList",
    "LibraryType",
    "LibraryTypeList",
    "UpdateEntity",
    "UpdateEntityIdentifier",
    "UpdateLibrary",
    "sent",
]
