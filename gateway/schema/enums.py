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
