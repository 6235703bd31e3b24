"""``engineshed recognize video.mp4 --library L``: recognition over time on a video or a long recording.

The file is streamed as the body of ``POST /v3/media`` (held to the media limit, not GraphQL's multipart one; an
upload bar counts it); a progress bar follows the job's task while a worker reads the media;
then the segments print as a table (``--json``: the job and its segments), and ``--timeline out.html`` saves the
timeline page. Ctrl-C while it runs cancels the job: nothing goes on working for a command the user stopped.
"""

from __future__ import annotations

import argparse
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from engineshed.cli import output
from engineshed.client import Client, Upload
from engineshed.client.errors import ApiError, ConnectionFailed

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".wmv",
                  ".flv", ".3gp", ".ogv"}
AUDIO_SUFFIXES = {".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".oga", ".opus", ".wma", ".aiff", ".aif"}
LONG_SECONDS = 60.0  # a recording longer than this is recognized over time (shorter ones as one voice, as before)
LONG_BYTES = 4 * 1024 * 1024  # compressed audio this large runs for minutes (4 MiB of 128 kbit/s MP3: 4.4 minutes)
# ISO BMFF brands of still images and plain audio, which share MP4's "ftyp" box with video.
NOT_VIDEO_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"mif1", b"msf1", b"avif", b"avis", b"M4A ", b"M4B "}
FINISHED = ("complete", "failed", "cancelled")


