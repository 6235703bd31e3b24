"""``engineshed import``: a folder into a library, concurrently, resumably, with a progress bar and a summary.

Files go straight to object storage by default: writable URLs are fetched in bulk (``getSignedWritableUrls``),
each file is PUT to one of them, and the identifiers are made from the URLs in aliased batches
(``createEntityIdentifier(input: {url})``), so the bytes never pass through the gateway. ``direct=False`` (or a
server or storage the client cannot use that way: an older gateway, storage it cannot reach) sends each file as a
multipart ``createEntityIdentifier`` instead.

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
from engineshed.client.errors import ApiError, AuthenticationError, ConnectionFailed, StorageRefused
from engineshed.client.operations.uploads import BATCH, MAX_URLS

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


@dataclass(frozen=True, slots=True)
class Ready:
    """A file checked and about to be sent: its entity, content type, digest and size."""

    entity_id: str
    content_type: str
    sha: str
    size: int
    key: tuple[str, str]  # (entity name, sha): marks it in flight


class UrlPool:
    """Writable URLs fetched in bulk and handed out one per file (thread-safe); a URL past half its life is not
    handed out (a slow upload must still find it valid), and the server deletes what was never used."""

    def __init__(self, client: Client, remaining: int) -> None:
        self.client = client
        self.remaining = remaining  # files that may still need one: no more URLs than that are asked for
        self._lock = threading.Lock()
        self._urls: list[str] = []
        self._use_by = 0.0

    def take(self) -> str:
        with self._lock:
            if not self._urls or time.monotonic() > self._use_by:
                number = max(1, min(MAX_URLS, self.remaining))
                asked = time.monotonic()
                found = self.client.writable_urls(number)
                self._urls = [u["url"] for u in found]
                self._use_by = asked + min(u["expiresInSeconds"] for u in found) / 2
            self.remaining -= 1
            return self._urls.pop()


class Registrar:
    """Identifiers from uploaded files, sent in aliased batches: a batch goes when it is full (from the thread that
    filled it) or when ``flush`` is called (nothing else is being uploaded)."""

    def __init__(self, client: Client, size: int = BATCH) -> None:
        self.client = client
        self.size = size
        self._lock = threading.Lock()
        self._pending: list[tuple[dict[str, Any], Future[Any]]] = []

    def add(self, fields: dict[str, Any]) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            self._pending.append((fields, future))
            batch = self._take() if len(self._pending) >= self.size else []
        self._send(batch)
        return future

    def flush(self) -> None:
        with self._lock:
            batch = self._take()
        self._send(batch)

    def _take(self) -> list[tuple[dict[str, Any], Future[Any]]]:
        batch, self._pending = self._pending[: self.size], self._pending[self.size:]
        return batch

    def _send(self, batch: list[tuple[dict[str, Any], Future[Any]]]) -> None:
        if not batch:
            return
        try:
            results = self.client.create_identifiers_from_urls([fields for fields, _ in batch])
        except BaseException as exc:  # noqa: BLE001 - every file of the batch gets the request's error
            for _, future in batch:
                future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results):
            future.set_result(result)


class Importer:
    """One import run. ``progress(advance, description)`` is told about each file finished. ``direct``: files go
    straight to storage (the default), else as multipart uploads through the gateway."""

    def __init__(self, client: Client, library_id: str, identifier_type: str, *, concurrency: int = 8,
                 known: dict[str, dict[str, Any]] | None = None, direct: bool = True) -> None:
        self.client = client
        self.library_id = library_id
        self.identifier_type = identifier_type
        self.concurrency = max(1, concurrency)
        self.known = known if known is not None else {}
        self.direct = direct
        self._lock = threading.Lock()
        self._entity_locks: dict[str, threading.Lock] = {}
        self._in_flight: set[tuple[str, str]] = set()
        self._registering: dict[Future[Any], Ready] = {}
        self._urls = UrlPool(client, 0)
        self._registrar = Registrar(client)
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

    def _prepare(self, item: Item) -> tuple[str, str | None, Ready | None]:
        """(status, reason, None) when the file is not to be sent, else ('ready', None, what to send): marked in
        flight, which the caller must end (``_release``)."""
        if self.stop.is_set():
            return "not_started", None, None
        try:
            sha, size = digest(item.path)
        except OSError as exc:
            return "failed", f"cannot read: {exc.strerror or exc}", None
        key = (item.entity, sha)
        with self._lock:
            entry = self.known.get(item.entity)
            if (entry is not None and sha in entry["sha256"]) or key in self._in_flight:
                return "skipped", None, None  # already in the library, or a copy of a file being uploaded now
            self._in_flight.add(key)
        try:
            content_type, refused = inspect(item, self.identifier_type, size)
            if refused:
                self._release(key)
                return "failed", refused, None
            return "ready", None, Ready(self._entity_id(item.entity), content_type, sha, size, key)
        except BaseException:
            self._release(key)
            raise

    def _release(self, key: tuple[str, str], sha_added: str | None = None, size: int = 0) -> None:
        with self._lock:
            self._in_flight.discard(key)
            if sha_added is not None:
                self.known[key[0]]["sha256"].add(sha_added)
                self.outcome.bytes_uploaded += size

    def _one(self, item: Item) -> tuple[str, str | None] | Future[Any]:
        """('uploaded' | 'skipped' | 'failed' | 'not_started', reason), or, for a file PUT to storage, the Future
        of its identifier (see ``_registered``)."""
        try:
            status, reason, ready = self._prepare(item)
        except (AuthenticationError, ConnectionFailed):
            raise
        except ApiError as exc:
            return "failed", f"{exc.code}: {exc.message}"
        if ready is None:
            return status, reason
        if self.direct:
            try:
                url = self._urls.take()
                self.client.put_file(url, item.path, content_type=ready.content_type)
            except AuthenticationError:
                self._release(ready.key)
                raise
            except (ApiError, ConnectionFailed, StorageRefused):
                # A gateway without writable URLs, or storage this machine cannot reach as signed: the rest of the
                # import goes through the gateway, starting with this file.
                self.direct = False
            except OSError as exc:
                self._release(ready.key)
                return "failed", f"cannot read: {exc.strerror or exc}"
            else:
                future = self._registrar.add({
                    "entityId": ready.entity_id, "identifierTypeId": self.identifier_type, "url": url,
                    "contentType": ready.content_type, "uniqueName": item.relative,
                })
                with self._lock:
                    self._registering[future] = ready
                return future
        try:
            # The path under the folder is the uniqueName as it is: the server's default keeps only the file
            # name, and `01.png` in every entity folder would otherwise get an id-prefixed name after the first.
            self.client.create_entity_identifier(ready.entity_id, item.path, identifier_type_id=self.identifier_type,
                                                 filename=item.relative, content_type=ready.content_type,
                                                 unique_name=item.relative)
        except (AuthenticationError, ConnectionFailed):
            self._release(ready.key)
            raise
        except ApiError as exc:
            self._release(ready.key)
            return "failed", f"{exc.code}: {exc.message}"
        except OSError as exc:
            self._release(ready.key)
            return "failed", f"cannot read: {exc.strerror or exc}"
        self._release(ready.key, ready.sha, ready.size)
        return "uploaded", None

    def _registered(self, future: Future[Any]) -> tuple[str, str | None]:
        """The outcome of a file PUT to storage, from its identifier's Future (raises what ends the import)."""
        with self._lock:
            ready = self._registering.pop(future)
        try:
            result = future.result()
        except (AuthenticationError, ConnectionFailed):
            self._release(ready.key)
            raise
        except ApiError as exc:
            result = exc
        if isinstance(result, ApiError):
            self._release(ready.key)
            return "failed", f"{result.code}: {result.message}"
        self._release(ready.key, ready.sha, ready.size)
        return "uploaded", None

    def run(self, items: list[Item], progress: Callable[[int], None] = lambda n: None) -> Outcome:
        started = time.monotonic()
        outcome = self.outcome
        self._urls.remaining = len(items)
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="import")
        pending: dict[Future[Any], Item] = {}
        queue: Iterator[Item] = iter(items)
        fatal: BaseException | None = None

        def settle(future: Future[Any], item: Item) -> None:
            """Count a finished future; a file PUT to storage waits for its identifier instead."""
            nonlocal fatal
            registering = future in self._registering
            try:
                value = self._registered(future) if registering else future.result()
            except (AuthenticationError, ConnectionFailed) as exc:
                fatal = fatal or exc
                self.stop.set()
                return
            if isinstance(value, Future):
                pending[value] = item
                return
            status, reason = value
            self._count(outcome, item, status, reason)
            progress(1)

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
                    staged = future not in self._registering
                    settle(future, item)
                    if staged and not self.stop.is_set():
                        nxt = next(queue, None)
                        if nxt is not None:
                            pending[pool.submit(self._one, nxt)] = nxt
                if pending and all(f in self._registering for f in pending):
                    self._registrar.flush()  # nothing else is being uploaded: send the last, partial batch
        except KeyboardInterrupt:
            outcome.interrupted = True
            self.stop.set()
            # The uploads in flight finish and become identifiers (each is atomic on the server); nothing new starts.
            while pending:
                self._registrar.flush()
                done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    settle(future, pending.pop(future))
        finally:
            self._registrar.flush()
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
