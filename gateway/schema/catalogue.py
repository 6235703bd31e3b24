"""The type catalogue: library types and entity identifier types, built-in and the organization's own (built-ins
are read-only)."""

from __future__ import annotations

from typing import Optional

import strawberry
from strawberry import UNSET

from gateway.errors import NotFound
from gateway.schema.common import Paginated, sent
from gateway.schema.context import Info
from gateway.schema.enums import EntityIdentifierDataType
from gateway.schema.scalars import JSONData
from gateway.services.library import catalogue
from storage import rows


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


@strawberry.type(name="EntityIdentifierTypeList")
class EntityIdentifierTypeList(Paginated[EntityIdentifierType]):
    pass


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


@strawberry.type(name="LibraryTypeList")
class LibraryTypeList(Paginated[LibraryType]):
    pass


@strawberry.interface(description="One named value of an object's metadata.")
class Property:
    name: str


@strawberry.type
class StringProperty(Property):
    value: Optional[str]


@strawberry.type
class IntProperty(Property):
    value: Optional[int]


@strawberry.type
class BooleanProperty(Property):
    value: Optional[bool]


# The implementations are listed in the schema beside the interface, so that fragments on them validate.
PROPERTY_TYPES = (StringProperty, IntProperty, BooleanProperty)
_INT_RANGE = range(-(2**31), 2**31)  # GraphQL's Int


def properties_of(values: object) -> list[Property]:
    """The top-level text, whole-number (32-bit) and true/false values of a JSON object, as properties, in its
    key order. Other values (decimals, lists, objects, null) have no Property type; the JSON itself keeps them."""
    if not isinstance(values, dict):
        return []
    out: list[Property] = []
    for key, value in values.items():
        if isinstance(value, bool):
            out.append(BooleanProperty(name=str(key), value=value))
        elif isinstance(value, int) and value in _INT_RANGE:
            out.append(IntProperty(name=str(key), value=value))
        elif isinstance(value, str):
            out.append(StringProperty(name=str(key), value=value))
    return out


@strawberry.input
class CreateEntityType:
    name: str
    name_plural: str
    schema: JSONData = strawberry.field(description="A JSON Schema for the entities' jsondata; {} accepts anything.")


@strawberry.input
class UpdateEntityType:
    name: Optional[str] = None
    name_plural: Optional[str] = None
    schema: Optional[JSONData] = None


@strawberry.input
class CreateLibraryType:
    id: strawberry.ID
    label: str
    entity_type: CreateEntityType
    icon_class: Optional[str] = None
    entity_identifier_type_ids: Optional[list[strawberry.ID]] = None


@strawberry.input
class UpdateLibraryType:
    id: strawberry.ID
    label: str
    icon_class: Optional[str] = UNSET
    entity_identifier_type_ids: Optional[list[strawberry.ID]] = None
    entity_type: Optional[UpdateEntityType] = None


@strawberry.input
class CreateEntityIdentifierType:
    id: strawberry.ID
    label: str
    label_plural: str
    data_type: EntityIdentifierDataType
    icon_class: Optional[str] = None
    description: Optional[str] = None


@strawberry.input
class UpdateEntityIdentifierType:
    id: strawberry.ID
    label: Optional[str] = None
    label_plural: Optional[str] = None
    icon_class: Optional[str] = UNSET
    description: Optional[str] = UNSET
    data_type: Optional[EntityIdentifierDataType] = None


def _entity_type(value: CreateEntityType | UpdateEntityType | None) -> dict | None:
    if value is None:
        return None
    return {"name": value.name, "namePlural": value.name_plural, "schema": value.schema}


@strawberry.type
class CatalogueQuery:
    @strawberry.field
    async def library_types(
        self, info: Info, id: Optional[strawberry.ID] = None, offset: Optional[int] = 0, limit: Optional[int] = 30
    ) -> LibraryTypeList:
        info.context.principal.require_read()  # any valid token may read the catalogue
        types = [LibraryType.from_row(t) for t in await visible_library_types(info) if id is None or t.id == id]
        return LibraryTypeList.sliced(types, offset, limit, info.context.resources.settings.max_page_size)

    @strawberry.field
    async def library_type(self, info: Info, id: Optional[strawberry.ID] = None) -> Optional[LibraryType]:
        info.context.principal.require_read()
        for t in await visible_library_types(info):
            if id is None or t.id == id:
                return LibraryType.from_row(t)
        if id is None:
            return None
        raise NotFound(data={"objectType": "libraryType"})  # as library(id) and engine(id) answer a missing one

    @strawberry.field
    async def entity_identifier_types(
        self, info: Info, id: Optional[strawberry.ID] = None, offset: Optional[int] = 0, limit: Optional[int] = 30
    ) -> EntityIdentifierTypeList:
        info.context.principal.require_read()
        types = [
            EntityIdentifierType.from_row(t)
            for t in await visible_identifier_types(info)
            if id is None or t.id == id
        ]
        return EntityIdentifierTypeList.sliced(types, offset, limit, info.context.resources.settings.max_page_size)

    @strawberry.field
    async def entity_identifier_type(self, info: Info, id: strawberry.ID) -> Optional[EntityIdentifierType]:
        info.context.principal.require_read()
        for t in await visible_identifier_types(info):
            if t.id == id:
                return EntityIdentifierType.from_row(t)
        raise NotFound(data={"objectType": "entityIdentifierType"})


@strawberry.type
class CatalogueMutation:
    @strawberry.mutation(description="Create one of the organization's own entity identifier types.")
    async def create_entity_identifier_type(self, info: Info, input: CreateEntityIdentifierType) -> Optional[EntityIdentifierType]:
        data = {"id": input.id, "label": input.label, "label_plural": input.label_plural, "icon_class": input.icon_class,
                "description": input.description, "data_type": input.data_type.value}
        row = await catalogue.create_identifier_type(info.context.resources, info.context.principal, data)
        return EntityIdentifierType.from_row(row)

    @strawberry.mutation(description="Change one of the organization's own entity identifier types (built-ins are read-only).")
    async def update_entity_identifier_type(self, info: Info, input: UpdateEntityIdentifierType) -> Optional[EntityIdentifierType]:
        changes = sent(input, "label", "label_plural", "icon_class", "description", "data_type")
        if changes.get("data_type") is not None:
            changes["data_type"] = changes["data_type"].value
        row = await catalogue.update_identifier_type(info.context.resources, info.context.principal, input.id, changes)
        return EntityIdentifierType.from_row(row)

    @strawberry.mutation(description="Create one of the organization's own library types.")
    async def create_library_type(self, info: Info, input: CreateLibraryType) -> Optional[LibraryType]:
        data = {"id": input.id, "label": input.label, "icon_class": input.icon_class,
                "identifier_type_ids": input.entity_identifier_type_ids, "entity_type": _entity_type(input.entity_type)}
        return LibraryType.from_row(await catalogue.create_library_type(info.context.resources, info.context.principal, data))

    @strawberry.mutation(description="Change one of the organization's own library types (built-ins are read-only).")
    async def update_library_type(self, info: Info, input: UpdateLibraryType) -> Optional[LibraryType]:
        changes = sent(input, "label", "icon_class")
        changes["identifier_type_ids"] = input.entity_identifier_type_ids
        changes["entity_type"] = _entity_type(input.entity_type)
        row = await catalogue.update_library_type(info.context.resources, info.context.principal, input.id, changes)
        return LibraryType.from_row(row)
