"""The shapes of the records the client returns: plain dicts as the API sends them, typed for editors and checkers."""

from __future__ import annotations

from typing import Any, Generic, TypedDict, TypeVar

T = TypeVar("T")


class Page(TypedDict, Generic[T]):
    """A list in the API's ``{offset limit count totalCount records}`` shape."""

    offset: int
    limit: int
    count: int
    totalCount: int
    records: list[T]


class Model(TypedDict, total=False):
    """A registered model version (``RegisteredModel``)."""

    id: str
    name: str
    version: int
    ref: str
    application: str
    system: bool
    status: str
    error: str | None
    description: str
    labels: dict[str, str]
    classLabels: list[str] | None
    dimension: int | None
    aliases: list[str]
    sha256: str
    sizeBytes: float
    createdDateTime: str


class Library(TypedDict, total=False):
    id: str
    name: str
    description: str | None
    libraryTypeId: str
    version: int
    organizationId: str
    createdDateTime: str


class Identifier(TypedDict, total=False):
    """An entity identifier; ``contentSha256`` is the stored content's digest."""

    id: str
    entityId: str
    identifierTypeId: str
    title: str | None
    contentType: str
    contentSha256: str | None
    contentLength: float | None
    createdDateTime: str


class Task(TypedDict, total=False):
    id: str
    engineId: str
    status: str
    progress: float
    progressMessage: str | None
    failureReason: str | None
    failureMessage: str | None
    startedDateTime: str | None
    completedDateTime: str | None


class Job(TypedDict, total=False):
    """A job; ``tasks.records`` its tasks. ``libraryEngineModelId`` is added by ``train``."""

    id: str
    name: str | None
    status: str
    libraryId: str | None
    createdDateTime: str
    modifiedDateTime: str
    tasks: dict[str, list[Task]]
    libraryEngineModelId: str


class SkipReason(TypedDict):
    """The identifiers one reason skipped: ``count`` all of them, ``identifiers`` the first (``capped``: more exist)."""

    reason: str
    count: int
    message: str
    capped: bool
    identifiers: list[dict[str, Any]]


class EntityWithoutIdentifiers(TypedDict):
    """An entity a training left with no usable identifier; ``reason``: all-skipped, no-identifier or not-used."""

    id: str
    name: str
    reason: str
    message: str


class TrainingReport(TypedDict):
    """What a completed training used and left out (``LibraryEngineModel.trainingReport``)."""

    recorded: bool
    identifiersUsed: int | None
    identifiersSkipped: int
    entitiesUsed: int | None
    skipped: list[SkipReason]
    entitiesWithoutIdentifiers: list[EntityWithoutIdentifiers]
    entitiesWithoutIdentifiersCount: int
    entitiesWithoutIdentifiersCapped: bool


class LibraryEngineModel(TypedDict, total=False):
    id: str
    engineId: str
    libraryId: str
    libraryVersion: int
    trainJobId: str | None
    trainStatus: str
    accuracy: float | None
    embeddingModel: str | None
    isDefault: bool
    aliases: list[str]
    name: str | None
    createdDateTime: str
    trainingReport: TrainingReport | None


class RecognitionMatch(TypedDict):
    libraryId: str
    entityId: str
    entityName: str
    entityIdentifierId: str | None
    score: float


class BoundingBox(TypedDict):
    left: float
    top: float
    width: float
    height: float


class RecognizedFace(TypedDict):
    """One face a face engine found: its box and landmarks in the photo's pixels, and its matches, best first."""

    box: BoundingBox
    landmarks: list[dict[str, float]]
    detectionScore: float
    matches: list[RecognitionMatch]


class RecognitionResult(TypedDict, total=False):
    libraryEngineModelId: str | None
    libraryId: str | None
    engineId: str | None
    modelId: str | None
    threshold: float | None
    matches: list[RecognitionMatch]
    labels: list[dict[str, Any]]
    windows: list[dict[str, float]]
    faces: list[RecognizedFace]  # a face engine's answer, largest face first; empty for other engines
