"""Video files: what they hold (:func:`probe`) and their frames sampled on a time grid (:func:`sample_frames`).

Sampling takes, for each grid time ``k * interval``, the first decoded frame at or after it (one frame is
sampled once, at its own timestamp, when it is the first for several grid times: a video of fewer frames per
second than the grid). FFmpeg (PyAV) converts each sampled frame to RGB uint8, scaled so its longer side is at
most ``max_side``, and turned upright by the stream's display matrix (phones store portrait video sideways).

Decoding runs in the caller's executor (the worker's decode processes) in time chunks: each chunk seeks to the
keyframe before its start and decodes to its end, so a two-hour video is never in memory: at most
``ahead`` chunks are in flight, each holding at most CHUNK_BYTES of frames.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import math
import os
import re
import sys
import time
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from engines.interface import EngineError

__all__ = ["Chunk", "MediaInfo", "VideoFrame", "decode_chunk", "plan_chunks", "probe", "sample_frames"]

CHUNK_BYTES = 48 * 1024 * 1024  # the most frame bytes one chunk returns: bounds memory whatever the video's size
CHUNK_SECONDS = (2.0, 10.0)  # a chunk covers at least / at most this much video (each re-decodes from a keyframe)
AHEAD = 3  # chunks in flight at once
TRUNCATED_SLACK = 1.5  # s: a video stream ending this much before its header's duration was cut short


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What a media file holds, read from its header (and its first video frame, for the rotation)."""

    duration: float  # seconds
    width: int  # display pixels (after rotation)
    height: int
    fps: float | None  # the video stream's average frame rate
    has_video: bool
    has_audio: bool
    container: str  # FFmpeg's demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2" or "matroska,webm"
    video_stream: int | None = None  # index of the video stream decoded
    origin: float = 0.0  # the container's start time: media times are seconds from it
    rotation: int = 0  # degrees counterclockwise the stored frames are turned to be shown upright
    video_duration: float | None = None  # the video stream's own duration, where the header says


@dataclass(frozen=True, slots=True)
class VideoFrame:
    time: float  # seconds from the media's start
    image: np.ndarray  # uint8 [H, W, 3] RGB, upright
    scale: float  # display pixels per image pixel (>= 1: boxes in the image times this are in display pixels)


@dataclass(frozen=True, slots=True)
class Chunk:
    """What one chunk's decoding gives back (picklable: it crosses from a decode process)."""

    frames: list[tuple[float, np.ndarray]]
    last_time: float | None  # the last frame decoded (sampled or not)
    ended: bool  # the stream ended before the chunk's end
    error: str | None  # FFmpeg's reason where decoding failed
    cpu_seconds: float


@functools.cache
def _libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6") if sys.platform.startswith("linux") else None
    except OSError:
        return None


def release_freed_memory() -> None:
    """Hand freed heap memory back to the system (glibc ``malloc_trim``; elsewhere nothing).

    Frames (hundreds of KiB each) and the detector's tensors (MiBs) are freed as fast as they are made; glibc
    then raises its mmap threshold and serves such blocks from the heap, whose freed pages it keeps: over 12
    minutes of 640×480 video the face pipeline's peak RSS grew from 440 to 600-730 MiB without this (2 arenas),
    and stays near 300 MiB with it. Once per chunk: the pages handed back fault in again when next used, which
    once per frame cost 8 % more CPU.
    """
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def _av_error() -> type[Exception]:
    import av

    return av.FFmpegError