def sniff_video(head: bytes) -> bool:
    """Whether the first bytes of a file are a video container's: MP4/MOV (ftyp of a video brand), Matroska/WebM
    (EBML), AVI, MPEG program or transport streams, FLV, ASF/WMV."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return head[8:12] not in NOT_VIDEO_BRANDS
    if head[:4] == b"\x1a\x45\xdf\xa3" or head[:3] == b"FLV" or head[:4] == b"\x00\x00\x01\xba":
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return True
    if head[:4] == b"\x30\x26\xb2\x75":
        return True
    return len(head) > 188 and head[0] == 0x47 and head[188] == 0x47


def is_media(path: Path, forced: bool = False) -> bool:
    """Whether ``recognize`` should treat the file as media over time: ``--media``, a video (by its first bytes or
    its name), or a long recording (a WAV over a minute; other audio over a few MiB). An image, or a short
    recording, keeps the one-answer recognition."""
    if forced:
        return True
    with path.open("rb") as fh:
        head = fh.read(256)
    suffix = path.suffix.lower()
    if sniff_video(head) or suffix in VIDEO_SUFFIXES:
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        try:
            with wave.open(str(path), "rb") as recording:
                return recording.getnframes() / max(1, recording.getframerate()) > LONG_SECONDS
        except (wave.Error, EOFError):
            return False
    return suffix in AUDIO_SUFFIXES and path.stat().st_size > LONG_BYTES


def clock(seconds: float) -> str:
    """``75.25`` -> ``1:15.25``; an hour or more as ``1:02:05.00``."""
    hours, rest = divmod(max(0.0, seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{int(hours)}:{int(minutes):02d}:{secs:05.2f}" if hours >= 1 else f"{int(minutes)}:{secs:05.2f}"


def who(segment: dict[str, Any]) -> str:
    if segment.get("entityId"):
        return segment.get("entityName") or segment["entityId"]
    return f"({segment['label']})"


def _progress(job: dict[str, Any]) -> tuple[float, str]:
    tasks = job["tasks"]["records"]
    if job["status"] == "complete":
        return 1.0, "complete"
    done = sum(t["progress"] or 0.0 for t in tasks) / len(tasks) if tasks else 0.0
    message = next((t["progressMessage"] for t in tasks if t.get("progressMessage")), None)
    return done, message or job["status"]


def _reasons(job: dict[str, Any]) -> str:
    # The message says what went wrong; the reason code is shown only when it says more than "other" (every
    # engine error's code), which reads as noise in front of the message.
    reasons = [f"{'' if t.get('failureReason') == 'other' else t.get('failureReason') or ''}: "
               f"{t.get('failureMessage') or ''}".strip(": ") for t in job["tasks"]["records"]]
    return "; ".join(r for r in reasons if r) or ("the job was cancelled" if job["status"] == "cancelled" else "no reason given")


def run(args: argparse.Namespace, client: Client, library_id: str | None,
        follow: Callable[[Client, str], Iterator[dict[str, Any]]]) -> int:
    """Start the media job, follow it with a progress bar, print its segments; Ctrl-C cancels it."""
    if args.model_id:
        output.fail("a video or long recording is recognized with a library's model: give --library or --model")
        return output.USAGE
    if args.timeline is not None and not args.timeline.parent.is_dir():
        output.fail(f"--timeline: {args.timeline.parent} is not a directory")
        return output.USAGE
    # A long video takes minutes to send before the job exists: its own bar, so the terminal is not silent.
    sending = (TextColumn(f"uploading {args.file.name}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*sending, console=output.stderr, disable=args.json) as progress:
        bar = progress.add_task("upload", total=args.file.stat().st_size)
        base = Upload.of(args.file)
        upload = CountedUpload(base.source, base.filename, base.content_type,
                               lambda sent: progress.update(bar, completed=sent))
        job = client.recognize_media(upload, library_id=library_id, library_engine_model_id=args.library_engine_model_id,
                                     frame_interval=args.frame_interval, speakers=args.speakers, top_k=args.top_k,
                                     threshold=args.threshold)
    last = job
    columns = (TextColumn(f"recognizing {args.file.name}"), BarColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    try:
        with Progress(*columns, console=output.stderr, disable=args.json) as progress:
            bar = progress.add_task("media", total=1.0, status="queued")
            for update in follow(client, job["id"]):
                last = update
                done, status = _progress(update)
                progress.update(bar, completed=done, status=status[:60])
                if update["status"] in FINISHED:
                    break
    except KeyboardInterrupt:
        return _cancel(client, job["id"])
    if last["status"] != "complete":
        if args.json:
            output.emit_json({"job": last, "segments": [], "exitStatus": output.FAILED})
        else:
            output.fail(f"job {job['id']} {last['status']}: {_reasons(last)}")
        return output.FAILED
    segments = client.segments(job["id"])
    if args.timeline:
        try:
            args.timeline.write_text(client.timeline(job["id"]), encoding="utf-8")
        except OSError as exc:
            output.fail(f"--timeline: cannot write {args.timeline}: {exc.strerror or exc}")
            return output.FAILED
    if args.json:
        output.emit_json({"job": last, "segments": segments, "exitStatus": output.OK})
        return output.OK
    if not segments:  # an empty table's frame reads as if something failed to print
        output.stdout.print(f"{args.file.name}: no one seen or heard, job {job['id']}", highlight=False)
        if args.timeline:
            output.note(f"timeline saved to {args.timeline}")
        return output.OK
    output.table(f"{args.file.name}: {len(segments)} segment(s), job {job['id']}",
                 ["start", "end", "who", "confidence", "kind"],
                 [(clock(s["startSeconds"]), clock(s["endSeconds"]), who(s), f"{s['confidence']:.3f}",
                   "face" if s["kind"] == "face" else "voice") for s in segments])
    if any(not s.get("entityId") for s in segments):
        # An unknown's confidence is the score of the library person it came closest to, which reads as certainty
        # unless said: a user who knows the face is enrolled learns why it is unknown and what to change.
        output.note("(unknown-…): someone not matched to anyone in the library; their confidence is the best score any "
                    "library person reached, below the model's threshold (--threshold sets another)")
    if args.timeline:
        output.note(f"timeline saved to {args.timeline}")
    return output.OK


@dataclass(frozen=True, slots=True)
class CountedUpload(Upload):
    """A file upload that reports how far into the file the sender has read (a retry starts again from 0)."""

    report: Callable[[int], Any] = lambda sent: None  # the bytes read so far go nowhere by default

    @contextmanager
    def opened(self) -> Iterator[IO[bytes] | bytes]:
        with super(CountedUpload, self).opened() as content:
            yield content if isinstance(content, bytes) else _Counting(content, self.report)  # type: ignore[misc]


class _Counting:
    """A file whose reads report the position reached; length and seeking as the file's (httpx reads them)."""

    def __init__(self, file: IO[bytes], report: Callable[[int], Any]) -> None:
        self._file, self._report = file, report

    def read(self, size: int = -1) -> bytes:
        chunk = self._file.read(size)
        self._report(self._file.tell())
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def fileno(self) -> int:
        return self._file.fileno()


def _cancel(client: Client, job_id: str) -> int:
    """Ctrl-C: the job is cancelled, since nobody is waiting for its result any more."""
    try:
        client.cancel_job(job_id)
        output.note(f"interrupted: job {job_id} cancelled")
    except (ApiError, ConnectionFailed) as exc:
        output.fail(f"interrupted, and job {job_id} could not be cancelled ({exc}): "
                    f"`engineshed jobs cancel {job_id}` stops it")
    return output.INTERRUPTED


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``recognize``'s options for media over time."""
    group = parser.add_argument_group("video and long recordings (recognized over time, as a job)")
    group.add_argument("--media", action="store_true",
                       help="treat FILE as media over time even when it does not look like a video or long recording")
    group.add_argument("--frame-interval", type=float, help="seconds between sampled video frames (default: the server's, 0.5)")
    group.add_argument("--speakers", type=int, help="how many people speak in the recording, when known")
    group.add_argument("--timeline", type=Path, metavar="OUT.html", help="also save the timeline page (HTML) here")


def image_only_options(args: argparse.Namespace) -> list[str]:
    """The media options given for a file that is not media (refused: they would be silently ignored)."""
    given = [("--frame-interval", args.frame_interval), ("--speakers", args.speakers), ("--timeline", args.timeline)]
    return [name for name, value in given if value is not None]
