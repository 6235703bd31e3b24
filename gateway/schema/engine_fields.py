"""The reference schema's Engine fields beyond the core, and the inputs that filter and sort engines."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import strawberry

from gateway.schema.context import Info
from gateway.schema.enums import (
    DeploymentModel,
    EngineFieldType,
    EngineMode,
    EngineOrderField,
    EngineStateAction,
    EngineTypeFilter,
    OrderDirection,
    TaskDateTimeField,
)
from gateway.schema.paging import page_fields
from gateway.schema.scalars import DateTime
from gateway.services import engines as engine_service
from storage import rows

if TYPE_CHECKING:
    from gateway.schema.caller import Organization
    from gateway.schema.jobs import TaskList

# Installed engines belong to the installation, not to an organization; ownerOrganizationId is non-null upstream.
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
    """The filters of upstream's EngineFilter that mean something here (see the README for the rest)."""

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
class EngineReferenceFields:
    """Mixed into Engine: each resolver reads the engine row (`_row`)."""

    _row: strawberry.Private[rows.Engine]

    @strawberry.field(description="The owning organization; installed engines belong to no organization (the nil UUID).")
    def owner_organization_id(self) -> strawberry.ID:
        return strawberry.ID(str(self._row.org_id) if self._row.org_id else INSTALLATION_ORGANIZATION_ID)

    @strawberry.field
    async def owner_organization(self, info: Info) -> Optional[Annotated[Organization, strawberry.lazy("gateway.schema.caller")]]:
        from gateway.schema.caller import Organization

        if self._row.org_id is None:
            return None
        # Visible external engines are the caller's organization's own.
        return Organization.from_row(await info.context.loaders.organization.load(self._row.org_id))

    @strawberry.field(description="True for installed engines (visible to every organization).")
    def is_public(self) -> bool:
        return self._row.org_id is None

    @strawberry.field(description="The ID of the API token that registered it with createEngine; null for installed engines.")
    def created_by(self) -> Optional[str]:
        return self._row.created_by

    @strawberry.field(description="As createdBy: an engine is not changed after createEngine.")
    def modified_by(self) -> Optional[str]:
        return self._row.created_by

    @strawberry.field
    def display_name(self) -> str:
        return self._row.name

    @strawberry.field
    def description(self) -> Optional[str]:
        return self._row.description

    @strawberry.field(description="Here each organization is its own application: the owner's ID; null for installed engines.")
    def application_id(self) -> Optional[strawberry.ID]:
        return strawberry.ID(str(self._row.org_id)) if self._row.org_id else None

    @strawberry.field(name="createsTDO", description="Always false: no engine here creates a media object (TDO).")
    def creates_tdo(self) -> bool:
        return False

    @strawberry.field(description="Installed engines send nothing out (MostlyNetworkIsolated: they may fetch URLs); unknown for external ones.")
    def deployment_model(self) -> Optional[DeploymentModel]:
        return DeploymentModel.MostlyNetworkIsolated if self._row.org_id is None else None

    @strawberry.field(description="Batch: a task reads its whole input (a library, or the media of a run) and answers once.")
    def mode(self) -> EngineMode:
        return EngineMode.Batch

    @strawberry.field(description="worker: runs in engineshed workers; external: claims its tasks through this API.")
    def runtime_type(self) -> str:
        return "worker" if self._row.builtin else "external"

    @strawberry.field(description="The keys of the task payload's `config` the engine accepts.")
    def fields(self) -> list[EngineField]:
        return _fields_of(self._row.config_schema)

    @strawberry.field(description="Empty: engines here change state only by installation or createEngine.")
    def valid_state_actions(self) -> list[EngineStateAction]:
        return []

    @strawberry.field(description="The caller's organization's tasks of this engine, newest first.")
    async def tasks(
        self,
        info: Info,
        status: Optional[list[Optional[str]]] = None,
        offset: Optional[int] = 0,
        limit: Optional[int] = 30,
        id: Optional[strawberry.ID] = None,
        date_time_filter: Optional[list[Optional[TaskDateTimeFilter]]] = None,
        has_source_asset: Optional[bool] = None,
    ) -> Annotated[TaskList, strawberry.lazy("gateway.schema.jobs")]:
        from gateway.schema.jobs import Task, TaskList

        field, from_time, to_time = "createdDateTime", None, None
        for f in date_time_filter or []:
            if f is not None:
                field, from_time, to_time = f.field.value, f.from_date_time, f.to_date_time
        statuses = tuple(sorted({s for s in status if s is not None})) if status is not None else None
        key = (self._row.id, statuses, str(id) if id is not None else None, field, from_time, to_time, has_source_asset, offset, limit)
        page = await info.context.loaders.engine_task_page.load(key)
        return TaskList(**page_fields(page, [Task.from_row(r) for r in page.records]))

    @strawberry.field(description="The caller's organization's tasks of this engine created in the range (at most 7 days; the last 7 by default).")
    async def task_metrics(
        self, info: Info, from_date_time: Optional[DateTime] = None, to_date_time: Optional[DateTime] = None
    ) -> EngineTaskMetrics:
        start, end = engine_service.metrics_window(from_date_time, to_date_time)
        counts = await info.context.loaders.engine_task_metrics.load((self._row.id, start, end))
        return EngineTaskMetrics(
            cancelled_count=counts.get("cancelled", 0), completed_count=counts.get("complete", 0),
            failed_count=counts.get("failed", 0), pending_count=counts.get("pending", 0),
            queued_count=counts.get("queued", 0), running_count=counts.get("running", 0),
        )


__all__ = ["EngineFilter", "EngineReferenceFields", "EngineSortField", "TaskDateTimeFilter", "filter_dict", "order_pairs"]
