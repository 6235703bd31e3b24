"""EntityIdentifier: one picture, recording or reference of an entity (or of its library, unassigned), its stored
embeddings and the duplicates among them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import strawberry
from strawberry import UNSET
from strawberry.file_uploads import Upload

from gateway.schema.catalogue import EntityIdentifierType, visible_identifier_types
from gateway.schema.common import DeletePayload, Paginated, json_text, lazy_class, sent
from gateway.schema.context import Info
from gateway.schema.enums import SetEntityProfileImage
from gateway.schema.identifier_filter import AnnotationType
from gateway.schema.scalars import DateTime, JSONData
from gateway.schema.uploads import read_ahead
from gateway.services.embeddings import vectors as embedding_service
from gateway.services.ingest import direct
from gateway.services.library import identifiers as identifier_service
from gateway.services.library import people as people_service
from storage import rows

if TYPE_CHECKING:
    from gateway.schema.entities import Entity
    from gateway.schema.labeling import Suggestion

EntityRef = Annotated["Entity", strawberry.lazy("gateway.schema.entities")]
SuggestionRef = Annotated["Suggestion", strawberry.lazy("gateway.schema.labeling")]


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


@strawberry.type
class EntityIdentifier:
    id: strawberry.ID
    entity_id: Optional[strawberry.ID] = strawberry.field(description="None: unassigned (in its library, no entity yet).")
    library_id: strawberry.ID
    identifier_type_id: strawberry.ID
    unique_name: Optional[str] = strawberry.field(
        description="A name unique within the library; set at upload, the file name by default.")
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
    async def suggestions(self, info: Info) -> list[SuggestionRef]:
        suggestion = lazy_class(SuggestionRef)
        rows_ = await info.context.loaders.identifier_suggestions.load(self._row.id)
        return [suggestion.from_row(r) for r in rows_ or []]

    @strawberry.field(description="A URL that serves the content: an expiring signed link (S3's, or the gateway's under ENGINESHED_PUBLIC_URL), or the reference URL.")
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
    async def entity(self, info: Info) -> Optional[EntityRef]:
        if self._row.entity_id is None:
            return None
        row = await info.context.loaders.entity.load(self._row.entity_id)
        return lazy_class(EntityRef).from_row(row) if row else None

    @strawberry.field
    async def identifier_type(self, info: Info) -> Optional[EntityIdentifierType]:
        for t in await visible_identifier_types(info):
            if t.id == self._row.identifier_type_id:
                return EntityIdentifierType.from_row(t)
        return None

    @strawberry.field(description="jsondata as a JSON text.")
    def jsonstring(self) -> Optional[str]:
        return json_text(self._row.jsondata)

    @strawberry.field(description="The stored embeddings of this identifier, one per model version (oldest first).")
    async def embeddings(self, info: Info) -> list[IdentifierEmbedding]:
        found = await info.context.loaders.identifier_embeddings.load(self._row.id)
        return [IdentifierEmbedding.of(e) for e in found or []]

    @strawberry.field(description="The entities a person said it is not (markIdentifierNotEntity), oldest first.")
    async def not_entities(self, info: Info) -> list[EntityRef]:
        entity = lazy_class(EntityRef)
        found = await people_service.not_entities(info.context.resources, info.context.principal, self._row.id)
        return [entity.from_row(r) for r in found]

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


@strawberry.type(name="EntityIdentifierList")
class EntityIdentifierList(Paginated[EntityIdentifier]):
    pass


@strawberry.type(description="Two identifiers under different entities of a library that hold the same picture.")
class DuplicateIdentifierPair:
    first: EntityIdentifier
    second: EntityIdentifier
    score: float = strawberry.field(description="Cosine similarity of their embeddings (1 for identical bytes).")
    reason: str = strawberry.field(description="same-content (identical bytes) or near-identical (embeddings).")


# ---- inputs: named without an Input suffix; UNSET means "not sent" ----


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
    entity_id: Optional[strawberry.ID] = strawberry.field(
        default=UNSET,
        description="Move it to this entity of its library (annotationType human; its pending suggestions are rejected, "
                    "and a notEntities mark for that entity goes); null: unassigned. Its embeddings go with it.",
    )


@strawberry.type(description="What markIdentifierNotEntity did.")
class IdentifierNotEntity:
    identifier: EntityIdentifier = strawberry.field(description="The identifier as it is now.")
    entity: EntityRef
    unassigned: bool = strawberry.field(
        description="It was the entity's: it left it and is unassigned now (an identifier is never the entity it is not)."
    )
    rejected_suggestion_ids: list[strawberry.ID] = strawberry.field(description="Its pending suggestions of the entity, rejected.")


@strawberry.type
class IdentifierQuery:
    @strawberry.field
    async def entity_identifier(self, info: Info, id: strawberry.ID) -> Optional[EntityIdentifier]:
        return EntityIdentifier.from_row(await identifier_service.get(info.context.resources, info.context.principal, id))


@strawberry.type
class IdentifierMutation:
    @strawberry.mutation
    async def create_entity_identifier(self, info: Info, input: CreateEntityIdentifier) -> Optional[EntityIdentifier]:
        file = input.file or info.context.form_file
        data = {"entity_id": input.entity_id, "library_id": input.library_id, "identifier_type_id": input.identifier_type_id,
                "content_type": input.content_type, "url": input.url, "title": input.title,
                "is_priority": input.is_priority, "jsondata": input.jsondata, "jsonstring": input.jsonstring,
                "store_reference": input.store_reference, "unique_name": input.unique_name,
                "profile_update_mode": input.profile_update_mode.value if input.profile_update_mode else None}
        res = info.context.resources
        key = direct.key_of(res.blobs.bucket, input.url) if file is None and not input.store_reference else None
        if key is not None:  # a file PUT to a writable URL (getSignedWritableUrl): taken in place
            row = await direct.create(res, info.context.principal, data, key, read_ahead(info))
        else:
            row = await identifier_service.create(res, info.context.principal, data, file)
        return EntityIdentifier.from_row(row)

    @strawberry.mutation
    async def update_entity_identifier(self, info: Info, input: UpdateEntityIdentifier) -> Optional[EntityIdentifier]:
        changes = sent(input, "title", "is_priority", "url", "jsondata", "jsonstring", "entity_id")
        row = await identifier_service.update(info.context.resources, info.context.principal, input.id, changes)
        return EntityIdentifier.from_row(row)

    @strawberry.mutation
    async def delete_entity_identifier(self, info: Info, id: strawberry.ID) -> Optional[DeletePayload]:
        deleted = await identifier_service.delete(info.context.resources, info.context.principal, id)
        return DeletePayload(id=strawberry.ID(str(deleted)), message=f"entity identifier {deleted} deleted")

    @strawberry.mutation(
        description="\"Not this person\": the identifier is not the entity (from a match: identifierId and entityId; from a "
                    "suggestion: suggestionId). Kept as a negative: training never uses it as the entity's example, "
                    "auto-tagging never suggests the entity for it, and merging a group into the entity leaves it out. "
                    "Its pending suggestions of the entity are rejected; when it is the entity's, it becomes unassigned."
    )
    async def mark_identifier_not_entity(
        self, info: Info, identifier_id: Optional[strawberry.ID] = None, entity_id: Optional[strawberry.ID] = None,
        suggestion_id: Optional[strawberry.ID] = None,
    ) -> IdentifierNotEntity:
        done = await people_service.mark_not(
            info.context.resources, info.context.principal, identifier_id=identifier_id, entity_id=entity_id,
            suggestion_id=suggestion_id,
        )
        return IdentifierNotEntity(
            identifier=EntityIdentifier.from_row(done.identifier), entity=lazy_class(EntityRef).from_row(done.entity),
            unassigned=done.unassigned, rejected_suggestion_ids=[strawberry.ID(str(i)) for i in done.rejected_suggestions],
        )

    @strawberry.mutation(description="Take back markIdentifierNotEntity: the identifier may be the entity again.")
    async def unmark_identifier_not_entity(
        self, info: Info, identifier_id: strawberry.ID, entity_id: strawberry.ID
    ) -> EntityIdentifier:
        row = await people_service.unmark_not(info.context.resources, info.context.principal, identifier_id, entity_id)
        return EntityIdentifier.from_row(row)
