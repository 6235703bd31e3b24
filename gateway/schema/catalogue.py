"""Creating and changing library types and entity identifier types (the organization's own; built-ins are read-only)."""

from __future__ import annotations

from typing import Optional

import strawberry
from strawberry import UNSET

from gateway.schema.context import Info
from gateway.schema.enums import EntityIdentifierDataType
from gateway.schema.libraries import EntityIdentifierType, LibraryType, sent
from gateway.schema.scalars import JSONData
from gateway.services import catalogue


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
