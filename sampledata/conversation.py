"""A test conversation: espeak-ng voices taking turns, with silences, one overlapped stretch, and a voice the
library does not know; as WAV, a compressed format, or the audio track of a small MP4.

The truth is exact: each turn's start and end are where its voice's samples begin and end (espeak-ng's own
leading and trailing silence trimmed), in seconds from the start of the recording.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np

from sampledata.speech import encode, sentence, speak, wav_bytes

RATE = 22_050  # espeak-ng's rate; the media reader resamples to 16 kHz as it would any recording
NOISE_RMS = 0.004  # a quiet room under the whole recording, silences included
OVERLAP_SECONDS = 1.5

# (speaker, sentences, silence before in seconds); the unknown voice speaks the fifth turn. The overlapped
# stretch is the start of the turn marked OVERLAP: it begins OVERLAP_SECONDS before the previous turn ends.
OVERLAP = "overlap"
SCRIPT: tuple[tuple[str, int, float | str], ...] = (
    ("Ada", 2, 0.6), ("Dmitri", 1, 1.2), ("Chloe", 2, 0.9), ("Ada", 1, 1.5), ("UNKNOWN", 2, 1.0),
    ("Dmitri", 2, 1.3), ("Chloe", 1, OVERLAP), ("Ada", 1, 1.1), ("UNKNOWN", 1, 1.4), ("Dmitri", 1, 0.8),
    ("Chloe", 1, 1.6),
)
UNKNOWN_VOICE = "Farid"  # a voice of sampledata.speech.VOICES the library is trained without


@dataclass(frozen=True, slots=True)
class Turn:
    """One speaker's voiced stretch: ``speaker`` a VOICES name, ``start``/``end`` in seconds."""

    speaker: str
    start: float
    end: float


@dataclass
class Conversation:
    """The recording (float32 mono at ``rate``) and who speaks when."""

    samples: np.ndarray
    rate: int
    turns: list[Turn] = field(default_factory=list)
    overlap: tuple[float, float] | None = None

    @property
    def seconds(self) -> float:
        return self.samples.size / self.rate

    def wav(self) -> bytes:
        return wav_bytes(self.samples, self.rate)

    def encoded(self, fmt: str) -> bytes:
        """``fmt``: wav | flac | mp3 | ogg (Opus) | m4a (AAC)."""
        return encode(self.samples, self.rate, fmt)

    def mp4(self, *, with_audio: bool = True, fps: int = 5, size: tuple[int, int] = (96, 64)) -> bytes:
        """A small MP4 (MPEG-4 part 2 video, AAC audio): coloured frames, and this recording as its audio track;
        ``with_audio`` False: the same video without sound."""
        return mux_video(self.samples if with_audio else None, self.rate, self.seconds, fps=fps, size=size)

    def video(self, fmt: str, *, with_audio: bool = True) -> bytes:
        """``fmt``: mp4 | mov (MPEG-4 video, AAC) | mkv (MPEG-4 video, AAC) | webm (VP8, Opus)."""
        return mux_video(self.samples if with_audio else None, self.rate, self.seconds, fmt=fmt)


def voiced(speaker: str, text: str) -> np.ndarray:
    """espeak-ng's samples of ``text`` with its leading and trailing silence trimmed (no noise)."""
    samples, rate = speak(speaker, text, noise=0.0)
    assert rate == RATE, rate
    loud = np.flatnonzero(np.abs(samples) > 0.02)
    return samples[loud[0] : loud[-1] + 1] if loud.size else samples[:0]


def build(speakers: dict[str, str] | None = None, seed: int = 5000) -> Conversation:
    """The SCRIPT spoken. ``speakers`` maps the script's names to VOICES names (default: as written, with
    UNKNOWN as UNKNOWN_VOICE). Sentences use seeds from ``seed`` on (training sets should use others)."""
    cast = {"Ada": "Ada", "Dmitri": "Dmitri", "Chloe": "Chloe", "UNKNOWN": UNKNOWN_VOICE, **(speakers or {})}
    parts: list[tuple[int, np.ndarray]] = []
    turns: list[Turn] = []
    overlap = None
    cursor = 0
    for n, (role, count, before) in enumerate(SCRIPT):
        voice = cast[role]
        speech = np.concatenate([
            np.concatenate([voiced(voice, sentence(seed + 10 * n + k)), np.zeros(int(0.35 * RATE), np.float32)])
            for k in range(count)
        ])[: -int(0.35 * RATE)]
        if before == OVERLAP:
            start = cursor - int(OVERLAP_SECONDS * RATE)
            overlap = (start / RATE, cursor / RATE)
        else:
            start = cursor + int(float(before) * RATE)
        parts.append((start, speech))
        turns.append(Turn(voice, start / RATE, (start + speech.size) / RATE))
        cursor = max(cursor, start + speech.size)
    total = cursor + int(0.8 * RATE)
    samples = np.random.default_rng(seed).normal(0, NOISE_RMS, total).astype(np.float32)
    for start, speech in parts:
        samples[start : start + speech.size] += speech
    return Conversation(np.clip(samples, -1, 1), RATE, turns, overlap)


VIDEO_FORMATS = {  # our name: (FFmpeg muxer, video codec, audio codec, audio rate or None for the input's)
    "mp4": ("mp4", "mpeg4", "aac", None), "mov": ("mov", "mpeg4", "aac", None),
    "mkv": ("matroska", "mpeg4", "aac", None), "webm": ("webm", "libvpx", "libopus", 48_000),
}


def mux_video(samples: np.ndarray | None, rate: int, seconds: float, *, fmt: str = "mp4", fps: int = 5,
              size: tuple[int, int] = (96, 64)) -> bytes:
    """A video of ``seconds`` of coloured frames, with ``samples`` (mono float32 at ``rate``) as its audio."""
    import av

    muxer, video_codec, audio_codec, audio_rate = VIDEO_FORMATS[fmt]
    out = io.BytesIO()
    with av.open(out, "w", format=muxer) as container:
        video = container.add_stream(video_codec, rate=fps)
        video.width, video.height = size
        video.pix_fmt = "yuv420p"
        audio = None
        if samples is not None:
            audio = container.add_stream(audio_codec, rate=audio_rate or rate, layout="mono")
        frames = int(np.ceil(seconds * fps))
        for i in range(frames):
            picture = np.zeros((size[1], size[0], 3), np.uint8)
            picture[:] = ((i * 7) % 256, 90, 160)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        if audio is not None and samples is not None:
            resampler = av.AudioResampler(format=audio.codec_context.format.name, layout="mono",
                                          rate=audio_rate or rate)
            frame = av.AudioFrame.from_ndarray((np.clip(samples, -1, 1) * 32767).astype(np.int16)[None], format="s16",
                                               layout="mono")
            frame.sample_rate = rate
            for resampled in resampler.resample(frame) + resampler.resample(None):
                for packet in audio.encode(resampled):
                    container.mux(packet)
            for packet in audio.encode(None):
                container.mux(packet)
    return out.getvalue()


def training_recordings(names: list[str], per_speaker: int = 3, seed: int = 100) -> dict[str, list[bytes]]:
    """WAV recordings of each voice, sentences with seeds apart from the conversation's (noise added)."""
    out: dict[str, list[bytes]] = {}
    for s, name in enumerate(names):
        out[name] = []
        for k in range(per_speaker):
            samples, rate = speak(name, sentence(seed + 100 * s + k), noise=0.01, seed=seed + 100 * s + k)
            out[name].append(wav_bytes(samples, rate))
    return out