def probe(path: str, *, max_seconds: float | None = None, need_video: bool = True) -> MediaInfo:
    """The file's streams, duration and display size; EngineError naming why when it is not usable media.

    Refused: a file FFmpeg cannot read as media, one without a video stream (when ``need_video``), one whose
    first video frame cannot be decoded, and one longer than ``max_seconds`` (before any decoding).
    """
    import av

    try:
        if os.path.getsize(path) == 0:
            raise EngineError("the file is empty (0 bytes)")
        container = av.open(path, "r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise EngineError(
            f"the file is not a video or audio file FFmpeg can read, or it is damaged or truncated: {_reason(exc)}"
        ) from None
    with container:
        videos = [s for s in container.streams.video if s.codec_context is not None]
        audios = list(container.streams.audio)
        stream = videos[0] if videos else None
        if stream is None and need_video:
            held = "an audio file" if audios else "a file without audio or video streams"
            raise EngineError(f"the file has no video stream ({held}, {container.format.name}): faces need a video")
        origin = container.start_time / 1e6 if container.start_time is not None else 0.0
        duration = _duration(container, stream)
        if duration is None or duration <= 0:
            raise EngineError("the media's duration is unknown or zero: the file is empty, truncated or not media")
        if max_seconds is not None and duration > max_seconds:
            raise EngineError(
                f"the media is {duration:.1f} s long, over the {max_seconds:g} s this run accepts: split it or raise "
                "the limit")
        width = height = rotation = 0
        fps = None
        video_duration = None
        if stream is not None:
            width, height, rotation = _first_frame(container, stream)
            fps = float(stream.average_rate) if stream.average_rate else None
            video_duration = _stream_duration(stream)
            if rotation % 180:
                width, height = height, width
        return MediaInfo(
            duration=round(duration, 6), width=width, height=height, fps=fps, has_video=stream is not None,
            has_audio=bool(audios), container=container.format.name, video_stream=stream.index if stream else None,
            origin=origin, rotation=rotation, video_duration=video_duration,
        )


def _reason(exc: BaseException) -> str:
    """FFmpeg's words, without the errno and the path PyAV adds (the caller knows the file)."""
    text = getattr(exc, "strerror", None) or str(exc).strip() or type(exc).__name__
    return re.sub(r"^\[Errno -?\d+\]\s*", "", str(text)).split(": '/", 1)[0]


def _duration(container: object, stream: object) -> float | None:
    """The header's duration (the container's, else the video stream's); demuxed to the last packet when
    neither says (a stream written without an index)."""
    c = container.duration  # type: ignore[attr-defined]
    if c is not None and c > 0:
        return c / 1e6
    if stream is not None and stream.duration is not None and stream.time_base is not None:  # type: ignore[attr-defined]
        return float(stream.duration * stream.time_base)  # type: ignore[attr-defined]
    last = None
    try:
        for packet in container.demux():  # type: ignore[attr-defined]
            if packet.pts is not None and packet.time_base is not None:
                end = float((packet.pts + (packet.duration or 0)) * packet.time_base)
                last = end if last is None else max(last, end)
        container.seek(0)  # type: ignore[attr-defined]
    except _av_error():
        pass
    return last


def _stream_duration(stream: Any) -> float | None:
    """The video stream's own length: its header field, or Matroska's per-stream ``DURATION`` tag
    (HH:MM:SS.fraction), so a video whose audio runs longer is not taken for a truncated one."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    tag = re.fullmatch(r"(\d+):(\d{2}):(\d{2}(?:\.\d+)?)", str(stream.metadata.get("DURATION", "")).strip())
    if tag is None:
        return None
    hours, minutes, seconds = tag.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _first_frame(container: object, stream: object) -> tuple[int, int, int]:
    """Stored width, height and the display rotation (a multiple of 90), from the first decodable frame."""
    try:
        for frame in container.decode(stream):  # type: ignore[attr-defined]
            rotation = round((frame.rotation or 0) / 90.0) * 90 % 360
            return frame.width, frame.height, rotation
    except _av_error() as exc:
        raise EngineError(f"the video stream cannot be decoded: {_reason(exc)} (the file is damaged or truncated)") from None
    raise EngineError("the video stream has no frames (the file is empty or truncated)")


def target_size(info: MediaInfo, max_side: int) -> tuple[int, int, float]:
    """The stored frame's size after scaling (width, height, before rotation) and display px per image px."""
    stored_w, stored_h = (info.height, info.width) if info.rotation % 180 else (info.width, info.height)
    longer = max(stored_w, stored_h)
    scale = max(1.0, longer / max_side)
    return max(2, round(stored_w / scale)), max(2, round(stored_h / scale)), scale


