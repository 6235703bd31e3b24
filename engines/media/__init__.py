"""Time-coded recognition on video and long recordings: what an engine answers, and what it is asked.

A media engine (the face engine on video, the speaker engine on long audio or a video's audio track) reads a
file on local disk in bounded memory and yields :class:`Segment` s as they become final, so that a worker can
store them page by page while it runs. Segments are in seconds from the start of the media.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from engines.interface import Match

__all__ = ["FrameBox", "MediaEngine", "MediaOptions", "Progress", "Segment", "UNKNOWN_FACE", "UNKNOWN_SPEAKER"]

UNKNOWN_FACE = "unknown-face-"  # + a number: a person seen but not recognized, stable within one result
UNKNOWN_SPEAKER = "unknown-speaker-"  # + a number: a voice heard but not recognized, stable within one result

SegmentKind = Literal["face", "speaker"]

# Called with the fraction of the media done (0-1) and a short message; awaiting it is where a run is cancelled.
Progress = Callable[[float, str | None], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class MediaOptions:
    """What the caller chose for one run; every field has a default a user can rely on."""

    frame_interval: float = 0.5  # seconds between sampled video frames (2 per second)
    speakers: int | None = None  # how many speakers the recording has, when the caller knows
    top_k: int = 5  # candidates kept per segment
    threshold: float | None = None  # None: the model's calibrated threshold
    max_seconds: float = 4 * 3600.0  # longer media is refused before any work


@dataclass(frozen=True, slots=True)
class FrameBox:
    """Where a face was in one sampled frame, in the frame's pixels."""

    time: float
    left: float
    top: float
    width: float
    height: float


@dataclass(frozen=True, slots=True)
class Segment:
    """One person seen (``face``) or heard (``speaker``) from ``start`` to ``end`` seconds.

    ``label`` is stable within one result: the entity id when recognized, else ``unknown-face-N`` or
    ``unknown-speaker-N`` (one N per unknown person/voice). ``confidence`` is the match score behind the
    identity (cosine); for an unknown, the best score any library entity reached (below the threshold).
    """

    kind: SegmentKind
    start: float
    end: float
    label: str
    entity_id: str | None
    entity_name: str | None
    identifier_id: str | None
    confidence: float
    matches: tuple[Match, ...] = ()  # candidates above the threshold, best first (at most top_k)
    best_time: float | None = None  # face: the timestamp of the frame the identity was judged best from
    boxes: tuple[FrameBox, ...] = ()  # face: one box per sampled frame the face was found in
    thumbnail: bytes | None = field(default=None, repr=False)  # face: a small JPEG of the best frame's face


@runtime_checkable
class MediaEngine(Protocol):
    """An engine that recognizes over time. ``path`` is a local file (video or audio, any container the ``av``
    wheels read); the engine refuses media it cannot read with engines.interface.EngineError naming why."""

    def recognize_media(
        self, artifact: bytes, path: str, options: MediaOptions, *, execution_provider: str,
        pool: Executor | None, progress: Progress,
    ) -> AsyncIterator[Segment]:
        """Segments as they become final (not necessarily in start order); the whole run in bounded memory.
        Implemented as an async generator (``async def`` with ``yield``)."""
        ...
