"""Engine and EngineCategory: installed engines and external ones (createEngine), the inputs that filter and sort
them, and the queries that list them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import strawberry

from gateway.schema.caller import Organization
from gateway.schema.catalogue import (
    EntityIdentifierType,
    EntityIdentifierTypeList,
    visible_identifier_types,
)
from gateway.schema.common import Paginated, lazy_class
from gateway.schema.context import Info
from gateway.schema.engine_platform import (
    NOT_STORED,
    EnginePlatformFields,
    EngineSearchConfiguration,
)
from gateway.schema.enums import (
    DeploymentModel,
    EngineFieldType,
    EngineMode,
    EngineOrderField,
    EngineState,
    EngineStateAction,
    EngineTypeFilter,
    OrderDirection,
    TaskDateTimeField,
)
from gateway.schema.scalars import DateTime, JSONData
from gateway.services.queue import engines as engine_service
from storage import rows

if TYPE_CHECKING:
    from gateway.schema.tasks import Task, TaskList

TaskRef = Annotated["Task", strawberry.lazy("gateway.schema.tasks")]
TaskListRef = Annotated["TaskList", strawberry.lazy("gateway.schema.tasks")]

# Installed engines belong to the installation, not to an organization; ownerOrganizationId is non-null in the API,
# so they report this id.
INSTALLATION_ORGANIZATION_ID = "00000000-0000-0000-0000-000000000000"


@strawberry.type
class EngineFieldPicklistOption:
    key: str
    value: str


@strawberry.type(description="One key of the engine's task payload `config`, as a form would offer it.")
class EngineField:
    max: Optional[float]
    min: Optional[float]
    step: Optional[float]
    type: EngineFieldType
    info: Optional[str]
    name: str
    label: Optional[str]
    options: Optional[list[EngineFieldPicklistOption]]
    default_value: Optional[str]
    default_values: Optional[list[str]]


@strawberry.type
class EngineTaskMetrics:
    cancelled_count: int
    completed_count: int
    failed_count: int
    pending_count: int
    queued_count: int
    running_count: int


@strawberry.input
class EngineFilter:
    """The filters of EngineFilter that mean something here (see the README for the rest)."""

    category: Optional[list[Optional[str]]] = None
    type: Optional[list[EngineTypeFilter]] = None
    deployment_model: Optional[DeploymentModel] = None
    trainable_via_api: Optional[bool] = None
    mode: Optional[list[EngineMode]] = None
    runtime_type: Optional[list[str]] = None


@strawberry.input
class EngineSortField:
    field: EngineOrderField
    direction: Optional[OrderDirection] = None


@strawberry.input
class TaskDateTimeFilter:
    field: TaskDateTimeField
    to_date_time: Optional[DateTime] = None
    from_date_time: Optional[DateTime] = None


def filter_dict(value: Optional[EngineFilter]) -> Optional[dict]:
    if value is None:
        return None
    return {
        "category": value.category,
        "type": [t.value for t in value.type] if value.type is not None else None,
        "deployment_model": value.deployment_model.value if value.deployment_model else None,
        "trainable_via_api": value.trainable_via_api,
        "mode": [m.value for m in value.mode] if value.mode is not None else None,
        "runtime_type": value.runtime_type,
    }


def order_pairs(value: Optional[list[Optional[EngineSortField]]]) -> list[tuple[str, bool]]:
    """price, rating and order have no value here: every engine ties on them, so they leave the default order."""
    return [(s.field.value, s.direction == OrderDirection.desc) for s in value or [] if s is not None]


def _fields_of(schema: list[dict]) -> list[EngineField]:
    out = []
    for option in schema or []:
        kind, default, choices = option.get("type"), option.get("default"), option.get("choices")
        options = None
        if kind == "bool":
            field_type, options = EngineFieldType.Picklist, ["true", "false"]
        elif choices:
            field_type, options = EngineFieldType.Picklist, [str(c) for c in choices]
        elif kind in ("int", "float"):
            field_type = EngineFieldType.Number
        else:
            field_type = EngineFieldType.Text
        out.append(EngineField(
            max=option.get("maximum"), min=option.get("minimum"),
            step=1.0 if kind == "int" and field_type is EngineFieldType.Number else None,
            type=field_type, info=option.get("description"), name=option["name"], label=option["name"],
            options=[EngineFieldPicklistOption(key=o, value=o) for o in options] if options is not None else None,
            default_value=None if default is None else (str(default).lower() if kind == "bool" else str(default)),
            default_values=None,
        ))
    return out


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

    # A category is not stored on its own (it follows from its engines' categoryId), so nobody writes what a stored
    # one would carry: these are null.
    description: Optional[str] = strawberry.field(resolver=lambda: None, description=NOT_STORED)
    icon_class: Optional[str] = strawberry.field(resolver=lambda: None, description=NOT_STORED)
    color: Optional[str] = strawberry.field(resolver=lambda: None, description=NOT_STORED)
    category_type: Optional[str] = strawberry.field(resolver=lambda: None, description=NOT_STORED)
    category_metadata_key: Optional[str] = strawberry.field(resolver=lambda: None, description=NOT_STORED)
    search_configuration: Optional[EngineSearchConfiguration] = strawberry.field(
        resolver=lambda: None, description="Null: results are JSON task outputs, not indexed for search.")
    created_by: Optional[str] = strawberry.field(resolver=lambda: None, description=NOT_STORED)
    modified_by: Optional[str] = strawberry.field(resolver=lambda: None, description=NOT_STORED)
    id: strawberry.ID
    name: str
    library_entity_identifier_type_ids: list[strawberry.ID]
    _engines: strawberry.Private[list[rows.Engine]]

    @strawberry.field
    async def library_entity_identifier_types(self, info: Info) -> EntityIdentifierTypeList:
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
        return EngineList.of(page, [Engine.from_row(r) for r in page.records])


@strawberry.type(name="EngineCategoryList")
class EngineCategoryList(Paginated[EngineCategory]):
    pass


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


# An engine's computed fields come first in the published schema. Strawberry lists a method resolver after every
# annotated field, so these are declared as annotated fields with a resolver, ahead of the stored ones.


async def _owner_organization(root: Engine, info: Info) -> Optional[Organization]:
    if root._row.org_id is None:
        return None
    # Visible external engines are the caller's organization's own.
    return Organization.from_row(await info.context.loaders.organization.load(root._row.org_id))


def _fields(root: Engine) -> list[EngineField]:
    return _fields_of(root._row.config_schema)


async def _tasks(
    root: Engine,
    info: Info,
    status: Optional[list[Optional[str]]] = None,
    offset: Optional[int] = 0,
    limit: Optional[int] = 30,
    id: Optional[strawberry.ID] = None,
    date_time_filter: Optional[list[Optional[TaskDateTimeFilter]]] = None,
    has_source_asset: Optional[bool] = None,
) -> TaskListRef:
    field, from_time, to_time = "createdDateTime", None, None
    for f in date_time_filter or []:
        if f is not None:
            field, from_time, to_time = f.field.value, f.from_date_time, f.to_date_time
    statuses = tuple(sorted({s for s in status if s is not None})) if status is not None else None
    key = (root._row.id, statuses, str(id) if id is not None else None, field, from_time, to_time, has_source_asset, offset, limit)
    page = await info.context.loaders.engine_task_page.load(key)
    task = lazy_class(TaskRef)
    return lazy_class(TaskListRef).of(page, [task.from_row(r) for r in page.records])


async def _task_metrics(
    root: Engine, info: Info, from_date_time: Optional[DateTime] = None, to_date_time: Optional[DateTime] = None
) -> EngineTaskMetrics:
    start, end = engine_service.metrics_window(from_date_time, to_date_time)
    counts = await info.context.loaders.engine_task_metrics.load((root._row.id, start, end))
    return EngineTaskMetrics(
        cancelled_count=counts.get("cancelled", 0), completed_count=counts.get("complete", 0),
        failed_count=counts.get("failed", 0), pending_count=counts.get("pending", 0),
        queued_count=counts.get("queued", 0), running_count=counts.get("running", 0),
    )


@strawberry.type
class Engine(EnginePlatformFields):
    owner_organization_id: strawberry.ID = strawberry.field(
        resolver=lambda root: strawberry.ID(str(root._row.org_id) if root._row.org_id else INSTALLATION_ORGANIZATION_ID),
        description="The owning organization; installed engines belong to no organization (the nil UUID).")
    owner_organization: Optional[Organization] = strawberry.field(resolver=_owner_organization)
    is_public: bool = strawberry.field(
        resolver=lambda root: root._row.org_id is None, description="True for installed engines (visible to every organization).")
    created_by: Optional[str] = strawberry.field(
        resolver=lambda root: root._row.created_by,
        description="The ID of the API token that registered it with createEngine; null for installed engines.")
    modified_by: Optional[str] = strawberry.field(
        resolver=lambda root: root._row.created_by, description="As createdBy: an engine is not changed after createEngine.")
    display_name: str = strawberry.field(resolver=lambda root: root._row.name)
    description: Optional[str] = strawberry.field(resolver=lambda root: root._row.description)
    application_id: Optional[strawberry.ID] = strawberry.field(
        resolver=lambda root: strawberry.ID(str(root._row.org_id)) if root._row.org_id else None,
        description="Here each organization is its own application: the owner's ID; null for installed engines.")
    creates_tdo: bool = strawberry.field(
        resolver=lambda: False, name="createsTDO", description="Always false: no engine here creates a media object (TDO).")
    deployment_model: Optional[DeploymentModel] = strawberry.field(
        resolver=lambda root: DeploymentModel.MostlyNetworkIsolated if root._row.org_id is None else None,
        description="Installed engines send nothing out (MostlyNetworkIsolated: they may fetch URLs); unknown for external ones.")
    mode: EngineMode = strawberry.field(
        resolver=lambda: EngineMode.Batch,
        description="Batch: a task reads its whole input (a library, or the media of a run) and answers once.")
    runtime_type: str = strawberry.field(
        resolver=lambda root: "worker" if root._row.builtin else "external",
        description="worker: runs in engineshed workers; external: claims its tasks through this API.")
    fields: list[EngineField] = strawberry.field(resolver=_fields, description="The keys of the task payload's `config` the engine accepts.")
    valid_state_actions: list[EngineStateAction] = strawberry.field(
        resolver=lambda: [], description="Empty: engines here change state only by installation or createEngine.")
    tasks: TaskListRef = strawberry.field(resolver=_tasks, description="The caller's organization's tasks of this engine, newest first.")
    task_metrics: EngineTaskMetrics = strawberry.field(
        resolver=_task_metrics,
        description="The caller's organization's tasks of this engine created in the range (at most 7 days; the last 7 by default).")
    dependency: Optional[EngineDependency] = strawberry.field(
        resolver=lambda: None, description="Null: no engine here consumes another engine's results.")
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


@strawberry.type(name="EngineList")
class EngineList(Paginated[Engine]):
    pass


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


@strawberry.type
class EngineQuery:
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
        return EngineList.of(page, [Engine.from_row(r) for r in page.records])

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
        categories = [category_of(group) for group in groups]
        return EngineCategoryList.sliced(categories, offset, limit, info.context.resources.settings.max_page_size)


@strawberry.type
class EngineMutation:
    @strawberry.mutation(description="Register an engine that runs elsewhere and claims its tasks through this API.")
    async def create_engine(self, info: Info, input: CreateEngine) -> Optional[Engine]:
        data = {"id": input.id, "name": input.name, "category_id": input.category_id,
                "identifier_type_ids": [str(t) for t in input.identifier_type_ids],
                "library_type_ids": [str(t) for t in input.library_type_ids or []], "modes": input.modes,
                "library_required": input.library_required, "concurrency_limit": input.concurrency_limit,
                "description": input.description}
        return Engine.from_row(await engine_service.create_external(info.context.resources, info.context.principal, data))
