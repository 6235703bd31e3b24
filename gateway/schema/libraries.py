"""Library: a set of entities and their identifiers that engines train on, with what its last training found."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import strawberry
from strawberry import UNSET

from gateway.errors import InvalidInput
from gateway.schema.caller import Organization
from gateway.schema.catalogue import LibraryType, Property, visible_library_types
from gateway.schema.common import DeletePayload, Paginated, lazy_class, sent
from gateway.schema.context import Info
from gateway.schema.entities import Entity, EntityList
from gateway.schema.enums import (
    LibraryEngineModelTrainStatus,
    LibraryEntityOrderBy,
    LibraryOrderBy,
    OrderDirection,
)
from gateway.schema.identifiers import DuplicateIdentifierPair, EntityIdentifier
from gateway.schema.scalars import DateTime
from gateway.services.embeddings import duplicates as embedding_duplicates
from gateway.services.library import libraries as library_service
from gateway.services.training import trainings as training_service
from storage import rows

if TYPE_CHECKING:
    from gateway.schema.engine_models import LibraryEngineModel, LibraryEngineModelList

LibraryEngineModelRef = Annotated["LibraryEngineModel", strawberry.lazy("gateway.schema.engine_models")]
LibraryEngineModelListRef = Annotated["LibraryEngineModelList", strawberry.lazy("gateway.schema.engine_models")]


@strawberry.type(description="A library's counts, as a training's dataset reports them.")
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
class LibrarySummary:
    entity_count: int
    unpublished_entity_count: int
    last_trained_version: Optional[int]
    last_trained_date_time: Optional[DateTime]


@strawberry.type(description="What publishLibrary did for one engine compatible with the library's type.")
class PublishedTraining:
    engine_id: strawberry.ID
    started: bool = strawberry.field(description="Whether a training of this engine was started.")
    library_engine_model_id: Optional[strawberry.ID] = strawberry.field(
        description="The pending model the training makes, when started.")
    reason: Optional[str] = strawberry.field(description=(
        "Why it was not started: the library holds no identifiers of a type the engine trains on, or a model it "
        "requires is not registered."))


@strawberry.type(description="A dataset library's media objects; libraries here hold entities, so none has one.")
class LibraryDataset:
    library_id: Optional[strawberry.ID]
    tdo_ids: Optional[list[Optional[strawberry.ID]]]


@strawberry.type(description="Another organization a library is shared with; libraries here are never shared.")
class LibraryCollaborator:
    organization_id: strawberry.ID
    organization: Optional[Organization]
    status: Optional[str]
    created_date_time: Optional[DateTime]
    modified_date_time: Optional[DateTime]
    permissions: Optional[list[Optional[str]]]
    library_id: strawberry.ID
    library: Optional[Annotated["Library", strawberry.lazy("gateway.schema.libraries")]]


@strawberry.type(name="LibraryCollaboratorList")
class LibraryCollaboratorList(Paginated[LibraryCollaborator]):
    pass


@strawberry.type
class DatasetConfidence:
    min: Optional[int]
    max: Optional[int]
    allow_null: Optional[bool]


@strawberry.type(description="An engine configuration of a dataset library; libraries here hold entities, so none has one.")
class LibraryConfiguration:
    id: Optional[strawberry.ID]
    library_id: Optional[strawberry.ID]
    engine_category_id: Optional[strawberry.ID]
    target_engine_ids: Optional[list[Optional[strawberry.ID]]]
    ranked_source_engine_ids: Optional[list[Optional[strawberry.ID]]]
    confidence: Optional[DatasetConfidence]


@strawberry.type(name="LibraryConfigurationList")
class LibraryConfigurationList(Paginated[LibraryConfiguration]):
    pass


@strawberry.type
class Security:
    global_: bool = strawberry.field(name="global", description="False: a library is visible to its organization only.")


# A library's insights (counts, preview, issues of its last training) come first in the published schema. Strawberry lists a method resolver after every
# annotated field, so these are declared as annotated fields with a resolver, ahead of the stored ones.


async def _counts(root: Library, info: Info) -> LibraryCounts:
    insight = await info.context.loaders.library_insight.load(root._row.id)
    return LibraryCounts(entities=insight.entities, active_entities=insight.active_entities,
                         identifiers=insight.identifiers, usable_identifiers=insight.usable_identifiers)


async def _preview_identifiers(root: Library, info: Info) -> list[EntityIdentifier]:
    return [EntityIdentifier.from_row(r) for r in await info.context.loaders.library_preview.load(root._row.id)]


async def _issues(root: Library, info: Info) -> LibraryIssues:
    insight = await info.context.loaders.library_issues.load(root._row.id)
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


@strawberry.type
class Library:
    counts: LibraryCounts = strawberry.field(resolver=_counts)
    preview_identifiers: list[EntityIdentifier] = strawberry.field(
        resolver=_preview_identifiers, description="Its first few identifiers (priority ones first), for a preview.")
    issues: LibraryIssues = strawberry.field(resolver=_issues)
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
    _published: strawberry.Private[Optional[list[PublishedTraining]]] = None

    @strawberry.field(description=(
        "On publishLibrary's answer, each compatible engine: its training started, or passed over and why; "
        "null elsewhere."))
    def published_trainings(self) -> Optional[list[PublishedTraining]]:
        return self._published

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

    @strawberry.field(description="Null: a library here holds entities, not a dataset of media objects.")
    def dataset(self) -> Optional[LibraryDataset]:
        return None

    @strawberry.field(description="Empty: a library is visible to its organization only and shared with none.")
    def collaborators(self, info: Info, collaborator_org_id: Optional[strawberry.ID] = None) -> Optional[LibraryCollaboratorList]:
        return LibraryCollaboratorList.sliced([], 0, 30, info.context.resources.settings.max_page_size)

    @strawberry.field(description="Empty: engine configurations belong to dataset libraries; engines here take theirs from the task payload's config.")
    def configurations(self, info: Info, limit: Optional[int] = 30, offset: Optional[int] = 0) -> Optional[LibraryConfigurationList]:
        return LibraryConfigurationList.sliced([], offset, limit, info.context.resources.settings.max_page_size)

    @strawberry.field(description="Empty: a library has no metadata of its own beyond its named fields.")
    def properties(self) -> Optional[list[Optional[Property]]]:
        return []

    @strawberry.field(description=(
        "Identifiers under different entities holding the same picture (identical bytes, or embeddings at cosine "
        "≥ threshold): labeling errors. modelId: whose embeddings compare (default: the one the library's type picks, "
        "a people library's face-embedding, when the library has vectors of it; else the one it has most of)."))
    async def duplicate_identifiers(
        self, info: Info, model_id: Optional[str] = None, threshold: Optional[float] = 0.97, limit: Optional[int] = 100,
    ) -> list[DuplicateIdentifierPair]:
        pairs = await embedding_duplicates.duplicates(
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
        return EntityList.of(page, [Entity.from_row(r) for r in page.records])

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
    ) -> LibraryEngineModelListRef:
        key = (
            self._row.id, id, engine_id, train_status.value if train_status is not None else None,
            library_version, current_version, bool(last_modified), offset, limit,
        )
        page = await info.context.loaders.model_page.load(key)
        model = lazy_class(LibraryEngineModelRef)
        return lazy_class(LibraryEngineModelListRef).of(page, [model.from_row(r) for r in page.records])

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


@strawberry.type(name="LibraryList")
class LibraryList(Paginated[Library]):
    pass


# ---- inputs: named without an Input suffix; UNSET means "not sent" ----


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


@strawberry.type
class LibraryQuery:
    @strawberry.field
    async def library(self, info: Info, id: strawberry.ID) -> Optional[Library]:
        return Library.from_row(await library_service.get(info.context.resources, info.context.principal, id))

    @strawberry.field
    async def libraries(
        self,
        info: Info,
        id: Optional[strawberry.ID] = None,
        name: Optional[str] = None,
        type: Optional[str] = None,
        entity_identifier_type_ids: Optional[list[str]] = None,
        include_owned_only: Optional[bool] = False,
        offset: Optional[int] = 0,
        limit: Optional[int] = 30,
        order_by: Optional[LibraryOrderBy] = None,
        order_direction: Optional[OrderDirection] = None,
    ) -> LibraryList:
        page = await library_service.list_page(
            info.context.resources,
            info.context.principal,
            library_id=id,
            name=name,
            type_id=type,
            identifier_type_ids=entity_identifier_type_ids,
            order_by=(order_by or LibraryOrderBy.createdDateTime).value,
            descending=order_direction != OrderDirection.asc,
            offset=offset,
            limit=limit,
        )
        return LibraryList.of(page, [Library.from_row(r) for r in page.records])


@strawberry.type
class LibraryMutation:
    @strawberry.mutation
    async def create_library(self, info: Info, input: Optional[CreateLibrary] = None) -> Optional[Library]:
        if input is None:
            raise InvalidInput("input is required")
        data = {"name": input.name, "library_type_id": input.library_type_id, "description": input.description,
                "cover_image_url": input.cover_image_url, "organization_id": input.organization_id,
                "application_id": input.application_id}
        return Library.from_row(await library_service.create(info.context.resources, info.context.principal, data))

    @strawberry.mutation
    async def update_library(self, info: Info, input: UpdateLibrary) -> Optional[Library]:
        changes = sent(input, "name", "description", "cover_image_url", "library_type_id")
        row = await library_service.update(info.context.resources, info.context.principal, input.id, changes)
        return Library.from_row(row)

    @strawberry.mutation
    async def delete_library(self, info: Info, id: strawberry.ID) -> Optional[DeletePayload]:
        deleted = await library_service.delete(info.context.resources, info.context.principal, id)
        return DeletePayload(id=strawberry.ID(str(deleted)), message=f"library {deleted} deleted")

    @strawberry.mutation
    async def publish_library(self, info: Info, id: strawberry.ID) -> Optional[Library]:
        row, outcome = await training_service.publish_library(info.context.resources, info.context.principal, id)
        library = Library.from_row(row)
        library._published = [
            PublishedTraining(
                engine_id=strawberry.ID(o.engine_id), started=o.model_id is not None,
                library_engine_model_id=strawberry.ID(str(o.model_id)) if o.model_id else None, reason=o.reason,
            )
            for o in outcome
        ]
        return library
