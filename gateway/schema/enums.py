"""Enums, with members named exactly as the wire spells them (Strawberry publishes member names)."""

from __future__ import annotations

from enum import Enum

import strawberry


@strawberry.enum
class OrderDirection(Enum):
    asc = "asc"
    desc = "desc"


@strawberry.enum
class LibraryOrderBy(Enum):
    id = "id"
    name = "name"
    createdDateTime = "createdDateTime"
    modifiedDateTime = "modifiedDateTime"
    version = "version"
    lastTrainedDateTime = "lastTrainedDateTime"


@strawberry.enum
class LibraryEntityOrderBy(Enum):
    id = "id"
    name = "name"
    createdDateTime = "createdDateTime"
    modifiedDateTime = "modifiedDateTime"


@strawberry.enum
class LibraryEngineModelTrainStatus(Enum):
    pending = "pending"
    queued = "queued"
    complete = "complete"
    failed = "failed"
    running = "running"


@strawberry.enum
class TaskStatus(Enum):
    pending = "pending"
    running = "running"
    complete = "complete"
    queued = "queued"
    accepted = "accepted"
    failed = "failed"
    cancelled = "cancelled"
    # The API's standby, pause-and-resume and abort states: no task here is ever in them (a task that
    # waits for a retry is queued; one stopped on request is cancelled), so as filters they match nothing.
    standby_pending = "standby_pending"
    waiting = "waiting"
    resuming = "resuming"
    aborted = "aborted"


@strawberry.enum
class SetEntityProfileImage(Enum):
    none = "none"
    ifNotSet = "ifNotSet"
    always = "always"


@strawberry.enum
class JobStatus(Enum):
    pending = "pending"
    complete = "complete"
    running = "running"
    cancelled = "cancelled"
    queued = "queued"
    failed = "failed"


@strawberry.enum
class JobStatusFilter(Enum):
    pending = "pending"
    running = "running"
    complete = "complete"
    cancelled = "cancelled"
    queued = "queued"
    failed = "failed"


@strawberry.enum
class EntityIdentifierDataType(Enum):
    image = "image"
    audio = "audio"
    video = "video"
    text = "text"
    pdf = "pdf"


@strawberry.enum
class JobDateTimeField(Enum):
    createdDateTime = "createdDateTime"
    modifiedDateTime = "modifiedDateTime"


@strawberry.enum
class JobOrderField(Enum):
    createdDateTime = "createdDateTime"
    modifiedDateTime = "modifiedDateTime"
    displayName = "displayName"  # the client's list(order_by="display_name")


# ---- engines, as the reference schema spells them ----


@strawberry.enum
class EngineState(Enum):
    active = "active"
    disabled = "disabled"
    pending = "pending"
    deleted = "deleted"
    draft = "draft"
    ready = "ready"


@strawberry.enum
class EngineStateAction(Enum):
    edit = "edit"
    delete = "delete"
    disable = "disable"
    enable = "enable"
    undelete = "undelete"


@strawberry.enum
class EngineMode(Enum):
    Chunk = "Chunk"
    Stream = "Stream"
    Batch = "Batch"


@strawberry.enum
class DeploymentModel(Enum):
    FullyNetworkIsolated = "FullyNetworkIsolated"
    MostlyNetworkIsolated = "MostlyNetworkIsolated"
    NonNetworkIsolated = "NonNetworkIsolated"
    HumanReview = "HumanReview"


@strawberry.enum
class EngineTypeFilter(Enum):
    Cognition = "Cognition"
    Ingestion = "Ingestion"
    Aggregator = "Aggregator"


@strawberry.enum
class EngineFieldType(Enum):
    Number = "Number"
    Picklist = "Picklist"
    MultiPicklist = "MultiPicklist"
    Text = "Text"
    SchemaSelection = "SchemaSelection"


@strawberry.enum
class EngineOrderField(Enum):
    name = "name"
    id = "id"
    state = "state"
    price = "price"
    rating = "rating"
    order = "order"
    createdDateTime = "createdDateTime"
    modifiedDateTime = "modifiedDateTime"


@strawberry.enum
class TaskDateTimeField(Enum):
    createdDateTime = "createdDateTime"
    modifiedDateTime = "modifiedDateTime"
