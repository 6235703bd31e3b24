"""Query, Mutation and Subscription: each resolver turns GraphQL into one service call and back."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Annotated, Optional

import strawberry
from strawberry.extensions import MaxTokensLimiter, ParserCache
from strawberry.file_uploads import Upload

import logging

from gateway.errors import ApiError, InvalidInput, NotFound, unstorable
from gateway.schema.caller import CallerQuery
from gateway.schema.catalogue import CatalogueMutation
from gateway.schema.context import Info
from gateway.schema.labeling import LabelingMutation, LabelingQuery
from gateway.schema.limits import QueryLimits
from gateway.schema.operation_choice import OperationChoice
from gateway.schema.validation_cache import ShapeValidationCache
from gateway.schema.engine_fields import EngineFilter, EngineSortField, filter_dict, order_pairs
from gateway.schema.engine_models import (
    EngineCategoryList,
    category_of,
    CreateEngine,
    CreateLibraryEngineModel,
    Engine,
    EngineList,
    LibraryEngineModel,
    UpdateLibraryEngineModel,
)
from gateway.schema.enums import EngineState, JobOrderField, JobStatus, JobStatusFilter, LibraryEntityOrderBy, LibraryOrderBy, OrderDirection
from gateway.schema.jobs import (
    ClaimedTask,
    CreateJob,
    EngineResult,
    EngineResultList,
    Job,
    JobDateTimeFilter,
    JobList,
    JobSortField,
    Task,
    TaskHeartbeat,
)
from gateway.schema.libraries import (
    CreateEntity,
    CreateEntityIdentifier,
    CreateLibrary,
    DeletePayload,
    Entity,
    EntityIdentifier,
    EntityIdentifierType,
    EntityIdentifierTypeList,
    EntityList,
    Library,
    LibraryList,
    LibraryType,
    LibraryTypeList,
    UpdateEntity,
    UpdateEntityIdentifier,
    UpdateLibrary,
    sent,
    visible_identifier_types,
    visible_library_types,
)
from gateway.schema.models import ModelMutation, ModelQuery
from gateway.schema.embeddings import EmbeddingMutation, EmbeddingQuery
from gateway.schema.paging import page_fields
from gateway.schema.recognition import RecognitionResult, recognize_file
from gateway.schema.scalars import JSONData, UploadScalar
from gateway.schema.tokens import TokenMutation, TokenQuery
from gateway.schema.trainings import TrainingMutation
from gateway.services import job_wait, model_versions
from gateway.services import dispatch
from gateway.services import engine_models as model_service
from gateway.services import engines as engine_service
from gateway.services import entities as entity_service
from gateway.services import identifiers as identifier_service
from gateway.services import jobs as job_service
from gateway.services import libraries as library_service
from gateway.services.paging import Page, check_page

_log = logging.getLogger("engineshed.graphql")


def _typed_page(records: list, offset: int | None, limit: int | None, maximum: int) -> dict:
    offset, limit = check_page(offset, limit, maximum)
    chosen = records[offset : offset + limit]
    return page_fields(Page(chosen, offset, limit, len(records)), chosen)


@strawberry.type
class Query(CallerQuery, ModelQuery, TokenQuery, LabelingQuery, EmbeddingQuery):
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
        return LibraryList(**page_fields(page, [Library.from_row(r) for r in page.records]))

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
        return EntityList(**page_fields(page, [Entity.from_row(r) for r in page.records]))

    @strawberry.field
    async def entity_identifier(self, info: Info, id: strawberry.ID) -> Optional[EntityIdentifier]:
        return EntityIdentifier.from_row(await identifier_service.get(info.context.resources, info.context.principal, id))

    @strawberry.field
    async def library_types(
        self, info: Info, id: Optional[strawberry.ID] = None, offset: Optional[int] = 0, limit: Optional[int] = 30
    ) -> LibraryTypeList:
        info.context.principal.require_read()  # any valid token may read the catalogue
        types = [LibraryType.from_row(t) for t in await visible_library_types(info) if id is None or t.id == id]
        return LibraryTypeList(**_typed_page(types, offset, limit, info.context.resources.settings.max_page_size))

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
        return EntityIdentifierTypeList(**_typed_page(types, offset, limit, info.context.resources.settings.max_page_size))

    @strawberry.field
    async def entity_identifier_type(self, info: Info, id: strawberry.ID) -> Optional[EntityIdentifierType]:
        info.context.principal.require_read()
        for t in await visible_identifier_types(info):
            if t.id == id:
                return EntityIdentifierType.from_row(t)
        raise NotFound(data={"objectType": "entityIdentifierType"})

    @strawberry.field
    async def library_engine_model(self, info: Info, id: strawberry.ID) -> Optional[LibraryEngineModel]:
        return LibraryEngineModel.from_row(await model_service.get(info.context.resources, info.context.principal, id))

    @strawberry.field
    async def engine(self, info: Info, id: strawberry.ID) -> Optional[Engine]:
        return Engine.from_row(await engine_service.get(info.context.resources, info.context.principal, id))

    @strawberry.field
    async def engines(
        self,
        info: Info,
        id: Optional[strawberry.ID] = None,
        ids: Optional[list[strawberry.ID]] = None,
        category_id: Optional[str] = None,
        category: Optional[str] = None,
        state: Optional[list[Optional[EngineState]]] = None,
        owned: Optional[bool] = False,
        library_required: Optional[bool] = None,
        creates_tdo: Annotated[Optional[bool], strawberry.argument(name="createsTDO")] = None,
        name: Optional[str] = None,
        offset: Optional[int] = 0,
        limit: Optional[int] = 30,
        filter: Optional[EngineFilter] = None,
        order_by: Optional[list[Optional[EngineSortField]]] = None,
    ) -> EngineList:
        wanted = None
        if id is not None or ids is not None:
            wanted = ([str(id)] if id is not None else []) + [str(i) for i in ids or []]
        filters = engine_service.engine_filters(
            category_id=category_id, library_required=library_required, name=name, category=category,
            states=[s.value for s in state if s is not None] if state is not None else None, owned=owned,
            creates_tdo=creates_tdo, filter=filter_dict(filter),
        )
        page = await engine_service.list_page(
            info.context.resources, info.context.principal, ids=wanted, filters=filters, order=order_pairs(order_by),
            offset=offset, limit=limit,
        )
        return EngineList(**page_fields(page, [Engine.from_row(r) for r in page.records]))

    @strawberry.field
    async def engine_categories(
        self,
        info: Info,
        id: Optional[strawberry.ID] = None,
        name: Optional[str] = None,
        type: Optional[str] = None,
        offset: Optional[int] = 0,
        limit: Optional[int] = 30,
    ) -> EngineCategoryList:
        groups = await engine_service.categories(
            info.context.resources, info.context.principal, category_id=id, name=name, engine_type=type
        )
        categories = [category_of(rows) for rows in groups]
        return EngineCategoryList(**_typed_page(categories, offset, limit, info.context.resources.settings.max_page_size))

    @strawberry.field
    async def engine_results(
        self, info: Info, job_id: Optional[strawberry.ID] = None, tdo_id: Optional[strawberry.ID] = None,
        offset: Optional[int] = 0, limit: Optional[int] = 30,
    ) -> EngineResultList:
        tasks = await job_service.results(info.context.resources, info.context.principal, job_id) if job_id else []
        records = [
            EngineResult(job_id=strawberry.ID(str(t.job_id)), task_id=strawberry.ID(str(t.id)),
                         engine_id=strawberry.ID(t.engine_id), tdo_id=None, asset_id=None, jsondata=t.output)
            for t in tasks
        ]
        return EngineResultList(**_typed_page(records, offset, limit, info.context.resources.settings.max_page_size))

    @strawberry.field
    async def job(
        self,
        info: Info,
        id: strawberry.ID,
        wait_seconds: Annotated[Optional[int], strawberry.argument(
            description="Answer when the job is done or after this many seconds (0-60), whichever is first."
        )] = 0,
    ) -> Optional[Job]:
        return Job.from_row(await job_wait.wait(info.context.resources, info.context.principal, id, wait_seconds))

    @strawberry.field
    async def jobs(
        self,
        info: Info,
        id: Optional[strawberry.ID] = None,
        status: Optional[list[JobStatusFilter]] = None,
        engine_ids: Optional[list[strawberry.ID]] = None,
        library_id: Optional[strawberry.ID] = None,
        cluster_id: Optional[strawberry.ID] = None,
        target_id: Optional[strawberry.ID] = None,
        date_time_filter: Optional[list[JobDateTimeFilter]] = None,
        order_by: Optional[list[JobSortField]] = None,
        offset: Optional[int] = 0,
        limit: Optional[int] = 30,
        application_id: Optional[strawberry.ID] = None,
        application_ids: Optional[list[Optional[strawberry.ID]]] = None,
        scheduled_job_ids: Optional[list[strawberry.ID]] = None,
        has_scheduled_job_id: Optional[bool] = None,
        labels: Annotated[Optional[JSONData], strawberry.argument(description="Jobs carrying every given label pair.")] = None,
    ) -> JobList:
        filter_field, from_time, to_time = "createdDateTime", None, None
        for f in date_time_filter or []:
            filter_field, from_time, to_time = f.field.value, f.from_date_time, f.to_date_time
        order = (order_by or [JobSortField(field=JobOrderField.createdDateTime)])[0]
        page = await job_service.list_page(
            info.context.resources,
            info.context.principal,
            job_id=id,
            statuses=[s.value for s in status] if status else None,
            engine_ids=[str(e) for e in engine_ids] if engine_ids else None,
            library_id=library_id,
            cluster_id=cluster_id,
            filter_field=filter_field,
            from_time=from_time,
            to_time=to_time,
            order_field=order.field.value,
            descending=order.direction != OrderDirection.asc,
            offset=offset,
            limit=limit,
            application_ids=None if application_id is None and application_ids is None else [application_id, *(application_ids or [])],
            scheduled=has_scheduled_job_id,
            scheduled_job_ids=scheduled_job_ids,
            labels=labels,
        )
        if target_id is not None:  # jobs here have no targets (media objects)
            page = Page([], page.offset, page.limit, 0)
        return JobList(**page_fields(page, [Job.from_row(r) for r in page.records]))

    @strawberry.field
    async def task(self, info: Info, id: strawberry.ID) -> Optional[Task]:
        return Task.from_row(await job_service.get_task(info.context.resources, info.context.principal, id))

    @strawberry.field(
        description="Recognize an uploaded image (or the plain form's file part) with a trained model "
        "(libraryEngineModelId), with a library's default model (libraryId, and engineId or the library's default "
        "engine), or with a registered auto_tagging model without training (modelId: name, name@3, name@alias): give "
        "exactly one of libraryEngineModelId, libraryId and modelId."
    )
    async def recognize(
        self,
        info: Info,
        library_engine_model_id: Optional[strawberry.ID] = None,
        file: Optional[Upload] = None,
        url: Optional[str] = None,
        top_k: Optional[int] = 5,
        threshold: Optional[float] = None,
        model_id: Optional[str] = None,
        library_id: Optional[strawberry.ID] = None,
        engine_id: Optional[strawberry.ID] = None,
    ) -> RecognitionResult:
        return await recognize_file(info, library_engine_model_id, file, url, top_k, threshold, model_id,
                                    library_id=library_id, engine_id=engine_id)


@strawberry.type
class Mutation(CatalogueMutation, ModelMutation, TokenMutation, TrainingMutation, LabelingMutation, EmbeddingMutation):
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
        return Library.from_row(await job_service.publish_library(info.context.resources, info.context.principal, id))

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

    @strawberry.mutation
    async def create_entity_identifier(self, info: Info, input: CreateEntityIdentifier) -> Optional[EntityIdentifier]:
        file = input.file or info.context.form_file
        data = {"entity_id": input.entity_id, "library_id": input.library_id, "identifier_type_id": input.identifier_type_id,
                "content_type": input.content_type, "url": input.url, "title": input.title,
                "is_priority": input.is_priority, "jsondata": input.jsondata, "jsonstring": input.jsonstring,
                "store_reference": input.store_reference, "unique_name": input.unique_name,
                "profile_update_mode": input.profile_update_mode.value if input.profile_update_mode else None}
        row = await identifier_service.create(info.context.resources, info.context.principal, data, file)
        return EntityIdentifier.from_row(row)

    @strawberry.mutation
    async def update_entity_identifier(self, info: Info, input: UpdateEntityIdentifier) -> Optional[EntityIdentifier]:
        changes = sent(input, "title", "is_priority", "url", "jsondata", "jsonstring")
        row = await identifier_service.update(info.context.resources, info.context.principal, input.id, changes)
        return EntityIdentifier.from_row(row)

    @strawberry.mutation
    async def delete_entity_identifier(self, info: Info, id: strawberry.ID) -> Optional[DeletePayload]:
        deleted = await identifier_service.delete(info.context.resources, info.context.principal, id)
        return DeletePayload(id=strawberry.ID(str(deleted)), message=f"entity identifier {deleted} deleted")

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

    @strawberry.mutation
    async def create_job(self, info: Info, input: Optional[CreateJob] = None) -> Optional[Job]:
        if input is None:
            raise InvalidInput("input is required")
        data = {
            "tasks": [{"engine_id": t.engine_id, "payload": t.payload, "payload_string": t.payload_string, "test_task": t.test_task}
                      for t in input.tasks or []],
            "name": input.target.name if input.target else None,
            "target_url": input.target.url if input.target else None,
            "cluster_id": input.cluster_id,
            "retries": input.retries,
            "display_name": input.display_name,
            "labels": input.labels,
        }
        return Job.from_row(await job_service.create(info.context.resources, info.context.principal, data))

    @strawberry.mutation
    async def cancel_job(self, info: Info, id: strawberry.ID) -> Optional[DeletePayload]:
        job = await job_service.cancel(info.context.resources, info.context.principal, id)
        return DeletePayload(id=strawberry.ID(str(job.id)), message=f"job {job.id} cancellation requested; status {job.status}")

    @strawberry.mutation
    async def retry_job(self, info: Info, id: strawberry.ID) -> Optional[Job]:
        return Job.from_row(await job_service.retry(info.context.resources, info.context.principal, id))

    @strawberry.mutation
    async def delete_job(self, info: Info, id: strawberry.ID) -> DeletePayload:
        deleted = await job_service.delete(info.context.resources, info.context.principal, id)
        return DeletePayload(id=strawberry.ID(str(deleted)), message=f"job {deleted} deleted")

    @strawberry.mutation(description="Register an engine that runs elsewhere and claims its tasks through this API.")
    async def create_engine(self, info: Info, input: CreateEngine) -> Optional[Engine]:
        data = {"id": input.id, "name": input.name, "category_id": input.category_id,
                "identifier_type_ids": [str(t) for t in input.identifier_type_ids],
                "library_type_ids": [str(t) for t in input.library_type_ids or []], "modes": input.modes,
                "library_required": input.library_required, "concurrency_limit": input.concurrency_limit,
                "description": input.description}
        return Engine.from_row(await engine_service.create_external(info.context.resources, info.context.principal, data))

    @strawberry.mutation(description="External engines: lease up to `limit` queued tasks (engine token).")
    async def claim_tasks(self, info: Info, engine_id: strawberry.ID, limit: Optional[int] = 1) -> list[ClaimedTask]:
        from datetime import datetime

        claimed = await dispatch.claim_external(info.context.resources, info.context.principal, str(engine_id), limit or 1)
        out = []
        for task, token in claimed:
            expires: datetime | None = task.lease_expires_at
            out.append(ClaimedTask(task=Task.from_row(task), token=token, lease_expires_date_time=expires))
        return out

    @strawberry.mutation(description="External engines: renew the lease and report progress (0-1).")
    async def heartbeat_task(
        self, info: Info, id: strawberry.ID, progress: Optional[float] = None, message: Optional[str] = None
    ) -> TaskHeartbeat:
        task, cancel = await dispatch.heartbeat_external(info.context.resources, info.context.principal, id, progress, message)
        fresh = await job_service.get_task(info.context.resources, info.context.principal, task.id)
        return TaskHeartbeat(task=Task.from_row(fresh), cancel_requested=cancel)

    @strawberry.mutation(description="External engines: finish a claimed task successfully.")
    async def complete_task(self, info: Info, id: strawberry.ID, output: Optional[JSONData] = None) -> Task:
        await dispatch.complete_external(info.context.resources, info.context.principal, id, output)
        return Task.from_row(await job_service.get_task(info.context.resources, info.context.principal, id, finished_by_token=True))

    @strawberry.mutation(description="External engines: fail a claimed task (retried later when `retry` and attempts remain).")
    async def fail_task(
        self,
        info: Info,
        id: strawberry.ID,
        failure_reason: Optional[str] = None,
        failure_message: Optional[str] = None,
        retry: Optional[bool] = False,
    ) -> Task:
        task = await dispatch.fail_external(info.context.resources, info.context.principal, id, failure_reason, failure_message, bool(retry))
        return Task.from_row(task)


@strawberry.type
class Subscription:
    @strawberry.subscription(description="The job's state now, then every change of it or its tasks.")
    async def job_updated(self, info: Info, id: strawberry.ID) -> AsyncGenerator[Job, None]:
        from gateway.schema.events import job_updates

        async for job in job_updates(info, id):
            yield Job.from_row(job)

    @strawberry.subscription(description="The job's tasks now, then each task whose status or progress changes.")
    async def task_updated(self, info: Info, job_id: strawberry.ID) -> AsyncGenerator[Task, None]:
        from gateway.schema.events import task_updates

        async for task in task_updates(info, job_id):
            yield Task.from_row(task)


class _Schema(strawberry.Schema):
    def process_errors(self, errors: list, execution_context: object = None) -> None:
        """Log unexpected errors (the HTTP view masks them for clients); client errors are not logged."""
        for error in errors:
            original = getattr(error, "original_error", None)
            if original is not None and error.path is not None and not isinstance(original, ApiError):
                if unstorable(original) is not None:  # answered invalid_input: the client's value, not our fault
                    _log.info("refused a value PostgreSQL cannot store in %s (%s)", error.path, type(original).__name__)
                    continue
                _log.error("unexpected error in %s", error.path, exc_info=original)


QUERY_CACHE_SIZE = 256


def build_schema(settings: object) -> strawberry.Schema:
    validation_caches = ShapeValidationCache.caches(QUERY_CACHE_SIZE)
    return _Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        # Upstream declares JobStatus beside TaskStatus (Job.status is a TaskStatus there too): published for
        # clients whose generated code names it, though no field takes or returns it.
        types=[JobStatus],
        scalar_overrides={Upload: UploadScalar},
        extensions=[
            lambda: MaxTokensLimiter(max_token_count=settings.max_query_tokens),
            # Engines and dashboards send the same few query texts again and again: parse and validate
            # each once (bounded LRUs keyed by the text, then by the parsed document; a text that does not
            # parse is not cached, and validation errors depend on nothing but the document).
            lambda: ParserCache(maxsize=QUERY_CACHE_SIZE),
            lambda: ShapeValidationCache(validation_caches),  # also when only the inline IDs differ
            OperationChoice,
            lambda: QueryLimits(
                max_depth=settings.max_query_depth,
                max_aliases=settings.max_query_aliases,
                max_cost=settings.max_query_cost,
            ),
        ],
    )

