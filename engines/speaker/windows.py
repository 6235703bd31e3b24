"""One chunk of a long recording to speaker-embedding windows: a streaming energy VAD and the windows' mel pieces.

Runs in the worker's process pool (everything in and out is numpy, so it pickles). Chunks are independent: each
carries LOOKBACK samples of the chunk before it, so a window that straddles a chunk boundary is computed whole by
the chunk its end falls in, and chunks can be handled in parallel and in any order.

Windows sit on one grid over the whole recording: window k covers samples ``[k * HOP, k * HOP + WINDOW)``,
WINDOW being the GE2E piece (160 mel frames, 1.6 s) and HOP 0.5 s. A window is embedded only when at least half
of it is voiced: a window of mostly silence embeds the room, not the voice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engines.speaker.mel import HOP as MEL_HOP
from engines.speaker.mel import PARTIAL_FRAMES, SAMPLE_RATE, mel_spectrogram

__all__ = ["ALIGN", "HOP", "LOOKBACK", "WINDOW", "ChunkWindows", "chunk_windows", "voiced_mask"]

WINDOW = PARTIAL_FRAMES * MEL_HOP  # 25,600 samples: one GE2E piece
HOP = SAMPLE_RATE // 2  # 0.5 s between window starts: segment boundaries are placed to within one hop
VAD_FRAME = 480  # 30 ms, as the short-recording VAD (engines/speaker/mel.py)
ALIGN = 24_000  # lcm of VAD_FRAME, MEL_HOP and HOP: chunk offsets are multiples, so every grid lines up
LOOKBACK = 2 * ALIGN  # 3 s of the previous chunk, more than one WINDOW
MIN_VOICED_FRACTION = 0.5
VAD_HANGOVER = 6  # 180 ms gaps inside a voiced run are bridged (as engines/speaker/mel.py)
VAD_RELATIVE_DB = 35.0  # frames this far below the chunk's loud frames (95th percentile) are silence
VAD_NOISE_DB = 8.0  # ... and frames within this of the chunk's quiet frames (10th percentile) are the room
VAD_FLOOR_RMS = 1e-3  # -60 dBFS: digital silence never counts as voice


@dataclass(frozen=True, slots=True)
class ChunkWindows:
    """What one chunk contributes: its voiced runs and its embeddable windows."""

    voiced: list[tuple[float, float]]  # seconds from the start of the recording, within this chunk only
    starts: np.ndarray  # int64 [n]: each window's first sample in the recording
    mels: np.ndarray  # float32 [n, 160, 40]: the windows' power mel pieces


def voiced_mask(wav: np.ndarray) -> np.ndarray:
    """One bool per 30 ms frame of ``wav``: voice, by energy relative to this stretch of audio.

    The short-recording VAD takes its loudness reference from the whole recording; a stream has no whole, so the
    reference is the chunk's own (30 s or so with the lookback: enough speech to know what loud is, and chunks
    stay independent, so they run in parallel). A chunk with no speech at all would then call its own noise
    voice, which the second rule prevents: a frame must also stand VAD_NOISE_DB above the chunk's quiet frames
    (the room's hiss, the hum of a line) — steady noise never does, and a chunk of it is silence.
    """
    n = wav.size // VAD_FRAME
    if n == 0:
        return np.zeros(0, bool)
    frames = wav[: n * VAD_FRAME].reshape(n, VAD_FRAME).astype(np.float64)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    loud, quiet = np.percentile(rms, [95, 10])
    threshold = max(VAD_FLOOR_RMS, loud * 10 ** (-VAD_RELATIVE_DB / 20), quiet * 10 ** (VAD_NOISE_DB / 20))
    voiced = rms >= threshold
    kernel = np.ones(VAD_HANGOVER + 1)
    grown = np.convolve(voiced.astype(np.float64), kernel, mode="same") > 0
    closed = np.convolve((~grown).astype(np.float64), kernel, mode="same") == 0
    return closed & grown


def runs(mask: np.ndarray, first_sample: int, frame: int = VAD_FRAME) -> list[tuple[float, float]]:
    """The True runs of a per-frame mask as ``(start, end)`` seconds, the mask's frame 0 at ``first_sample``."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [((first_sample + a * frame) / SAMPLE_RATE, (first_sample + b * frame) / SAMPLE_RATE)
            for a, b in zip(edges[::2], edges[1::2], strict=True)]


def chunk_windows(offset: int, data: np.ndarray, lookback: int) -> ChunkWindows:
    """``data`` is the chunk starting at sample ``offset`` of the recording, preceded by ``lookback`` samples of
    the one before (``offset - lookback`` a multiple of ALIGN). Windows whose end falls in this chunk are its own."""
    base = offset - lookback
    if base % ALIGN:
        raise ValueError(f"chunk data must start on a multiple of {ALIGN} samples, not {base}")
    data = np.asarray(data, np.float32)
    mask = voiced_mask(data)
    voiced = runs(mask[lookback // VAD_FRAME :], offset)
    end = base + data.size
    first = max(0, -(-(offset - WINDOW + 1) // HOP))  # the first k with k*HOP + WINDOW > offset
    starts = np.arange(first * HOP, end - WINDOW + 1, HOP, dtype=np.int64)
    starts = starts[starts >= base]
    if starts.size and mask.size:
        cover = np.cumsum(np.concatenate([[0], mask.astype(np.int64)]))
        a = np.minimum((starts - base) // VAD_FRAME, mask.size)
        b = np.minimum((starts - base + WINDOW) // VAD_FRAME, mask.size)
        fraction = (cover[b] - cover[a]) / np.maximum(b - a, 1)
        starts = starts[fraction >= MIN_VOICED_FRACTION]
    else:
        starts = starts[:0]
    if not starts.size:
        return ChunkWindows(voiced, starts, np.zeros((0, PARTIAL_FRAMES, 40), np.float32))
    # One mel spectrogram over the span the windows cover; each window is 160 of its frames.
    lo, hi = int(starts[0] - base), int(starts[-1] - base + WINDOW)
    mel = mel_spectrogram(data[lo:hi])
    frames = (starts - base - lo) // MEL_HOP
    pieces = np.stack([mel[f : f + PARTIAL_FRAMES] for f in frames]).astype(np.float32)
    return ChunkWindows(voiced, starts, pieces)
