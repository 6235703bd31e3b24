"""The labeling loop on the wire: unassigned identifiers, autoTag / findHardExamples / autoGroup jobs, their
suggestions and groups, and the mutations that decide them. Mixed into root.py's Query and Mutation."""

from __future__ import annotations

from enum import Enum
from typing import Optional

import strawberry

from gateway.schema.common import Paginated
from gateway.schema.context import Info
from gateway.schema.entities import Entity
from gateway.schema.identifier_filter import IdentifierFilter, to_selection
from gateway.schema.identifiers import EntityIdentifier, EntityIdentifierList
from gateway.schema.jobs import Job
from gateway.schema.scalars import DateTime
from gateway.services.labeling import grouping as grouping_service
from gateway.services.labeling import jobs as labeling_jobs
from gateway.services.labeling import suggestions as suggestion_service
from storage.queries.suggestions import Group
from storage.queries.suggestions import Suggestion as SuggestionRow


@strawberry.enum(description="A suggestion waits for a person (pending), or a person accepted or rejected it.")
class SuggestionStatus(Enum):
    pending = "pending"
    accepted = "accepted"
    rejected = "rejected"


@strawberry.enum(description="What autoGroup clusters on: embeddings, or one image measure (see the README).")
class GroupFeature(Enum):
    embedding = "embedding"
    blur = "blur"
    brightness = "brightness"
    colorfulness = "colorfulness"


@strawberry.type(description="A model's answer for an identifier: an entity of its library, or a label with none yet.")
class Suggestion:
    id: strawberry.ID
    identifier_id: strawberry.ID
    job_id: strawberry.ID
    entity_id: Optional[strawberry.ID]
    label: str
    confidence: float
    model_version: Optional[str] = strawberry.field(description="The model that made it: name@version, or engine:modelId.")
    status: SuggestionStatus
    created_date_time: DateTime
    modified_date_time: DateTime

    @classmethod
    def from_row(cls, row: SuggestionRow) -> Suggestion:
        return cls(
            id=strawberry.ID(str(row.id)), identifier_id=strawberry.ID(str(row.identifier_id)),
            job_id=strawberry.ID(str(row.job_id)),
            entity_id=strawberry.ID(str(row.entity_id)) if row.entity_id is not None else None,
            label=row.label, confidence=row.confidence, model_version=row.model_version,
            status=SuggestionStatus(row.status), created_date_time=row.created_at, modified_date_time=row.modified_at,
        )


@strawberry.type(name="SuggestionList")
class SuggestionList(Paginated[Suggestion]):
    pass


@strawberry.type(description="Unassigned identifiers auto-grouping put together; name it with createEntityFromGroup.")
class IdentifierGroup:
    id: strawberry.ID
    job_id: strawberry.ID
    library_id: strawberry.ID
    size: int = strawberry.field(description="Members now (ones deleted since are gone).")
    _row: strawberry.Private[Group]

    @strawberry.field(description="The member nearest the group's centre.")
    async def representative(self, info: Info) -> Optional[EntityIdentifier]:
        row = await grouping_service.representative(info.context.resources, info.context.principal, self._row)
        return EntityIdentifier.from_row(row) if row is not None else None

    @strawberry.field(description="Members, nearest the centre first.")
    async def members(self, info: Info, offset: Optional[int] = 0, limit: Optional[int] = 30) -> EntityIdentifierList:
        page = await grouping_service.members(info.context.resources, info.context.principal, self._row, offset, limit)
        return EntityIdentifierList.of(page, [EntityIdentifier.from_row(r) for r in page.records])

    @classmethod
    def from_row(cls, row: Group) -> IdentifierGroup:
        return cls(id=strawberry.ID(str(row.id)), job_id=strawberry.ID(str(row.job_id)),
                   library_id=strawberry.ID(str(row.library_id)), size=row.size, _row=row)


@strawberry.type(name="IdentifierGroupList")
class IdentifierGroupList(Paginated[IdentifierGroup]):
    pass


@strawberry.input(description="Auto-tag (pre-label) a library, or every library of the organization holding identifierTypeId.")
class AutoTag:
    library_id: Optional[strawberry.ID] = None
    identifier_type_id: Optional[strawberry.ID] = None
    model_id: Optional[str] = strawberry.field(default=None, description="A registered auto_tagging model: name, name@3, name@alias.")
    library_engine_model_id: Optional[strawberry.ID] = strawberry.field(default=None, description="A trained model.")
    input_resolution: Optional[list[int]] = strawberry.field(
        default_factory=lambda: [300, 300], description="[width, height]: larger images are downscaled to fit first (not for a face engine, which finds the faces in the photo as stored)."
    )
    confidence_threshold: Optional[float] = strawberry.field(default=0.5, description="Suggestions at or above this (0-1) are stored.")
    query: Optional[str] = strawberry.field(
        default=None,
        description='field=value clauses joined by AND; fields entity.name (or annotation.label), identifier.title, '
                    'identifier.contentType; values may be "quoted".',
    )
    filter: Optional[IdentifierFilter] = None


@strawberry.input(description="Active learning: flag the library's unassigned identifiers the model is unsure of as hard.")
class FindHardExamples:
    library_id: strawberry.ID
    library_engine_model_id: Optional[strawberry.ID] = None
    model_id: Optional[str] = None
    confidence_scope: Optional[str] = strawberry.field(default="0.10-0.90", description='"lo-hi" in [0, 1]: a top confidence inside is hard.')
    collect_key_sample: Optional[bool] = strawberry.field(
        default=False, description="Also store the model's best guess for each hard example as a pending suggestion."
    )


