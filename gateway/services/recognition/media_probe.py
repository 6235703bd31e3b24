"""What a media file is, from its container's headers: a still image, a video, audio, or unreadable.

A video (a video stream of more than one frame) or a recording longer than its engine recognizes in one call
runs as a media job (time-coded segments, gateway/worker/media_tasks.py); anything else keeps the one-shot
path (one result per photo or short recording). Probing reads headers only (FFmpeg's, through ``av``), never
decodes the whole file, and blocks: run it in a thread.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from typing import Any, Literal

from gateway.services.ingest.content_sniff import HEAD_BYTES, image_type

# How long a recording an engine recognizes in one call when it does not say (the speaker engine's default
# maxAudioSeconds): a longer one is several voices over time, not one utterance.
DEFAULT_INLINE_SECONDS = 600.0

MediaKind = Literal["image", "video", "audio"]


@dataclass(frozen=True, slots=True)
class MediaInfo:
    kind: MediaKind | None  # None: no container FFmpeg reads (the engine says what is wrong with it)
    duration: float | None  # seconds, when the container says

    def is_long(self, inline_seconds: float) -> bool:
        """Whether this needs a media job: a video, or audio longer than ``inline_seconds``."""
        if self.kind == "video":
            return True
        return self.kind == "audio" and (self.duration or 0.0) > inline_seconds


def probe(source: str | bytes) -> MediaInfo:
    """A file path or the bytes themselves; blocking."""
    if isinstance(source, bytes):
        head = source[:HEAD_BYTES]
    else:
        with open(source, "rb") as file:
            head = file.read(HEAD_BYTES)
    if image_type(head) is not None:  # formats the photo decoders read, animated GIFs included
        return MediaInfo("image", None)
    import av

    try:
        opened = io.BytesIO(source) if isinstance(source, bytes) else source
        with av.open(opened, mode="r", metadata_errors="ignore") as container:
            return _info(container)
    except Exception:  # noqa: BLE001 - av.error.* and ValueError: not a container FFmpeg reads
        return MediaInfo(None, None)


def _info(container: Any) -> MediaInfo:
    import av

    duration = float(container.duration) / av.time_base if container.duration else None
    pictures = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if pictures:
        stream = pictures[0]
        stream_seconds = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
        seconds = duration or stream_seconds
        single = container.format.name.endswith("_pipe") or container.format.name == "image2"
        if stream.frames > 1 or (not single and stream.frames == 0 and (seconds or 0.0) > 0.0):
            return MediaInfo("video", seconds)
        if not container.streams.audio:
            return MediaInfo("image", None)
    if container.streams.audio:
        stream = container.streams.audio[0]
        stream_seconds = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
        return MediaInfo("audio", duration or stream_seconds)
    return MediaInfo(None, duration)


async def probe_async(source: str | bytes) -> MediaInfo:
    return await asyncio.to_thread(probe, source)


async def inline_seconds(engine: Any, artifact: bytes | None, provider: str) -> float:
    """How long a recording the engine's one-shot ``recognize`` takes with this artifact: the engine says so with
    an ``inline_seconds(artifact, execution_provider)`` method when it has one, else DEFAULT_INLINE_SECONDS."""
    say = getattr(engine, "inline_seconds", None)
    if callable(say) and artifact is not None:
        try:
            return float(await asyncio.to_thread(say, artifact, provider))
        except Exception:  # noqa: BLE001 - an artifact the engine cannot read: its recognize will say why
            return DEFAULT_INLINE_SECONDS
    return DEFAULT_INLINE_SECONDS


def is_media_engine(engine: Any) -> bool:
    from engines.media import MediaEngine

    return engine is not None and isinstance(engine, MediaEngine)
