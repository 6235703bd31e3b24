"""Recognition over time on video and long recordings: the ``recognizeMedia`` mutation (a job), the time-coded
segments it stores (``segments``, ``Task.segments``, ``Job.segments``), and a media task's ``engineResults`` in
the upstream shape (vtn-standard ``series``, a record per page of segments with its start and stop offsets)."""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.file_uploads import Upload

from gateway.schema.common import Paginated, lazy_class
from gateway.schema.context import Info
from gateway.services.access.paging import Page, check_page
from gateway.services.recognition import media as media_service

if TYPE_CHECKING:
    from gateway.schema.jobs import Job
    from storage.rows import SegmentRow
    from storage.rows import Task as TaskRow

JobRef = Annotated["Job", strawberry.lazy("gateway.schema.jobs")]

# Segments in one engineResults record: a record is a page of the media's series, as upstream chunks a long
# recording's results, so that a page of records stays bounded however long the media is.
SEGMENTS_PER_RESULT = 100


@strawberry.enum(description="What a media segment is: a face seen, or a voice heard.")
class MediaSegmentKind(Enum):
    face = "face"
    speaker = "speaker"


@strawberry.type(description="Where the face was in one sampled frame, in the frame's pixels.")
class MediaBox:
    seconds: float
    left: float
    top: float
    width: float
    height: float


@strawberry.type(description="The library entity a segment was recognized as.")
class MediaEntity:
    id: strawberry.ID
    name: str | None


@strawberry.type(description="A candidate for a segment's identity, above the threshold (best first).")
class MediaMatch:
    entity_id: strawberry.ID
    entity_name: str | None
    entity_identifier_id: strawberry.ID | None
    score: float


async def _thumbnail(root: MediaSegment, info: Info) -> str | None:
    if not root._row.has_thumbnail:
        return None
    jpeg = await media_service.thumbnail(info.context.resources, info.context.principal, root._row.task_id, root._row.seq)
    return None if jpeg is None else "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


@strawberry.type(description=(
    "One person seen (face) or heard (speaker) from startSeconds to endSeconds of the media. `label` is stable "
    "within one result: the entity ID when recognized, else unknown-face-N or unknown-speaker-N (one N per unknown "
    "person or voice); `entity` is null for an unknown."))
class MediaSegment:
    job_id: strawberry.ID
    task_id: strawberry.ID
    kind: MediaSegmentKind
    start_seconds: float
    end_seconds: float
    label: str
    entity: MediaEntity | None
    entity_id: strawberry.ID | None
    entity_name: str | None
    entity_identifier_id: strawberry.ID | None
    confidence: float = strawberry.field(description=(
        "The match score behind the identity (cosine); for an unknown, the best score any entity reached."))
    best_frame_seconds: float | None = strawberry.field(description=(
        "Faces: the time of the frame the identity was judged from; null for voices."))
    matches: list[MediaMatch]
    boxes: list[MediaBox] = strawberry.field(description="Faces: one box per sampled frame the face was found in.")
    has_thumbnail: bool
    thumbnail: str | None = strawberry.field(resolver=_thumbnail, description=(
        "Faces: a small JPEG of the best frame's face as a data: URI (read from storage only when asked for); "
        "null for voices."))
    _row: strawberry.Private[Any]

    @classmethod
    def from_row(cls, row: SegmentRow) -> MediaSegment:
        entity_id = strawberry.ID(str(row.entity_id)) if row.entity_id is not None else None
        return cls(
            job_id=strawberry.ID(str(row.job_id)), task_id=strawberry.ID(str(row.task_id)),
            kind=MediaSegmentKind(row.kind), start_seconds=row.start_s, end_seconds=row.end_s, label=row.label,
            entity=MediaEntity(id=entity_id, name=row.entity_name) if entity_id is not None else None,
            entity_id=entity_id, entity_name=row.entity_name,
            entity_identifier_id=strawberry.ID(str(row.identifier_id)) if row.identifier_id else None,
            confidence=row.confidence, best_frame_seconds=row.best_s,
            matches=[MediaMatch(entity_id=strawberry.ID(str(m["entityId"])), entity_name=m.get("entityName"),
                                entity_identifier_id=strawberry.ID(str(m["entityIdentifierId"]))
                                if m.get("entityIdentifierId") else None, score=m["score"])
                     for m in row.matches or []],
            boxes=[MediaBox(seconds=b["t"], left=b["left"], top=b["top"], width=b["width"], height=b["height"])
                   for b in row.boxes or []],
            has_thumbnail=row.has_thumbnail, _row=row,
        )