@strawberry.input(description="Cluster the library's unassigned identifiers into groups.")
class AutoGroup:
    library_id: strawberry.ID
    n_clusters: Optional[int] = strawberry.field(default=None, description="That many groups (KMeans).")
    similarity_threshold: Optional[float] = strawberry.field(
        default=None, description="Instead of nClusters: groups whose members' average cosine similarity is at least this."
    )
    feature: Optional[GroupFeature] = GroupFeature.embedding
    model_id: Optional[str] = strawberry.field(default=None, description="The embedding model (feature embedding); default: the system's.")


def _suggestions(rows: list[SuggestionRow]) -> list[Suggestion]:
    return [Suggestion.from_row(r) for r in rows]


@strawberry.type
class LabelingQuery:
    @strawberry.field(description="A library's identifiers that belong to no entity yet; hard: true lists the hardest first.")
    async def unassigned_identifiers(
        self, info: Info, library_id: strawberry.ID, filter: Optional[IdentifierFilter] = None, hard: Optional[bool] = None,
        offset: Optional[int] = 0, limit: Optional[int] = 30,
    ) -> EntityIdentifierList:
        page = await suggestion_service.unassigned(
            info.context.resources, info.context.principal, library_id, to_selection(filter), hard=hard, offset=offset, limit=limit,
        )
        return EntityIdentifierList.of(page, [EntityIdentifier.from_row(r) for r in page.records])

    @strawberry.field(description="Suggestions of a job, an identifier or a library; the most confident first.")
    async def suggestions(
        self, info: Info, job_id: Optional[strawberry.ID] = None, identifier_id: Optional[strawberry.ID] = None,
        library_id: Optional[strawberry.ID] = None, status: Optional[SuggestionStatus] = None,
        offset: Optional[int] = 0, limit: Optional[int] = 30,
    ) -> SuggestionList:
        page = await suggestion_service.list_page(
            info.context.resources, info.context.principal, job_id=job_id, identifier_id=identifier_id,
            library_id=library_id, status=status.value if status else None, offset=offset, limit=limit,
        )
        return SuggestionList.of(page, _suggestions(page.records))

    @strawberry.field(description="The groups an autoGroup job made, largest first.")
    async def identifier_groups(
        self, info: Info, job_id: strawberry.ID, offset: Optional[int] = 0, limit: Optional[int] = 30
    ) -> IdentifierGroupList:
        page = await grouping_service.groups(info.context.resources, info.context.principal, job_id, offset, limit)
        return IdentifierGroupList.of(page, [IdentifierGroup.from_row(r) for r in page.records])


@strawberry.type
class LabelingMutation:
    @strawberry.mutation(description="Suggest entities for identifiers with a trained or registered model (pre-labeling).")
    async def auto_tag(self, info: Info, input: AutoTag) -> Job:
        data = {
            "library_id": input.library_id, "identifier_type_id": input.identifier_type_id, "model_id": input.model_id,
            "library_engine_model_id": input.library_engine_model_id, "input_resolution": input.input_resolution,
            "confidence_threshold": input.confidence_threshold, "query": input.query,
        }
        selection = to_selection(input.filter)
        return Job.from_row(await labeling_jobs.auto_tag(info.context.resources, info.context.principal, data, selection))

    @strawberry.mutation(description="Active learning: flag unassigned identifiers inside the confidence scope as hard.")
    async def find_hard_examples(self, info: Info, input: FindHardExamples) -> Job:
        data = {
            "library_id": input.library_id, "library_engine_model_id": input.library_engine_model_id,
            "model_id": input.model_id, "confidence_scope": input.confidence_scope,
            "collect_key_sample": input.collect_key_sample,
        }
        return Job.from_row(await labeling_jobs.find_hard_examples(info.context.resources, info.context.principal, data))

    @strawberry.mutation(description="Cluster a library's unassigned identifiers into groups.")
    async def auto_group(self, info: Info, input: AutoGroup) -> Job:
        data = {
            "library_id": input.library_id, "n_clusters": input.n_clusters, "similarity_threshold": input.similarity_threshold,
            "feature": input.feature.value if input.feature else None, "model_id": input.model_id,
        }
        return Job.from_row(await labeling_jobs.auto_group(info.context.resources, info.context.principal, data))

    @strawberry.mutation(description="Accept suggestions: each identifier moves into its suggested entity (created if needed). All or none.")
    async def accept_suggestions(self, info: Info, ids: list[strawberry.ID]) -> list[Suggestion]:
        return _suggestions(await suggestion_service.accept(info.context.resources, info.context.principal, list(ids)))

    @strawberry.mutation(description="Reject suggestions; their identifiers stay where they are. All or none.")
    async def reject_suggestions(self, info: Info, ids: list[strawberry.ID]) -> list[Suggestion]:
        return _suggestions(await suggestion_service.reject(info.context.resources, info.context.principal, list(ids)))

    @strawberry.mutation(description="A new entity named `name` holding the group's still-unassigned members.")
    async def create_entity_from_group(self, info: Info, group_id: strawberry.ID, name: str) -> Entity:
        return Entity.from_row(await grouping_service.create_entity(info.context.resources, info.context.principal, group_id, name))

    @strawberry.mutation(
        description="Move the group's still-unassigned members into an entity of the same library (members marked not "
                    "that entity with markIdentifierNotEntity stay unassigned)."
    )
    async def merge_group_into_entity(self, info: Info, group_id: strawberry.ID, entity_id: strawberry.ID) -> Entity:
        return Entity.from_row(await grouping_service.merge(info.context.resources, info.context.principal, group_id, entity_id))
