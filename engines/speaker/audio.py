"""Audio bytes to 16 kHz mono float32, bounded, in the worker's process pool (as engines/decode.py does images).

Decoding is PyAV's (FFmpeg's demuxers and decoders, bundled in the ``av`` wheels): WAV, FLAC, MP3, OGG
Vorbis/Opus, M4A/AAC and whatever else FFmpeg reads, from memory, never from a path a user names. FFmpeg's
resampler converts to mono 16 kHz float. Everything here returns plain numpy arrays and dicts, so it pickles.

Skip reasons (as engines/embedded.Skipped records them): ``corrupt`` (no audio stream, or undecodable),
``empty`` (no samples), ``too-large`` (over ``max_bytes``), ``too-long`` (over ``max_seconds``, by the header
or while decoding), ``silent`` (the energy VAD found under ``min_voiced_seconds`` of voice).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from engines.speaker.mel import SAMPLE_RATE, Voiced, utterance_partials, voiced_windows

__all__ = [
    "DEFAULT_MAX_BYTES", "DEFAULT_MAX_SECONDS", "DEFAULT_MIN_VOICED_SECONDS", "decode_audio", "prepare_audio",
    "utterance_features",
]

DEFAULT_MAX_BYTES = 50 * 1024 * 1024  # ~26 min of 16-bit 16 kHz WAV; compressed files hold far more
DEFAULT_MAX_SECONDS = 600.0  # a recording longer than 10 minutes is refused, not decoded to the end
DEFAULT_MIN_VOICED_SECONDS = 0.5

Skip = dict[str, Any]


def decode_audio(blob: bytes, max_bytes: int = DEFAULT_MAX_BYTES, max_seconds: float = DEFAULT_MAX_SECONDS) -> tuple[np.ndarray | None, Skip | None]:
    """16 kHz mono float32 samples of ``blob``, or the reason it cannot be used."""
    import av

    if len(blob) == 0:
        return None, {"reason": "empty", "detail": "the file is empty"}
    if len(blob) > max_bytes:
        return None, {"reason": "too-large", "detail": f"{len(blob)} bytes is over {max_bytes}"}
    limit = int(max_seconds * SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    total = 0
    try:
        with av.open(io.BytesIO(blob), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                return None, {"reason": "corrupt", "detail": "no audio stream in the file"}
            stream = container.streams.audio[0]
            if stream.duration is not None and stream.time_base is not None:
                declared = float(stream.duration * stream.time_base)
                if declared > max_seconds:
                    return None, _too_long(declared, max_seconds)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    chunks.append(chunk)
                    total += chunk.size
                if total > limit:  # a header that lied (or said nothing) about the length
                    return None, _too_long(total / SAMPLE_RATE, max_seconds)
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except Exception as exc:  # av.error.* (InvalidDataError, ...), ValueError: the file is not audio we read
        return None, {"reason": "corrupt", "detail": f"not readable audio: {_first_line(exc)}"}
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.empty(0, np.float32)
    if samples.size == 0:
        return None, {"reason": "empty", "detail": "the file holds no audio samples"}
    if samples.size > limit:
        return None, _too_long(samples.size / SAMPLE_RATE, max_seconds)
    if not np.all(np.isfinite(samples)):
        return None, {"reason": "corrupt", "detail": "the decoded samples are not finite"}
    return samples, None


def prepare_audio(
    blob: bytes,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    min_voiced_seconds: float = DEFAULT_MIN_VOICED_SECONDS,
) -> tuple[Voiced | None, float, Skip | None]:
    """Decode, then keep the voiced windows: (voiced part, the recording's seconds, skip reason or None)."""
    samples, skip = decode_audio(blob, max_bytes, max_seconds)
    if samples is None:
        return None, 0.0, skip
    seconds = samples.size / SAMPLE_RATE
    voiced = voiced_windows(samples)
    if voiced.seconds < min_voiced_seconds:
        detail = f"{voiced.seconds:.2f} s of voice in {seconds:.2f} s of audio is under {min_voiced_seconds:g} s"
        return None, seconds, {"reason": "silent", "detail": detail}
    return voiced, seconds, None


def _too_long(seconds: float, max_seconds: float) -> Skip:
    return {"reason": "too-long", "detail": f"{seconds:.1f} s is over the {max_seconds:g} s limit"}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def utterance_features(
    blob: bytes,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    min_voiced_seconds: float = DEFAULT_MIN_VOICED_SECONDS,
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """What the speaker engine needs of one recording, computed in a pool process: the ``[P, 160, 40]`` mel
    pieces of its voiced part and ``{"seconds", "voicedSeconds", "windows"}``, or (None, skip reason)."""
    voiced, seconds, skip = prepare_audio(blob, max_bytes, max_seconds, min_voiced_seconds)
    if voiced is None:
        return None, skip or {"reason": "corrupt", "detail": "no audio"}
    pieces, _ = utterance_partials(voiced.samples)
    info = {"seconds": round(seconds, 3), "voicedSeconds": round(voiced.seconds, 3),
            "windows": [[round(a, 3), round(b, 3)] for a, b in voiced.windows]}
    return pieces.astype(np.float32), info
