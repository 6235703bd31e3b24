"""``engineshed import``: a folder into a library, concurrently, resumably, with a progress bar and a summary.

Resuming is by content: before uploading, the library's identifiers' ``contentSha256`` are read per entity, and
a file whose SHA-256 its entity already holds is skipped. Ctrl-C stops handing out files, lets the uploads in
flight finish (each is all-or-nothing on the server), prints what was done and exits 130; running the same
command again uploads only the rest. Files that are not images (or audio, for audio types) and corrupt images
are reported with their reason and do not stop the import; the exit status is 1 when any file failed.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engineshed.client import Client
from engineshed.client.errors import ApiError, AuthenticationError, ConnectionFailed

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac"}
AUDIO_TYPES = {"audio-recording"}
LIBRARY_TYPE_FOR = {"face": "people", "image": "objects", "audio-recording": "speakers", "text": "documents"}
CHUNK = 1024 * 1024


@dataclass
class Item:
    path: Path
    relative: str  # posix path under the imported folder (`alice/01.png`): the uploaded file's name and its uniqueName
    entity: str


@dataclass
class Outcome:
    uploaded: int = 0
    skipped: int = 0  # already in the library (same content in the same entity), or a duplicate within the folder
    failed: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    entities_created: int = 0
    interrupted: bool = False
    not_started: int = 0
    bytes_uploaded: int = 0
    seconds: float = 0.0
    library_id: str = ""
    library_created: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "libraryId": self.library_id, "libraryCreated": self.library_created, "uploaded": self.uploaded,
            "skipped": self.skipped, "failed": [{"path": p, "reason": r} for p, r in self.failed],
            "entitiesCreated": self.entities_created, "interrupted": self.interrupted, "notStarted": self.not_started,
            "bytesUploaded": self.bytes_uploaded, "seconds": round(self.seconds, 3),
        }


def scan(root: Path, entity_per_folder: bool) -> tuple[list[Item], list[tuple[str, str]]]:
    """The files to import, and those refused by their place (loose files when every folder is an entity).

    Hidden files and folders (``.DS_Store``, ``.git``) are not data and are passed over silently.
    """
    items: list[Item] = []
    refused: list[tuple[str, str]] = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        name = relative.as_posix()
        if entity_per_folder:
            if len(relative.parts) < 2:
                refused.append((name, "not inside an entity folder (with --entity-per-folder each subfolder is one entity)"))
                continue
            items.append(Item(path, name, relative.parts[0]))
        else:
            items.append(Item(path, name, relative.with_suffix("").as_posix()))
    return items, refused


def digest(path: Path) -> tuple[str, int]:
    """The file's SHA-256 (hex) and size, read in chunks."""
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), size


def inspect(item: Item, identifier_type: str, size: int) -> tuple[str, str | None]:
    """(content type, reason refused): whether the file is what the identifier type holds.

    Run only for files about to be uploaded: a resumed import skips what the library holds on the digest alone.
    """
    suffix = item.path.suffix.lower()
    if identifier_type in AUDIO_TYPES:
        if suffix not in AUDIO_SUFFIXES:
            return "", f"not an audio file ({suffix or 'no extension'}; expected {', '.join(sorted(AUDIO_SUFFIXES))})"
        import mimetypes

        return mimetypes.guess_type(item.path.name)[0] or "audio/wav", None
    if size == 0:
        return "", "empty file"
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(item.path) as image:
            image_format = image.format or ""
            image.verify()  # structure and checksums, without decoding every pixel
    except UnidentifiedImageError:
        return "", "not an image" + (f" ({suffix})" if suffix else "")
    except Exception as exc:  # Pillow raises many kinds (SyntaxError, OSError, struct.error) for a damaged file
        return "", f"corrupt image: {exc}".rstrip(": ") or "corrupt image"
    return Image.MIME.get(image_format.upper(), "application/octet-stream"), None


