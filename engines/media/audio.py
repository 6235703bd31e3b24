"""Streamed audio of a local media file: 16 kHz mono float32 in fixed-size chunks, never the whole file at once.

Any container and codec the ``av`` wheels (FFmpeg) read: WAV, FLAC, MP3, OGG Vorbis/Opus, M4A/AAC, and the
audio track of MP4/MOV/WebM/MKV video. FFmpeg's resampler turns the first audio stream into mono 16 kHz float;
chunks are cut from its output so a two-hour recording holds one chunk (plus one decoded frame) in memory.

Every refusal is an engines.interface.EngineError whose message names the reason: ``not media``, ``no audio
stream``, ``too long`` (over ``max_seconds``, by the header before any decoding or while decoding when the
header said nothing or lied), ``truncated`` (the stream ended well before its header's duration) and
``corrupt`` (FFmpeg could not decode it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from engines.interface import EngineError

__all__ = ["SAMPLE_RATE", "AudioProbe", "audio_chunks", "probe_audio"]

SAMPLE_RATE = 16_000
DEFAULT_CHUNK_SAMPLES = 30 * SAMPLE_RATE
# A stream that ends this much before the duration its header declares was cut short (a partial upload): the
# slack covers encoder padding and the estimate FFmpeg makes from the bitrate of headerless MP3.
TRUNCATED_FRACTION = 0.9
TRUNCATED_SLACK_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class AudioProbe:
    """What the header says about a file's audio: duration in seconds (None when it does not say), the codec,
    the container format, and whether the file has a video stream too."""

    duration: float | None
    codec: str
    container: str
    has_video: bool


def _open(path: str) -> Any:
    import av

    try:
        return av.open(path, mode="r", metadata_errors="ignore")
    except FileNotFoundError:
        raise EngineError(f"not media: no file at {path}") from None
    except (av.error.FFmpegError, OSError, ValueError) as exc:  # InvalidDataError and kin: no container FFmpeg knows
        raise EngineError(f"not media: FFmpeg reads no audio or video in the file, or it is truncated or corrupt "
                          f"({_first_line(exc)})") from None


def _stream_duration(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and not container.streams.video:
        return float(container.duration) / 1_000_000  # microseconds; with video it may be the video's length
    return None


def _probe(container: Any, max_seconds: float) -> AudioProbe:
    if not container.streams.audio:
        kind = "a video without sound" if container.streams.video else "no audio in it"
        raise EngineError(f"no audio stream: the file is {kind}")
    stream = container.streams.audio[0]
    duration = _stream_duration(container, stream)
    if duration is not None and duration > max_seconds:
        raise EngineError(f"too long: {duration:.1f} s of audio is over the {max_seconds:g} s limit")
    codec = stream.codec_context.name if stream.codec_context is not None else "unknown"
    return AudioProbe(duration, codec, container.format.name, bool(container.streams.video))


def probe_audio(path: str, max_seconds: float = float("inf")) -> AudioProbe:
    """The audio stream's header facts; raises EngineError (not media, no audio stream, too long, a WAV
    file shorter than its header says)."""
    with _open(path) as container:
        probe = _probe(container, max_seconds)
    declared = _wav_data_bytes(path)
    if declared is not None:
        present = os.path.getsize(path) - declared[0]
        if present < TRUNCATED_FRACTION * declared[1]:
            raise EngineError(f"truncated: the WAV file holds {present} bytes of audio but its header says "
                              f"{declared[1]}")
    return probe


def _wav_data_bytes(path: str) -> tuple[int, int] | None:
    """Where a RIFF/WAVE file's samples start and how many bytes its header says they are, or None (not a
    WAV file, or a header written before the length was known). FFmpeg sizes WAV by the file, not the header,
    so a cut-off upload would otherwise read as a shorter recording."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        for _ in range(64):  # chunks before "data": fmt, LIST, fact, ...
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            size = int.from_bytes(chunk[4:], "little")
            if chunk[:4] == b"data":
                return (f.tell(), size) if 0 < size < 0xFFFFFFFF else None
            f.seek(size + (size & 1), os.SEEK_CUR)
    return None


def audio_chunks(
    path: str, *, chunk_samples: int = DEFAULT_CHUNK_SAMPLES, max_seconds: float = float("inf")
) -> Iterator[tuple[int, np.ndarray]]:
    """``(offset in samples, float32 samples)`` of the first audio stream at 16 kHz mono; every chunk but the
    last has exactly ``chunk_samples`` samples. Raises EngineError as the module says; a silent file yields
    its (silent) samples like any other, and an empty stream yields nothing."""
    import av

    limit = int(max_seconds * SAMPLE_RATE) if np.isfinite(max_seconds) else None
    with _open(path) as container:
        probe = _probe(container, max_seconds)
        stream = container.streams.audio[0]
        stream.thread_type = "AUTO"
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        pending: list[np.ndarray] = []
        held = 0
        offset = 0
        try:
            for frame in _frames(container, stream):
                for out in resampler.resample(frame):
                    pending.append(out.to_ndarray().reshape(-1))
                    held += pending[-1].size
                if limit is not None and offset + held > limit:  # no header, or one that lied about the length
                    raise EngineError(f"too long: the audio runs past the {max_seconds:g} s limit")
                while held >= chunk_samples:
                    chunk, pending, held = _take(pending, held, chunk_samples)
                    yield offset, _checked(chunk, offset)
                    offset += chunk.size
            for out in resampler.resample(None):
                pending.append(out.to_ndarray().reshape(-1))
                held += pending[-1].size
        except (av.error.FFmpegError, OSError, ValueError) as exc:  # a packet FFmpeg cannot decode
            at = (offset + held) / SAMPLE_RATE
            raise EngineError(f"corrupt: the audio cannot be decoded after {at:.1f} s ({_first_line(exc)})") from None
        while held:
            chunk, pending, held = _take(pending, held, min(held, chunk_samples))
            if limit is not None and offset + chunk.size > limit:
                raise EngineError(f"too long: the audio runs past the {max_seconds:g} s limit")
            yield offset, _checked(chunk, offset)
            offset += chunk.size
    decoded = offset / SAMPLE_RATE
    if probe.duration is not None and decoded < TRUNCATED_FRACTION * probe.duration - TRUNCATED_SLACK_SECONDS:
        raise EngineError(f"truncated: the audio ends at {decoded:.1f} s but its header says {probe.duration:.1f} s")


def _frames(container: Any, stream: Any) -> Iterator[Any]:
    # Demux only the audio stream: a video's frames are never decoded.
    for packet in container.demux(stream):
        yield from packet.decode()


def _take(pending: list[np.ndarray], held: int, n: int) -> tuple[np.ndarray, list[np.ndarray], int]:
    joined = pending[0] if len(pending) == 1 else np.concatenate(pending)
    chunk = np.ascontiguousarray(joined[:n], np.float32)
    rest = joined[n:]
    return chunk, ([rest] if rest.size else []), held - n


def _checked(chunk: np.ndarray, offset: int) -> np.ndarray:
    if not np.all(np.isfinite(chunk)):
        raise EngineError(f"corrupt: the decoded samples after {offset / SAMPLE_RATE:.1f} s are not finite")
    return chunk


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
