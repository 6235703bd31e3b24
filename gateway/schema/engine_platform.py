"""What the reference API's engines and engine categories carry from a hosted platform (deployable builds,
schedules, search indexing, marketplace listings) and engines here do not have. The types are published as the
reference schema declares them, so that clients' queries validate; the fields of Engine and EngineCategory that
return them answer null or empty, which is true here."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Annotated, Optional

import strawberry

from gateway.schema.common import Paginated
from gateway.schema.context import Info
from gateway.schema.scalars import DateTime, JSONData

if TYPE_CHECKING:
    from gateway.schema.engines import Engine

EngineRef = Annotated["Engine", strawberry.lazy("gateway.schema.engines")]

NOT_STORED = "Null: a category follows from its engines and is not stored or written on its own."


@strawberry.type
class AutocompleteFieldConfig:
    autocomplete_field: Optional[str]
    index_field: Optional[str]


@strawberry.type
class SearchFieldConfig:
    search_field: Optional[str]
    index_field: Optional[str]


@strawberry.type(description="How a category's results are indexed for search; results here are task outputs, not indexed.")
class EngineSearchConfiguration:
    autocomplete_fields: Optional[list[AutocompleteFieldConfig]]
    search_fields: Optional[list[SearchFieldConfig]]
    is_search_enabled: Optional[bool]
    is_elastic_enabled: Optional[bool]
    search_metadata_key: Optional[str]
    elastic_type: Optional[str]


@strawberry.enum
class BuildStatus(Enum):
    approved = "approved"
    available = "available"
    deleted = "deleted"
    deploying = "deploying"
    deployed = "deployed"
    fetching = "fetching"
    invalid = "invalid"
    paused = "paused"
    pending = "pending"
    uploaded = "uploaded"
    deployFailed = "deployFailed"


@strawberry.enum
class BuildUpdateAction(Enum):
    deploy = "deploy"
    pause = "pause"
    unpause = "unpause"
    approve = "approve"
    disapprove = "disapprove"
    invalidate = "invalidate"
    submit = "submit"
    upload = "upload"
    delete = "delete"


@strawberry.enum
class EngineScheduleType(Enum):
    Now = "Now"
    OnDemand = "OnDemand"
    Recurring = "Recurring"
    Continuous = "Continuous"


@strawberry.type(description=(
    "A deployable build (container image) of an engine on a hosted platform. Engines here have none: installed "
    "engines are Python packages of this installation, external ones run elsewhere."))
class Build:
    id: strawberry.ID
    name: Optional[str]
    description: Optional[str]
    created_date_time: Optional[DateTime]
    modified_date_time: Optional[DateTime]
    created_by: Optional[str]
    modified_by: Optional[str]
    engine_id: strawberry.ID
    engine: Optional[EngineRef]
    price: Optional[int]
    validate_uri: Optional[str]
    execute_uri: Optional[str]
    status: Optional[BuildStatus]
    docker_image: Optional[str]
    runtime: Optional[JSONData]
    version: Optional[str]
    report: Optional[JSONData]
    manifest: Optional[JSONData]
    preferred_input_format: Optional[str]
    supported_input_formats: Optional[list[str]]
    output_formats: Optional[list[str]]
    supported_source_types: Optional[list[str]]
    primary_action: Optional[BuildUpdateAction]
    secondary_actions: Optional[list[Optional[BuildUpdateAction]]]
    valid_state_actions: Optional[list[Optional[BuildUpdateAction]]]


@strawberry.type(name="BuildList")
class BuildList(Paginated[Build]):
    pass


def builds(
    info: Info,
    build_status: Optional[list[BuildStatus]] = None,
    status: Optional[list[Optional[str]]] = None,
    offset: Optional[int] = 0,
    limit: Optional[int] = 30,
    id: Optional[strawberry.ID] = None,
) -> BuildList:
    return BuildList.sliced([], offset, limit, info.context.resources.settings.max_page_size)


NO_BUILD = "Null: this comes from an engine's deployed build, and engines here have no builds."
NO_MARKETPLACE = "Null: engines here are not sold or listed in a marketplace."
NO_DEPLOYMENT = ("Null: nothing calls an engine here at a URL; installed engines run in engineshed workers and "
                  "external ones claim their tasks through this API.")


@strawberry.type
class EnginePlatformFields:
    """Engine's fields of a hosted platform: each null or empty here. Engine inherits them, so the published
    schema lists them first."""

    builds: Optional[BuildList] = strawberry.field(resolver=builds, description=(
        "Empty: engines here have no builds (installed engines are Python packages of this installation, external "
        "ones run elsewhere); `version` is the installed version."))
    deployed_version: Optional[int] = strawberry.field(resolver=lambda: None, description=f"{NO_BUILD} `version` is the installed version.")
    supported_input_formats: Optional[list[str]] = strawberry.field(resolver=lambda: None, description=NO_BUILD)
    preferred_input_format: Optional[str] = strawberry.field(resolver=lambda: None, description=NO_BUILD)
    output_formats: Optional[list[str]] = strawberry.field(resolver=lambda: None, description=NO_BUILD)
    supported_source_types: Optional[list[str]] = strawberry.field(resolver=lambda: None, description=NO_BUILD)
    supported_schedule_types: Optional[list[EngineScheduleType]] = strawberry.field(
        resolver=lambda: None, description="Null: there are no schedules; an engine's tasks run when their job is created.")
    has_scan_phase: Optional[bool] = strawberry.field(
        resolver=lambda: False, description="False: every engine reads its whole input in one pass (mode Batch).")
    oauth: Optional[str] = strawberry.field(resolver=lambda: None, description="Null: no engine here signs in to another service for its user.")
    price: Optional[int] = strawberry.field(resolver=lambda: None, description=NO_MARKETPLACE)
    rating: Optional[int] = strawberry.field(resolver=lambda: None, description=NO_MARKETPLACE)
    website: Optional[str] = strawberry.field(resolver=lambda: None, description=NO_MARKETPLACE)
    asset: Optional[str] = strawberry.field(resolver=lambda: None, description=NO_MARKETPLACE)
    logo_path: Optional[str] = strawberry.field(resolver=lambda: None, description=NO_MARKETPLACE)
    icon_path: Optional[str] = strawberry.field(resolver=lambda: None, description=NO_MARKETPLACE)
    signed_icon_path: Optional[str] = strawberry.field(resolver=lambda: None, description=NO_MARKETPLACE)
    signed_logo_path: Optional[str] = strawberry.field(resolver=lambda: None, description=NO_MARKETPLACE)
    validate_uri: Optional[str] = strawberry.field(resolver=lambda: None, description=NO_DEPLOYMENT)
    execute_uri: Optional[str] = strawberry.field(resolver=lambda: None, description=NO_DEPLOYMENT)
