"""Rows as frozen dataclasses: what the queries return and the services hand around."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

T = TypeVar("T", bound="Row")


class Row:
    @classmethod
    def of(cls: type[T], record: Any) -> T:
        names = cls._field_names()  # type: ignore[attr-defined]
        return cls(**{name: record[name] for name in names})

    @classmethod
    def maybe(cls: type[T], record: Any) -> T | None:
        return None if record is None else cls.of(record)

    @classmethod
    def _field_names(cls) -> tuple[str, ...]:
        cached = cls.__dict__.get("_names")
        if cached is None:
            cached = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
            type.__setattr__(cls, "_names", cached)
        return cached


@dataclass(frozen=True, slots=True)
class Organization(Row):
    id: UUID
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ApiToken(Row):
    id: UUID
    org_id: UUID
    scope: str
    engine_id: str | None
    task_id: UUID | None
    lease_owner: str | None
    expires_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class ListedToken(Row):
    """A token as its organization's admins see it: never the secret (only its hash is stored)."""

    id: UUID
    scope: str
    engine_id: str | None
    label: str | None
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class IdentifierType(Row):
    id: str
    label: str
    label_plural: str
    description: str | None
    data_type: str
    org_id: UUID | None  # None: built in, read-only
    icon_class: str | None


@dataclass(frozen=True, slots=True)
class LibraryType(Row):
    id: str
    label: str
    entity_type_name: str
    entity_type_name_plural: str
    identifier_type_ids: list[str]
    org_id: UUID | None  # None: built in, read-only
    icon_class: str | None
    entity_type_schema: Any


@dataclass(frozen=True, slots=True)
class Library(Row):
    id: UUID
    org_id: UUID
    name: str
    description: str | None
    library_type_id: str
    cover_image_url: str | None
    version: int
    last_trained_version: int | None
    last_trained_at: datetime | None
    created_at: datetime
    modified_at: datetime
    created_by: str | None
    modified_by: str | None


@dataclass(frozen=True, slots=True)
class Entity(Row):
    id: UUID
    org_id: UUID
    library_id: UUID
    name: str
    description: str | None
    jsondata: Any
    profile_image_url: str | None
    is_published: bool
    created_at: datetime
    modified_at: datetime
    created_by: str | None
    modified_by: str | None
    profile_identifier_id: UUID | None


@dataclass(frozen=True, slots=True)
class Identifier(Row):
    id: UUID
    org_id: UUID
    library_id: UUID
    entity_id: UUID | None  # None: unassigned (a library's identifier that belongs to no entity yet)
    identifier_type_id: str
    title: str | None
    is_priority: bool
    storage_key: str | None
    reference_url: str | None
    content_type: str
    content_length: int | None
    content_sha256: str | None
    jsondata: Any
    created_at: datetime
    modified_at: datetime
    annotation_type: str  # raw | machine | human
    hard: bool  # flagged by active learning (findHardExamples)
    hard_coefficient: float | None
    unique_name: str | None = None  # uniqueName, unique within the library


@dataclass(frozen=True, slots=True)
class Engine(Row):
    id: str
    org_id: UUID | None
    name: str
    category_id: str
    identifier_type_ids: list[str]
    library_type_ids: list[str]
    modes: list[str]
    library_required: bool
    concurrency_limit: int
    builtin: bool
    version: str
    config_schema: Any
    state: str
    created_at: datetime
    modified_at: datetime
    description: str | None
    created_by: str | None


@dataclass(frozen=True, slots=True)
class EngineModel(Row):
    id: UUID
    org_id: UUID
    library_id: UUID
    engine_id: str
    library_version: int
    train_job_id: UUID | None
    train_status: str
    storage_key: str | None
    data_url: str | None
    content_type: str | None
    jsondata: Any
    accuracy: float | None
    created_at: datetime
    modified_at: datetime
    model_version_id: UUID | None  # the registered embedding model it was trained on; None: pixel-projection
    name: str | None
    description: str | None
    changelog: str | None
    labels: Any  # {key: value}, checked by gateway.services.access.job_labels
    parent_model_id: UUID | None  # the model it was retrained from
    aliases: list[str]
    is_default: bool  # what recognize and library-run use for its (library, engine) when no model is named
    auto_promote: bool  # becomes the default when it completes even if it scores worse than the default
    promotion: Any  # what was compared when it completed: {promoted, accuracy, previousAccuracy, ...}


@dataclass(frozen=True, slots=True)
class Job(Row):
    id: UUID
    org_id: UUID
    name: str | None
    cluster_id: str | None
    status: str
    library_id: UUID | None
    created_at: datetime
    modified_at: datetime
    created_by: str | None
    modified_by: str | None
    display_name: str | None
    labels: Any  # {key: value}, checked by gateway.services.access.job_labels


@dataclass(frozen=True, slots=True)
class Task(Row):
    id: UUID
    org_id: UUID
    job_id: UUID
    engine_id: str
    position: int
    status: str
    payload: Any
    output: Any
    progress: float
    progress_message: str | None
    attempts: int
    max_attempts: int
    run_after: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None
    cancel_requested: bool
    failure_reason: str | None
    failure_message: str | None
    created_at: datetime
    modified_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    test_task: bool


@dataclass(frozen=True, slots=True)
class SegmentRow(Row):
    """One person seen (``face``) or heard (``speaker``) in a media task, from ``start_s`` to ``end_s`` seconds."""

    task_id: UUID
    job_id: UUID
    seq: int  # unique within the task; not in start order (order by start_s, then seq)
    kind: str  # face | speaker
    start_s: float
    end_s: float
    label: str  # the entity id, or unknown-face-N / unknown-speaker-N, stable within the task's result
    entity_id: str | None
    entity_name: str | None
    identifier_id: str | None
    confidence: float
    best_s: float | None  # face: the timestamp of the frame the identity was judged from
    matches: Any  # [{entityId, entityName, entityIdentifierId, score}], best first
    boxes: Any  # [{t, left, top, width, height}]
    has_thumbnail: bool


@dataclass(frozen=True, slots=True)
class ModelVersion(Row):
    """One version of a registered model, with its model's name, application and aliases joined in."""

    id: UUID
    organization_id: UUID | None  # None: a system model, visible to every organization
    name: str
    version: int
    application: str  # embedding | auto_tagging | auto_annotation
    status: str  # validating | ready | failed
    error: str | None
    sha256: str
    size_bytes: int
    blob_key: str
    manifest: Any
    dimension: int | None
    labels: list[str] | None  # ordered class labels
    source: Any
    aliases: list[str]
    created_at: datetime
    modified_at: datetime
    model_id: UUID
    description: str
    tags: Any  # the user's key/value labels
    throughput: float | None
    throughput_batch: int | None
    provider: str | None
    validation: Any

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"
