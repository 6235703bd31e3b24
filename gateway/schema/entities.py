"""Entity: a person, voice or thing of a library, with its identifiers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import strawberry
from strawberry import UNSET

from gateway.schema.common import (
    NO_SUCH_ID,
    DeletePayload,
    Paginated,
    json_text,
    lazy_class,
    sent,
)
from gateway.schema.catalogue import Property, properties_of
from gateway.schema.context import Info
from gateway.schema.enums import LibraryEntityOrderBy, OrderDirection
from gateway.schema.identifiers import EntityIdentifier, EntityIdentifierList
from gateway.schema.scalars import DateTime, JSONData
from gateway.services.access.ids import try_parse_ids
from gateway.services.access.paging import check_page
from gateway.services.library import entities as entity_service
from gateway.services.library import identifiers as identifier_service
from gateway.services.library import people as people_service
from storage import rows
from storage.queries.people import Merge

if TYPE_CHECKING:
    from gateway.schema.libraries import Library

LibraryRef = Annotated["Library", strawberry.lazy("gateway.schema.libraries")]


@strawberry.type
class EntitySummary:
    identifier_counts_by_type: JSONData


@strawberry.type(description="An entity merged into this one (mergeEntities): what it was when it went.")
class MergedEntity:
    id: strawberry.ID = strawberry.field(description="Its ID then (it no longer exists).")
    name: str
    description: Optional[str]
    jsondata: JSONData
    identifiers_moved: int = strawberry.field(description="Identifiers it brought.")
    merged_date_time: DateTime
    merged_by: Optional[str] = strawberry.field(description="The ID of the API token that merged it.")

    @classmethod
    def from_row(cls, row: Merge) -> MergedEntity:
        return cls(id=strawberry.ID(str(row.merged_entity_id)), name=row.name, description=row.description,
                   jsondata=row.jsondata, identifiers_moved=row.identifiers_moved, merged_date_time=row.merged_at,
                   merged_by=row.merged_by)


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

    @strawberry.field(description=(
        "The top-level text, whole-number (32-bit) and true/false values of its jsondata, in key order; other values "
        "are in jsondata only."))
    def properties(self) -> Optional[list[Optional[Property]]]:
        return properties_of(self._row.jsondata)

    @strawberry.field
    async def library(self, info: Info) -> Optional[LibraryRef]:
        row = await info.context.loaders.library.load(self._row.library_id)
        return lazy_class(LibraryRef).from_row(row) if row else None

    @strawberry.field
    async def identifiers(
        self,
        info: Info,
        id: Optional[strawberry.ID] = None,
        identifier_type_id: Optional[strawberry.ID] = None,
        offset: Optional[int] = 0,
        limit: Optional[int] = 30,
    ) -> EntityIdentifierList:
        offset, limit = check_page(offset, limit, info.context.resources.settings.max_page_size)
        identifier_id = None
        if id is not None:
            parsed = try_parse_ids([id])
            identifier_id = parsed[0] if parsed else NO_SUCH_ID
        page = await info.context.loaders.identifier_page.load(
            (self._row.id, identifier_type_id, identifier_id, offset, limit)
        )
        return EntityIdentifierList.of(page, [EntityIdentifier.from_row(r) for r in page.records])

    @strawberry.field(description="jsondata as a JSON text.")
    def jsonstring(self) -> Optional[str]:
        return json_text(self._row.jsondata)

    @strawberry.field(description="The URL set on the entity, or that of the identifier chosen by profileUpdateMode (fresh on each read).")
    async def profile_image_url(self, info: Info) -> Optional[str]:
        if self._row.profile_identifier_id is None:
            return self._row.profile_image_url
        row = await info.context.loaders.identifier.load(self._row.profile_identifier_id)
        return await identifier_service.url_for(info.context.resources, row) if row else None

    @strawberry.field(description="The names of the entities merged into it (mergeEntities), oldest merge first.")
    async def aliases(self, info: Info) -> list[str]:
        return list(dict.fromkeys(m.name for m in await self._merges(info)))

    @strawberry.field(description="The entities merged into it (mergeEntities), oldest merge first.")
    async def merged_entities(self, info: Info) -> list[MergedEntity]:
        return [MergedEntity.from_row(m) for m in await self._merges(info)]

    async def _merges(self, info: Info) -> list[Merge]:
        return await people_service.merges_of(info.context.resources, info.context.principal, self._row.id)

    @strawberry.field(description="Identifiers a person said are not this entity (markIdentifierNotEntity), oldest first.")
    async def rejected_identifiers(
        self, info: Info, offset: Optional[int] = 0, limit: Optional[int] = 30
    ) -> EntityIdentifierList:
        page = await people_service.rejected_identifiers(
            info.context.resources, info.context.principal, self._row.id, offset, limit
        )
        return EntityIdentifierList.of(page, [EntityIdentifier.from_row(r) for r in page.records])

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


@strawberry.type(name="EntityList")
class EntityList(Paginated[Entity]):
    pass


# ---- inputs: named without an Input suffix; UNSET means "not sent" ----


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


@strawberry.type
class EntityQuery:
    @strawberry.field
    async def entity(self, info: Info, id: strawberry.ID) -> Optional[Entity]:
        return Entity.from_row(await entity_service.get(info.context.resources, info.context.principal, id))

    @strawberry.field
    async def entities(
        self,
        info: Info,
        ids: Optional[list[strawberry.ID]] = None,
        library_ids: Optional[list[strawberry.ID]] = None,
        is_published: Optional[bool] = None,
        identifier_type_id: Optional[strawberry.ID] = None,
        name: Optional[str] = None,
        offset: Optional[int] = 0,
        limit: Optional[int] = 30,
        order_by: Optional[LibraryEntityOrderBy] = None,
        order_direction: Optional[OrderDirection] = None,
    ) -> EntityList:
        page = await entity_service.list_page(
            info.context.resources,
            info.context.principal,
            library_ids=library_ids,
            ids=ids,
            is_published=is_published,
            name=name,
            identifier_type_id=identifier_type_id,
            order_by=(order_by or LibraryEntityOrderBy.createdDateTime).value,
            descending=order_direction == OrderDirection.desc,
            offset=offset,
            limit=limit,
        )
        return EntityList.of(page, [Entity.from_row(r) for r in page.records])


@strawberry.type
class EntityMutation:
    @strawberry.mutation
    async def create_entity(self, info: Info, input: CreateEntity) -> Optional[Entity]:
        data = {"name": input.name, "library_id": input.library_id, "description": input.description,
                "jsondata": input.jsondata, "jsonstring": input.jsonstring, "profile_image_url": input.profile_image_url,
                "is_published": input.is_published}
        return Entity.from_row(await entity_service.create(info.context.resources, info.context.principal, data))

    @strawberry.mutation
    async def update_entity(self, info: Info, input: UpdateEntity) -> Optional[Entity]:
        changes = sent(input, "name", "description", "jsondata", "jsonstring", "profile_image_url", "is_published")
        return Entity.from_row(await entity_service.update(info.context.resources, info.context.principal, input.id, changes))

    @strawberry.mutation
    async def delete_entity(self, info: Info, id: strawberry.ID) -> Optional[DeletePayload]:
        deleted = await entity_service.delete(info.context.resources, info.context.principal, id)
        return DeletePayload(id=strawberry.ID(str(deleted)), message=f"entity {deleted} deleted")

    @strawberry.mutation(
        description="Merge entities of one library into the target: their identifiers (with their embeddings), the "
                    "suggestions and notEntities marks that named them move to it; what each was is kept as the "
                    "target's mergedEntities (names as aliases); then they are deleted. All or none."
    )
    async def merge_entities(self, info: Info, target_id: strawberry.ID, source_ids: list[strawberry.ID]) -> Entity:
        row = await people_service.merge(info.context.resources, info.context.principal, target_id, list(source_ids))
        return Entity.from_row(row)
