"""Test recordings made on the machine: Debian's espeak-ng voices, noise added with numpy, encoded with PyAV.

Every speaker is an espeak-ng voice variant with its own pitch and speed; every recording a different sentence.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave

import numpy as np

ESPEAK = shutil.which("espeak-ng")

# (voice, pitch 0-99, words per minute): distinct synthetic speakers
VOICES = {
    "Ada": ("en+f2", 60, 150),
    "Brian": ("en+m3", 35, 170),
    "Chloe": ("en-us+f4", 75, 140),
    "Dmitri": ("en+m7", 20, 160),
    "Esme": ("en-gb+f3", 50, 185),
    "Farid": ("en-us+m1", 45, 135),
}

WORDS = ("river morning station garden yellow window number people quiet market table summer paper "
         "winter silver orange market doctor island pocket letter motor basket camera engine forest bridge "
         "candle planet travel minute coffee wooden cotton rabbit thunder").split()


def sentence(seed: int) -> str:
    rng = np.random.default_rng(seed)
    return "The " + " ".join(rng.choice(WORDS, 9)) + " were seen again today."


def speak(speaker: str, text: str, *, noise: float = 0.01, seed: int = 0) -> tuple[np.ndarray, int]:
    """float32 mono samples and their rate (espeak-ng speaks at 22,050 Hz), with white noise at ``noise`` RMS."""
    voice, pitch, speed = VOICES[speaker]
    wav = subprocess.run([ESPEAK, "-v", voice, "-p", str(pitch), "-s", str(speed), "--stdout", text],
                         capture_output=True, check=True, timeout=60).stdout
    with wave.open(io.BytesIO(wav)) as w:
        rate = w.getframerate()
        samples = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
    samples = samples + np.random.default_rng(seed).normal(0, noise, samples.size).astype(np.float32)
    return np.clip(samples, -1, 1), rate


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype(np.int16).tobytes())
    return out.getvalue()


def encode(samples: np.ndarray, rate: int, fmt: str) -> bytes:
    """``fmt``: wav | flac | mp3 | ogg (Opus) | m4a (AAC), encoded with PyAV (FFmpeg)."""
    if fmt == "wav":
        return wav_bytes(samples, rate)
    import av

    container_format, codec, codec_rate = {
        "flac": ("flac", "flac", rate), "mp3": ("mp3", "libmp3lame", rate), "ogg": ("ogg", "libopus", 48000),
        "m4a": ("ipod", "aac", rate),
    }[fmt]
    out = io.BytesIO()
    with av.open(out, "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=codec_rate, layout="mono")
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=codec_rate)
        frame = av.AudioFrame.from_ndarray((np.clip(samples, -1, 1) * 32767).astype(np.int16)[None], format="s16",
                                           layout="mono")
        frame.sample_rate = rate
        for resampled in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(resampled):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()
