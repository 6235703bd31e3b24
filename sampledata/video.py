"""Test videos written with PyAV: real faces (the package-shipped photos) moving over clutter, to a script.

A script is a list of :class:`Shot` s: who is on screen from when to when, where (the face box's centre and
side in frame pixels), moving and scaling linearly from ``at`` to ``to`` across the shot. Cuts between
people are two shots meeting at the same time and place; a face leaving and returning is two shots of the
same person with a gap; an unknown person is a head whose person is not in the library. The background is
static clutter (cheap to encode). Every frame's truth (which face box where) follows from the script
(:meth:`Video.box`).

Containers by the path's suffix: ``.mp4`` and ``.mov`` (H.264 or MPEG-4 Part 2), ``.webm`` (VP9), ``.mkv``
(H.264). ``vfr`` jitters the frame times (variable frame rate); ``rotation`` stores the frames turned and
sets the display matrix so players (and the engine) turn them back upright.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from sampledata.face_scenes import Head, clutter, cut_heads
from sampledata.faces import Detector

__all__ = ["Shot", "Video", "heads", "write_audio", "write_video"]

MS = Fraction(1, 1000)
CODECS = {".mp4": "libx264", ".mov": "mpeg4", ".mkv": "libx264", ".webm": "libvpx-vp9"}
OPTIONS = {
    "libx264": {"preset": "ultrafast", "crf": "20"},
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8", "crf": "32", "b": "0"},
    "mpeg4": {"b": "1500k"},  # its default, 200 kb/s, blurs a face past recognition
}


@dataclass(frozen=True)
class Shot:
    """``person`` on screen for ``start`` <= t < ``end`` (seconds); (centre x, centre y, face side) in px."""

    person: str
    start: float
    end: float
    at: tuple[float, float, float]
    to: tuple[float, float, float] | None = None

    def place(self, t: float) -> tuple[float, float, float]:
        if self.to is None or self.end <= self.start:
            return self.at
        f = min(1.0, max(0.0, (t - self.start) / (self.end - self.start)))
        return tuple(a + (b - a) * f for a, b in zip(self.at, self.to, strict=True))  # type: ignore[return-value]


@dataclass(frozen=True)
class Video:
    path: Path
    duration: float
    fps: float
    size: tuple[int, int]  # display width, height
    shots: list[Shot] = field(default_factory=list)
    frame_times: list[float] = field(default_factory=list, repr=False)

    def box(self, shot: Shot, t: float, heads: dict[str, Head]) -> tuple[float, float, float, float]:
        """The face box (x1, y1, x2, y2, display pixels) of ``shot`` at ``t``."""
        return _placement(heads[shot.person], shot.place(t))[1]


def heads(photos: dict[str, bytes], detector: Detector) -> dict[str, Head]:
    """Head cut-outs: every shipped person (sampledata.face_scenes), plus other photos of enrolled people.

    ``obama-other``: Obama from ``obama3.jpg``, a photo never enrolled (the enrolled one is ``obama2.jpg``);
    ``<person>-made``: the person's own cut-out mirrored and darker (the same sitting: a weaker hold-out).
    """
    out = cut_heads(photos, detector)
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(photos["obama3.jpg"]))).convert("RGB")
    x1, y1, x2, y2 = detector.boxes(image)[0]
    cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * 1.1
    left, top = round(cx - half), round(cy - half)
    out["obama-other"] = Head("obama", image.crop((left, top, round(cx + half), round(cy + half))),
                              (x1 - left, y1 - top, x2 - left, y2 - top))
    for person in list(out):
        head = out[person]
        if person.endswith("-other"):
            continue
        w = head.image.width
        b = head.box
        mirrored = ImageEnhance.Brightness(ImageOps.mirror(head.image)).enhance(0.8)
        out[f"{person}-made"] = Head(head.person, mirrored, (w - b[2], b[1], w - b[0], b[3]))
    return out


def _placement(head: Head, place: tuple[float, float, float]) -> tuple[tuple[int, int, int], tuple[float, float, float, float]]:
    """Where the head's square cut-out goes (left, top, side) and the face box it puts there."""
    cx, cy, face = place
    bx1, by1, bx2, by2 = head.box
    scale = face / max(bx2 - bx1, by2 - by1)
    side = max(2, round(head.image.width * scale))
    scale = side / head.image.width
    left = round(cx - (bx1 + bx2) / 2 * scale)
    top = round(cy - (by1 + by2) / 2 * scale)
    return (left, top, side), (left + bx1 * scale, top + by1 * scale, left + bx2 * scale, top + by2 * scale)