class Importer:
    """One import run. ``progress(advance, description)`` is told about each file finished."""

    def __init__(self, client: Client, library_id: str, identifier_type: str, *, concurrency: int = 8,
                 known: dict[str, dict[str, Any]] | None = None) -> None:
        self.client = client
        self.library_id = library_id
        self.identifier_type = identifier_type
        self.concurrency = max(1, concurrency)
        self.known = known if known is not None else {}
        self._lock = threading.Lock()
        self._entity_locks: dict[str, threading.Lock] = {}
        self._in_flight: set[tuple[str, str]] = set()
        self.outcome = Outcome(library_id=library_id)
        self.stop = threading.Event()

    def _entity_id(self, name: str) -> str:
        with self._lock:
            lock = self._entity_locks.setdefault(name, threading.Lock())
        with lock:  # one creation per entity name, however many of its files are in flight
            entry = self.known.get(name)
            if entry is None:
                created = self.client.create_entity(self.library_id, name)
                entry = {"id": created["id"], "sha256": set()}
                with self._lock:
                    self.known[name] = entry
                    self.outcome.entities_created += 1
            return entry["id"]

    def _one(self, item: Item) -> tuple[str, str | None]:
        """('uploaded' | 'skipped' | 'failed', reason)."""
        if self.stop.is_set():
            return "not_started", None
        try:
            sha, size = digest(item.path)
        except OSError as exc:
            return "failed", f"cannot read: {exc.strerror or exc}"
        key = (item.entity, sha)
        with self._lock:
            entry = self.known.get(item.entity)
            if (entry is not None and sha in entry["sha256"]) or key in self._in_flight:
                return "skipped", None  # already in the library, or a copy of a file being uploaded now
            self._in_flight.add(key)
        try:
            content_type, refused = inspect(item, self.identifier_type, size)
            if refused:
                return "failed", refused
            entity_id = self._entity_id(item.entity)
            # The path under the folder is the uniqueName as it is: the server's default keeps only the file
            # name, and `01.png` in every entity folder would otherwise get an id-prefixed name after the first.
            self.client.create_entity_identifier(entity_id, item.path, identifier_type_id=self.identifier_type,
                                                 filename=item.relative, content_type=content_type,
                                                 unique_name=item.relative)
            with self._lock:
                self.known[item.entity]["sha256"].add(sha)
                self.outcome.bytes_uploaded += size
            return "uploaded", None
        except (AuthenticationError, ConnectionFailed):
            raise  # the whole import cannot go on: stop and say so once
        except ApiError as exc:
            return "failed", f"{exc.code}: {exc.message}"
        except OSError as exc:
            return "failed", f"cannot read: {exc.strerror or exc}"
        finally:
            with self._lock:
                self._in_flight.discard(key)

    def run(self, items: list[Item], progress: Callable[[int], None] = lambda n: None) -> Outcome:
        started = time.monotonic()
        outcome = self.outcome
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="import")
        pending: dict[Future[tuple[str, str | None]], Item] = {}
        queue: Iterator[Item] = iter(items)
        fatal: BaseException | None = None
        try:
            # At most a few files per thread are handed out ahead, so Ctrl-C leaves little in flight.
            for item in queue:
                pending[pool.submit(self._one, item)] = item
                if len(pending) >= self.concurrency * 2:
                    break
            while pending:
                done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    item = pending.pop(future)
                    try:
                        status, reason = future.result()
                    except (AuthenticationError, ConnectionFailed) as exc:
                        fatal = fatal or exc
                        self.stop.set()
                        continue
                    self._count(outcome, item, status, reason)
                    progress(1)
                    if not self.stop.is_set():
                        nxt = next(queue, None)
                        if nxt is not None:
                            pending[pool.submit(self._one, nxt)] = nxt
        except KeyboardInterrupt:
            outcome.interrupted = True
            self.stop.set()
            # The uploads in flight finish (each is atomic on the server); nothing new starts.
            for future, item in list(pending.items()):
                try:
                    status, reason = future.result()
                except (AuthenticationError, ConnectionFailed):
                    status, reason = "not_started", None
                self._count(outcome, item, status, reason)
            pending.clear()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        outcome.not_started += sum(1 for _ in queue)
        outcome.seconds = time.monotonic() - started
        if fatal is not None:
            raise fatal
        return outcome

    @staticmethod
    def _count(outcome: Outcome, item: Item, status: str, reason: str | None) -> None:
        if status == "uploaded":
            outcome.uploaded += 1
        elif status == "skipped":
            outcome.skipped += 1
        elif status == "not_started":
            outcome.not_started += 1
        else:
            outcome.failed.append((item.relative, reason or "failed"))