@strawberry.type(name="MediaSegmentList")
class MediaSegmentList(Paginated[MediaSegment]):
    pass


async def segment_page(info: Info, *, job_id: object = None, task_id: object = None,
                       kind: MediaSegmentKind | None = None, entity_id: object = None,
                       start: float | None = None, stop: float | None = None,
                       offset: int | None = 0, limit: int | None = 30) -> MediaSegmentList:
    """One page of segments in start order, as the service reads it."""
    offset, limit = check_page(offset, limit, info.context.resources.settings.max_page_size)
    records, total = await media_service.segments(
        info.context.resources, info.context.principal, job_id=job_id, task_id=task_id,
        kind=kind.value if kind is not None else None, entity_id=entity_id, start=start, stop=stop,
        offset=offset, limit=limit,
    )
    return MediaSegmentList.of(Page(records, offset, limit, total), [MediaSegment.from_row(r) for r in records])


SEGMENTS_DESCRIPTION = "This task's time-coded segments (a media task's); empty for other tasks."


async def task_segments(root: Any, info: Info, kind: MediaSegmentKind | None = None, offset: int | None = 0,
                        limit: int | None = 30) -> MediaSegmentList:
    """``Task.segments``."""
    return await segment_page(info, task_id=root._row.id, kind=kind, offset=offset, limit=limit)


async def job_segments(root: Any, info: Info, kind: MediaSegmentKind | None = None, offset: int | None = 0,
                       limit: int | None = 30) -> MediaSegmentList:
    """``Job.segments``."""
    return await segment_page(info, job_id=root._row.id, kind=kind, offset=offset, limit=limit)


@strawberry.type
class MediaQuery:
    @strawberry.field(description=(
        "The time-coded segments of a media job (jobId) or one of its tasks (taskId), in start order: optionally "
        "one kind, one entity, and those overlapping startSeconds-stopSeconds."))
    async def segments(
        self, info: Info, job_id: strawberry.ID | None = None, task_id: strawberry.ID | None = None,
        kind: MediaSegmentKind | None = None, entity_id: strawberry.ID | None = None,
        start_seconds: float | None = None, stop_seconds: float | None = None,
        offset: int | None = 0, limit: int | None = 30,
    ) -> MediaSegmentList:
        return await segment_page(info, job_id=job_id, task_id=task_id, kind=kind, entity_id=entity_id,
                                  start=start_seconds, stop=stop_seconds, offset=offset, limit=limit)


@strawberry.type
class MediaMutation:
    @strawberry.mutation(description=(
        "Recognize who appears (faces, in video) and who speaks (voices, in video or long audio) over time: a job "
        "whose one library-run task reads the media (an uploaded file, the plain form's file part, or a URL) on a "
        "worker and stores time-coded segments (`segments`, `engineResults`, GET /v3/jobs/{jobId}/timeline). Name "
        "the model as recognize does: libraryEngineModelId, or libraryId (and engineId). frameInterval: seconds "
        "between sampled video frames; speakers: how many voices the recording has, when known."))
    async def recognize_media(
        self, info: Info, library_engine_model_id: strawberry.ID | None = None,
        library_id: strawberry.ID | None = None, engine_id: strawberry.ID | None = None,
        file: Upload | None = None, url: str | None = None, frame_interval: float | None = None,
        speakers: int | None = None, top_k: int | None = None, threshold: float | None = None,
    ) -> JobRef:
        job = await media_service.start(
            info.context.resources, info.context.principal, model_id=library_engine_model_id, library_id=library_id,
            engine_id=engine_id, upload=file or info.context.form_file, url=url, frame_interval=frame_interval,
            speakers=speakers, top_k=top_k, threshold=threshold,
        )
        return lazy_class(JobRef).from_row(job)


# ---- engineResults of a media task ----