class _Painter:
    """Frames of the script: cut-outs resized once per (person, side), pasted with a soft round mask."""

    def __init__(self, heads: dict[str, Head], size: tuple[int, int], seed: int) -> None:
        self.heads = heads
        self.background = clutter(size, np.random.default_rng(seed))
        self.cache: dict[tuple[str, int], tuple[Image.Image, Image.Image]] = {}

    def frame(self, shots: list[Shot], t: float) -> Image.Image:
        image = self.background.copy()
        for shot in shots:
            if shot.start <= t < shot.end:
                (left, top, side), _ = _placement(self.heads[shot.person], shot.place(t))
                cut, mask = self._cut(shot.person, side)
                image.paste(cut, (left, top), mask)
        return image

    def _cut(self, person: str, side: int) -> tuple[Image.Image, Image.Image]:
        key = (person, side)
        if key not in self.cache:
            if len(self.cache) > 256:
                self.cache.clear()
            mask = Image.new("L", (side, side), 0)
            ImageDraw.Draw(mask).ellipse((0, 0, side - 1, side - 1), fill=255)
            self.cache[key] = (self.heads[person].image.resize((side, side), Image.Resampling.BILINEAR),
                               mask.filter(ImageFilter.GaussianBlur(side / 30)))
        return self.cache[key]


def write_video(
    path: Path, heads: dict[str, Head], shots: list[Shot], *, duration: float, fps: float = 5.0,
    size: tuple[int, int] = (320, 240), codec: str | None = None, seed: int = 0, vfr: bool = False,
    rotation: int = 0, audio: bool = False,
) -> Video:
    """Write the script to ``path`` (container by suffix, module docstring) and describe what is in it.

    ``rotation`` (0, 90, 180, 270): the display matrix's counterclockwise turn; frames are stored turned the
    other way, so the displayed video is the script. ``audio`` adds a quiet tone track (an AAC or Opus stream).
    """
    import av

    codec = codec or CODECS[path.suffix.lower()]
    painter = _Painter(heads, size, seed)
    rng = np.random.default_rng(seed + 1)
    times = []
    t = 0.0
    while t < duration - 1e-9:
        times.append(round(t, 3))
        step = 1.0 / fps
        t += step * float(rng.uniform(0.5, 1.5)) if vfr else step
    stored = size if rotation % 180 == 0 else (size[1], size[0])
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1000), options=dict(OPTIONS.get(codec, {})))
        stream.width, stream.height = stored
        stream.pix_fmt = "yuv420p"
        stream.time_base = MS
        stream.codec_context.time_base = MS  # frame times in ms: variable rates need no grid
        if rotation:
            stream.set_display_rotation(rotation)
        sound = _audio_stream(out, path) if audio else None
        for t in times:
            picture = painter.frame(shots, t)
            if rotation:
                picture = picture.rotate(-rotation, expand=True)  # stored clockwise; shown turned back
            frame = av.VideoFrame.from_image(picture)
            frame.pts = round(t * 1000)
            frame.time_base = MS
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        if sound is not None:
            _write_tone(out, sound, duration)
    return Video(path, duration, fps, size, list(shots), times)


def _audio_stream(out: object, path: Path) -> object:
    codec = "libopus" if path.suffix.lower() == ".webm" else "aac"
    stream = out.add_stream(codec, rate=48000)  # type: ignore[attr-defined]
    stream.layout = "mono"
    return stream


def _write_tone(out: object, stream: object, duration: float) -> None:
    import av

    rate, block = 48000, 960
    total = int(duration * rate)
    for start in range(0, total, block):
        n = min(block, total - start)
        samples = (0.1 * np.sin(2 * np.pi * 440 * (start + np.arange(n)) / rate)).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        out.mux(stream.encode(frame))  # type: ignore[attr-defined]
    out.mux(stream.encode(None))  # type: ignore[attr-defined]


def write_audio(path: Path, seconds: float) -> Path:
    """An audio-only file (a tone; container by suffix, e.g. ``.m4a``, ``.wav``)."""
    import av

    with av.open(str(path), "w") as out:
        codec = "pcm_s16le" if path.suffix.lower() == ".wav" else "aac"
        stream = out.add_stream(codec, rate=48000)
        stream.layout = "mono"
        rate, block = 48000, 1024
        total = int(seconds * rate)
        for start in range(0, total, block):
            n = min(block, total - start)
            samples = (3000 * np.sin(2 * np.pi * 440 * (start + np.arange(n)) / rate)).astype(np.int16)[None]
            frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path