def plan_chunks(info: MediaInfo, interval: float, max_side: int) -> list[tuple[float, float]]:
    """The chunks' [start, stop) seconds: whole grid steps, each holding at most CHUNK_BYTES of frames (the last
    one, a frame more)."""
    w, h, _ = target_size(info, max_side)
    per_second = w * h * 3 / interval
    seconds = min(CHUNK_SECONDS[1], max(CHUNK_SECONDS[0], CHUNK_BYTES / per_second))
    steps = max(1, int(seconds // interval))
    total = math.floor(info.duration / interval + 1e-9) + 1  # grid times 0 .. duration
    starts = list(range(0, total, steps))
    if len(starts) > 1 and total - starts[-1] == 1:
        # A last chunk of only the grid time at the media's very end (where usually no frame starts) would
        # decode the whole last stretch again from its keyframe: the chunk before it runs to the end instead.
        starts.pop()
    return [(k * interval, starts[i + 1] * interval if i + 1 < len(starts) else math.inf)
            for i, k in enumerate(starts)]


def decode_chunk(
    path: str, info: MediaInfo, start: float, stop: float, interval: float, max_side: int, threads: int = 1
) -> Chunk:
    """The sampled frames with times in [start, stop) (module docstring); runs in a decode process."""
    import av

    began = time.process_time()
    width, height, _ = target_size(info, max_side)
    turns = (info.rotation // 90) % 4
    frames: list[tuple[float, np.ndarray]] = []
    last: float | None = None
    ended, error = True, None
    step = 1.0 / info.fps if info.fps else interval
    try:
        with av.open(path, "r") as container:
            stream = container.streams[info.video_stream]  # type: ignore[index]
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = threads
            if start > 0:
                container.seek(int((start + info.origin) / stream.time_base), stream=stream, backward=True)
            grid = start
            for frame in container.decode(stream):
                t = frame.time - info.origin if frame.time is not None else (last + step if last is not None else start)
                last = t
                if t >= stop - 1e-6:
                    ended = False
                    break
                if t < grid - 1e-6:
                    continue
                image = frame.to_ndarray(width=width, height=height, format="rgb24", interpolation="AREA")
                if turns:
                    image = np.rot90(image, turns)
                frames.append((round(max(t, 0.0), 6), np.ascontiguousarray(image)))
                grid = (math.floor(t / interval + 1e-6) + 1) * interval
    except av.FFmpegError as exc:
        error = _reason(exc)
    return Chunk(frames, last, ended, error, time.process_time() - began)


async def sample_frames(
    path: str, info: MediaInfo, interval: float, max_side: int, pool: Executor | None, *, ahead: int = AHEAD,
) -> AsyncIterator[VideoFrame]:
    """The sampled frames in time order; chunks decode in ``pool`` (None: a thread), ``ahead`` at a time.

    Raises EngineError when decoding fails or the stream ends well before its header's duration. Closing the
    generator (or cancelling its consumer) cancels the chunks not started; a started one finishes in its
    process and is dropped.
    """
    if info.video_stream is None:
        raise EngineError("the file has no video stream")
    if not interval > 0:
        raise EngineError("the frame interval must be positive")
    loop = asyncio.get_running_loop()
    chunks = deque(plan_chunks(info, interval, max_side))
    threads = 1 if pool is not None else 0  # processes side by side: one thread each; alone: FFmpeg's choice
    _, _, scale = target_size(info, max_side)
    expected_end = info.video_duration or info.duration
    inflight: deque[tuple[float, asyncio.Future[Chunk]]] = deque()
    try:
        while chunks or inflight:
            while chunks and len(inflight) < ahead:
                start, stop = chunks.popleft()
                job = loop.run_in_executor(pool, decode_chunk, path, info, start, stop, interval, max_side, threads)
                inflight.append((start, job))
            start, job = inflight.popleft()
            chunk = await job
            if chunk.error is not None:
                at = chunk.last_time if chunk.last_time is not None else start
                raise EngineError(f"the video cannot be decoded at {at:.1f} s: {chunk.error} (the file is damaged or "
                                  "truncated)")
            frames, ended, reached = chunk.frames, chunk.ended, chunk.last_time
            del chunk
            while frames:  # popped: the list is the finished future's result too, which would keep them all
                yield VideoFrame(*frames.pop(0), scale)
            release_freed_memory()
            if ended:
                reached = reached if reached is not None else start
                if reached < expected_end - TRUNCATED_SLACK - interval:
                    raise EngineError(f"the video stream ends at {reached:.1f} s but the file says {expected_end:.1f} s: "
                                      "the file is truncated")
                break
    finally:
        for _, job in inflight:
            job.cancel()