@dataclass(frozen=True, slots=True)
class ResultRecord:
    """One engineResults record: a task's output whole, or one page of a media task's series."""

    task: TaskRow
    start_ms: int | None
    stop_ms: int | None
    jsondata: Any


def is_media(task: TaskRow) -> bool:
    """A completed media task: its output says what media it read and how many segments it stored."""
    return isinstance(task.output, dict) and isinstance(task.output.get("media"), dict) \
        and isinstance(task.output.get("segments"), int)


def series_item(row: SegmentRow, library_id: str | None, frame: tuple[float, float] | None) -> dict[str, Any]:
    """A segment as a vtn-standard series item; a face's ``boundingPoly`` (0-1, relative to the frame) is its box
    in the best frame, given when the frame size is known."""
    name = row.entity_name if row.entity_id is not None else row.label
    obj: dict[str, Any] = {"type": row.kind, "entityId": str(row.entity_id) if row.entity_id is not None else None,
                           "libraryId": library_id, "label": name or row.label, "confidence": row.confidence}
    if row.identifier_id:
        obj["entityIdentifierId"] = str(row.identifier_id)
    item: dict[str, Any] = {"startTimeMs": round(row.start_s * 1000), "stopTimeMs": round(row.end_s * 1000),
                            "object": obj}
    if row.kind == "speaker":
        item["speakerId"] = row.label  # vtn-standard diarization names each voice per series item
    if row.kind == "face" and row.boxes and frame is not None:
        best = row.best_s if row.best_s is not None else row.boxes[0]["t"]
        box = min(row.boxes, key=lambda b: abs(b["t"] - best))
        width, height = frame
        left, top = box["left"] / width, box["top"] / height
        right, bottom = (box["left"] + box["width"]) / width, (box["top"] + box["height"]) / height
        obj["boundingPoly"] = [{"x": round(x, 6), "y": round(y, 6)} for x, y in
                               ((left, top), (right, top), (right, bottom), (left, bottom))]
    return item


def _frame(task: TaskRow) -> tuple[float, float] | None:
    media = task.output.get("media") or {}
    width, height = media.get("width"), media.get("height")
    if isinstance(width, (int, float)) and isinstance(height, (int, float)) and width > 0 and height > 0:
        return float(width), float(height)
    return None


async def result_records(info: Info, tasks: list[TaskRow], start_ms: int | None, stop_ms: int | None,
                         offset: int | None, limit: int | None) -> tuple[list[ResultRecord], int, int, int]:
    """One page of a job's engineResults: a record per non-media task (its output, as before) and, per media task,
    a record per ``SEGMENTS_PER_RESULT`` segments in start order (those overlapping startOffsetMs-stopOffsetMs
    when given), read a page at a time. Returns the records, the total, the offset and the limit."""
    res, principal = info.context.resources, info.context.principal
    offset, limit = check_page(offset, limit, res.settings.max_page_size)
    start = start_ms / 1000 if start_ms is not None else None
    stop = stop_ms / 1000 if stop_ms is not None else None
    slots: list[tuple[TaskRow, int | None]] = []  # (task, chunk index; None: the whole output)
    for task in tasks:
        if not is_media(task):
            slots.append((task, None))
            continue
        _, count = await media_service.segments(res, principal, task_id=task.id, start=start, stop=stop, offset=0, limit=1)
        slots.extend((task, n) for n in range(max(1, math.ceil(count / SEGMENTS_PER_RESULT))))
    records = []
    for task, chunk in slots[offset: offset + limit]:
        if chunk is None:
            records.append(ResultRecord(task, None, None, task.output))
            continue
        rows, _ = await media_service.segments(res, principal, task_id=task.id, start=start, stop=stop,
                                               offset=chunk * SEGMENTS_PER_RESULT, limit=SEGMENTS_PER_RESULT)
        library_id = task.output.get("libraryId") or (task.payload or {}).get("libraryId")
        frame = _frame(task)
        series = [series_item(r, str(library_id) if library_id else None, frame) for r in rows]
        first = min((s["startTimeMs"] for s in series), default=start_ms)
        last = max((s["stopTimeMs"] for s in series), default=stop_ms)
        records.append(ResultRecord(task, first, last, {"series": series}))
    return records, len(slots), offset, limit
