"""Speaker features in numpy: Resemblyzer's power mel spectrogram, an energy VAD, and 160-frame partials.

The mel spectrogram is what ``resemblyzer.audio.wav_to_mel_spectrogram`` computes with librosa 0.11
(``librosa.feature.melspectrogram(sr=16000, n_fft=400, hop_length=160, n_mels=40)``): a centred STFT with a
periodic Hann window and zero padding, power 2, and librosa's default (Slaney) mel filterbank with Slaney area
normalisation. It is power, not log: the GE2E encoder was trained on that. Checked against librosa's output
in tests/engines/test_speaker_features.py (fixture: tests/fixtures/models/ge2e.npz).

Partials follow ``VoiceEncoder.compute_partial_slices`` (rate 1.3 per second: a 77-frame step, about half of
the 160-frame piece, and a last piece kept when it covers at least 75 %).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

__all__ = [
    "HOP", "N_FFT", "N_MELS", "PARTIAL_FRAMES", "SAMPLE_RATE", "Voiced",
    "mel_filterbank", "mel_spectrogram", "partial_slices", "utterance_partials", "voiced_windows",
]

SAMPLE_RATE = 16_000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
PARTIAL_FRAMES = 160  # 1.6 s
PARTIAL_RATE = 1.3  # partial utterances per second (Resemblyzer's default)
MIN_COVERAGE = 0.75


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    # Slaney's auditory toolbox scale (librosa's htk=False): linear to 1 kHz, logarithmic above.
    f = np.asarray(f, np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    mel = f / f_sp
    above = f >= min_log_hz
    return np.where(above, min_log_hz / f_sp + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mel)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@functools.cache
def mel_filterbank(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """``[n_mels, 1 + n_fft // 2]`` triangular filters from 0 Hz to sr/2, each normalised to unit area (Slaney)."""
    fft_freqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


@functools.cache
def _window() -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)  # periodic Hann


def mel_spectrogram(wav: np.ndarray) -> np.ndarray:
    """``[frames, 40]`` float32 power mel of a 16 kHz float waveform; frames = 1 + len // 160."""
    wav = np.asarray(wav, np.float32)
    padded = np.pad(wav, N_FFT // 2)
    frames = 1 + (padded.size - N_FFT) // HOP
    index = np.arange(N_FFT)[None, :] + HOP * np.arange(frames)[:, None]
    spectrum = np.fft.rfft(padded[index] * _window(), axis=1)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
    return power @ mel_filterbank().T


def partial_slices(n_samples: int) -> list[tuple[int, int]]:
    """Mel-frame ranges ``[start, stop)`` of the partial utterances of ``n_samples`` samples (Resemblyzer's)."""
    n_frames = int(np.ceil((n_samples + 1) / HOP))
    step = int(np.round((SAMPLE_RATE / PARTIAL_RATE) / HOP))
    slices = [(i, i + PARTIAL_FRAMES) for i in range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step)]
    last_start = slices[-1][0] * HOP
    coverage = (n_samples - last_start) / (PARTIAL_FRAMES * HOP)
    if coverage < MIN_COVERAGE and len(slices) > 1:
        slices = slices[:-1]
    return slices


def utterance_partials(wav: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """``[P, 160, 40]`` mel partials of one utterance, and their frame ranges (as ``embed_utterance`` does)."""
    slices = partial_slices(len(wav))
    need = slices[-1][1] * HOP
    if need >= len(wav):
        wav = np.pad(wav, (0, need - len(wav)))
    mel = mel_spectrogram(wav)
    return np.stack([mel[a:b] for a, b in slices]), slices


@dataclass(frozen=True, slots=True)
class Voiced:
    """The voiced part of a recording: the samples kept and the windows they came from (seconds)."""

    samples: np.ndarray  # float32, 16 kHz, the voiced windows joined
    windows: list[tuple[float, float]]  # [start, end) in the original recording
    seconds: float  # voiced duration


VAD_FRAME = 480  # 30 ms, as Resemblyzer's webrtcvad windows
VAD_HANGOVER = 6  # frames of silence kept inside a voiced run (Resemblyzer's vad_max_silence_length)
VAD_RELATIVE_DB = 35.0  # frames this far below the loudest 95th percentile are silence
VAD_FLOOR_RMS = 1e-3  # absolute floor (-60 dBFS): digital silence never counts as voice


def voiced_windows(wav: np.ndarray) -> Voiced:
    """An energy VAD: 30 ms frames whose RMS is within 35 dB of the recording's loud frames and above -60 dBFS,
    short gaps (up to 180 ms) bridged, joined into windows. Empty when nothing is voiced."""
    wav = np.asarray(wav, np.float32)
    n = wav.size // VAD_FRAME
    if n == 0:
        return Voiced(np.empty(0, np.float32), [], 0.0)
    frames = wav[: n * VAD_FRAME].reshape(n, VAD_FRAME)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    loud = float(np.percentile(rms, 95))
    threshold = max(VAD_FLOOR_RMS, loud * 10 ** (-VAD_RELATIVE_DB / 20))
    voiced = rms >= threshold
    # Bridge gaps of up to VAD_HANGOVER frames between voiced frames (a dilation then an erosion).
    kernel = np.ones(VAD_HANGOVER + 1)
    grown = np.convolve(voiced.astype(np.float64), kernel, mode="same") > 0
    closed = np.convolve((~grown).astype(np.float64), kernel, mode="same") == 0
    mask = closed & grown
    windows: list[tuple[float, float]] = []
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        windows.append((float(start * VAD_FRAME / SAMPLE_RATE), float(stop * VAD_FRAME / SAMPLE_RATE)))
    samples = frames[mask].reshape(-1) if mask.any() else np.empty(0, np.float32)
    return Voiced(np.ascontiguousarray(samples), windows, samples.size / SAMPLE_RATE)
