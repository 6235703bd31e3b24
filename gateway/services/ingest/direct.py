"""Direct uploads: presigned PUT URLs handed to clients, and identifiers made from what they PUT, in place.

A client asks for writable URLs (getSignedWritableUrl / getSignedWritableUrls), PUTs each file straight to S3,
and names the URL in createEntityIdentifier. The bytes never pass through the gateway on the way in; the
gateway reads the object once to check it (its size against the limit, its first bytes against the identifier
type, an image decoded whole) and the identifier then points at that very key: nothing is copied.

Rules:
- Keys are ``uploads/<organization>/<name>``: a client's name keeps its extension with a UUID inserted before it
  (``photo.jpg`` -> ``photo-<uuid>.jpg``), anything else gets a UUID appended, and no name at all is a UUID;
  characters outside ``A-Z a-z 0-9 . _ -`` become ``_``. A key is issued to one organization (recorded in
  ``direct_uploads``): another organization's key, or one never issued, is not_found.
- An object may become an identifier while its record's registration window is open (the URL's expiry plus
  ENGINESHED_DIRECT_UPLOAD_KEEP_SECONDS). One object is one identifier: a unique index on the identifier's key
  refuses a second, in the statement that would insert it (aliases in one request are separate identifiers of
  separate keys).
- An object that fails its checks is deleted with its record, and the answer is invalid_input.
- Housekeeping deletes the objects of records whose window closed and that no identifier holds (``sweep``).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit
from uuid import UUID, uuid4

import asyncpg

from gateway.errors import InvalidInput, NotAllowed, NotFound, ServiceUnavailable
from gateway.resources import Resources
from gateway.services import links
from gateway.services.access.ids import parse_id
from gateway.services.access.principal import Principal
from gateway.services.ingest import content_sniff, embed_targets, naming, uploads
from gateway.services.library import identifiers as identifier_service
from gateway.services.library.entities import jsondata_of
from storage.blobs import BlobError, BlobMissing, BlobTooLarge
from storage.queries import direct_uploads as q
from storage.rows import Identifier

PREFIX = "uploads"
MAX_URLS = 1000  # per getSignedWritableUrls call, as upstream
NAME_CHARS = 100  # of a client's name kept in the key
# Housekeeping deletes an unregistered object this long after its registration window closed, so that a
# createEntityIdentifier that checked the record just before the window closed finishes before its object goes.
SWEEP_MARGIN_SECONDS = 600
UNIQUE_KEY_INDEX = "entity_identifiers_direct_upload_key"
# Images of at most this many pixels are checked on the event loop (64×64: ~0.2 ms), by pixels rather than bytes
# since a few kilobytes of PNG may hold a huge flat image.
INLINE_DECODE_PIXELS = 128 * 128
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True, slots=True)
class WritableUrl:
    bucket: str
    key: str
    expires_in_seconds: int
    expires_at: datetime
    url: str  # presigned PUT
    unsigned_url: str


def object_name(name: str | None) -> str:
    """The last segment of a key for a client's ``name``: a UUID inserted before the extension, or appended."""
    unique = str(uuid4())
    base = _UNSAFE.sub("_", (name or "").replace("\\", "/").rsplit("/", 1)[-1]).strip("._")[:NAME_CHARS]
    if not base:
        return unique
    stem, dot, extension = base.rpartition(".")
    if dot and stem and extension:
        return f"{stem}-{unique}.{extension}"
    return f"{base}-{unique}"


async def issue(res: Resources, principal: Principal, number: int, name: str | None = None) -> list[WritableUrl]:
    """``number`` writable URLs for the caller's organization (1 to MAX_URLS), recorded in one statement."""
    principal.require_write()
    if not isinstance(number, int) or not 1 <= number <= MAX_URLS:
        raise InvalidInput(f"number must be 1 to {MAX_URLS}, not {number}")
    settings = res.settings
    if links.through_gateway(settings):
        # Here clients cannot reach S3 (the gateway serves the file links), so a URL to PUT to would not work.
        raise NotAllowed("writable URLs are not offered here: clients cannot reach this deployment's storage "
                         "(ENGINESHED_LINKS serves files through the gateway); upload with a multipart "
                         "createEntityIdentifier instead")
    ttl = settings.direct_upload_ttl_seconds
    file_name = naming.default_unique_name(name, None) if name else None
    keys = [f"{PREFIX}/{principal.org_id}/{object_name(name)}" for _ in range(number)]
    now = datetime.now(UTC)
    expires_at = now + timedelta(seconds=ttl)
    register_until = expires_at + timedelta(seconds=settings.direct_upload_keep_seconds)
    async with res.pool.acquire() as conn:
        await q.issue(conn, principal.org_id, keys, expires_at, register_until, settings.max_upload_bytes, file_name)
    urls = []
    for key in keys:
        put = await res.blobs.presign_put(key, ttl)
        urls.append(WritableUrl(bucket=res.blobs.bucket, key=key, expires_in_seconds=ttl, expires_at=expires_at, url=put,
                                unsigned_url=put.split("?", 1)[0]))
    return urls


async def get_url(res: Resources, key: str) -> str:
    """A presigned GET URL of an issued key (WritableUrlInfo.getUrl)."""
    return await res.blobs.presign_get(key, res.settings.presign_ttl_seconds)


def key_of(bucket: str, url: str | None) -> str | None:
    """The direct-upload key a URL names (the signed PUT or GET URL, the unsigned URL, or the key itself); None
    when it names none, and the URL is then an ordinary one to fetch."""
    text = (url or "").strip()
    if text.startswith(PREFIX + "/"):
        key = text
    else:
        parts = urlsplit(text)
        marker = f"/{bucket}/{PREFIX}/"
        path = unquote(parts.path)
        if parts.scheme not in ("http", "https") or marker not in path:
            return None
        key = path[path.index(marker) + len(bucket) + 2:]
    segments = key.split("/")
    if len(segments) != 3 or segments[0] != PREFIX or not segments[2]:
        return None
    try:
        UUID(segments[1])
    except ValueError:
        return None
    return key


class ReadAhead:
    """The objects of one request's direct uploads (aliased createEntityIdentifier fields), read from storage a few
    ahead of the one being made: GraphQL runs a document's mutation fields one after another, and without this each
    would wait for its own read in turn. Only keys of the caller's organization are read; at most ``window``
    objects are read ahead at a time, so memory stays bounded whatever the request holds."""

    def __init__(self, res: Resources, principal: Principal, keys: list[str], window: int = 8) -> None:
        prefix = f"{PREFIX}/{principal.org_id}/"
        self._res = res
        self._keys = [k for k in keys if k.startswith(prefix)]
        self._window = window
        self._reads: dict[str, asyncio.Future[bytes | BaseException]] = {}

    def take(self, key: str) -> asyncio.Future[bytes | BaseException]:
        """The read of ``key`` (started now unless it was), with the next ``window`` keys' reads started too."""
        after = self._keys.index(key) + 1 if key in self._keys else len(self._keys)
        for ahead in [key, *self._keys[after:after + self._window]]:
            if ahead not in self._reads:
                self._reads[ahead] = asyncio.ensure_future(_read_result(self._res, ahead))
        return self._reads.pop(key)


async def _read_result(res: Resources, key: str) -> bytes | BaseException:
    """The object's bytes, or what reading it raised (returned: a read ahead that is never taken must not leave an
    exception nobody retrieved)."""
    try:
        return await res.blobs.get_bytes(key, max_bytes=res.settings.max_upload_bytes)
    except Exception as exc:  # noqa: BLE001 - handed to the caller, which raises it
        return exc


async def create(res: Resources, principal: Principal, data: dict[str, Any], key: str,
                 read_ahead: ReadAhead | None = None) -> Identifier:
    """createEntityIdentifier with a direct-upload URL: the checks of any new identifier (library/identifiers.py
    create), then the object's, and the row pointing at ``key``. ``read_ahead``: the request's reads, when it
    makes several identifiers."""
    principal.require_write()
    if not key.startswith(f"{PREFIX}/{principal.org_id}/"):
        raise NotFound()
    eid = parse_id(data["entity_id"]) if data.get("entity_id") else None
    lid = parse_id(data["library_id"]) if data.get("library_id") else None
    if eid is None and lid is None:
        raise InvalidInput("entityId or libraryId is required (libraryId alone: an unassigned identifier)")
    if lid is not None:
        principal.check_library(lid)
    type_id = data.get("identifier_type_id")
    if not type_id:
        raise InvalidInput("identifierTypeId is required")
    declared = uploads.check_mime(data["content_type"]) if data.get("content_type") else "application/octet-stream"
    profile_mode = data.get("profile_update_mode") or "none"
    if profile_mode not in identifier_service.PROFILE_MODES:
        raise InvalidInput(f"profileUpdateMode must be one of {', '.join(identifier_service.PROFILE_MODES)}")
    explicit_name = naming.check_unique_name(data["unique_name"]) if data.get("unique_name") is not None else None
    jsondata = jsondata_of(data)

    # The checks and the object's read run side by side: one round trip to each.
    reading = read_ahead.take(key) if read_ahead is not None else asyncio.ensure_future(_read_result(res, key))
    try:
        target = await _target(res, principal, eid, lid, type_id, key)
    except BaseException:
        reading.cancel()
        raise
    read = await reading
    _check_target(target, eid, lid, type_id, profile_mode)
    if target["upload_max_bytes"] is None:
        raise NotFound()  # never issued to this organization, or its window closed
    if target["upload_registered"]:
        raise InvalidInput("this upload is already an identifier; upload the file again for another",
                           data={"reason": "already-registered"})
    content, content_type = await _checked(res, principal, key, read, target, declared)

    versions = embed_targets.ingest_versions(res, target["data_type"], target["ingest_versions"])
    values: dict[str, Any] = {
        "id": uuid4(), "org_id": principal.org_id, "library_id": target["library_id"], "entity_id": eid, "identifier_type_id": type_id,
        "title": data.get("title"), "is_priority": bool(data.get("is_priority") or False), "content_type": content_type,
        "jsondata": jsondata, "storage_key": key, "reference_url": None, "content_length": len(content),
        "content_sha256": hashlib.sha256(content).hexdigest(), "unique_name": explicit_name,
    }
    default_name = None if explicit_name is not None else (target["upload_file_name"] or None)
    try:
        async with res.pool.acquire() as conn:
            return await identifier_service._insert_named(conn, False, values, default_name, versions, principal,
                                                          profile_mode)
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name == UNIQUE_KEY_INDEX:
            raise InvalidInput("this upload is already an identifier; upload the file again for another",
                               data={"reason": "already-registered"}) from None
        raise


async def _target(res: Resources, principal: Principal, eid: UUID | None, lid: UUID | None, type_id: str,
                  key: str) -> asyncpg.Record | None:
    default_embedder = embed_targets.ingest_default_name(type_id)
    async with res.pool.acquire() as conn:
        return await q.target(conn, principal.org_id, eid or lid, type_id, default_embedder, key, library=eid is None)


def _check_target(target: asyncpg.Record | None, eid: UUID | None, lid: UUID | None, type_id: str,
                  profile_mode: str) -> None:
    """The rules library/identifiers.py create applies to where a new identifier goes."""
    if target is None:
        raise NotFound()
    if lid is not None and target["library_id"] != lid:
        raise InvalidInput(f"entity {eid} is not in library {lid}")
    if eid is None and profile_mode != "none":
        raise InvalidInput(f"profileUpdateMode {profile_mode} needs an entity; an unassigned identifier has none")
    if not target["type_known"]:
        raise InvalidInput(f"unknown identifierTypeId {type_id!r}")
    allowed = target["identifier_type_ids"]
    if type_id not in allowed:
        takes = f"identifiers of type {', '.join(allowed)}" if allowed else "no identifiers (its type names no identifier types)"
        raise InvalidInput(f"a {target['library_type_id']} library takes {takes}, not {type_id}")
    if profile_mode != "none" and target["data_type"] != "image":
        raise InvalidInput(f"profileUpdateMode {profile_mode} needs an image identifier type, not {type_id} ({target['data_type']})")


async def _checked(res: Resources, principal: Principal, key: str, read: bytes | BaseException, target: asyncpg.Record,
                   declared: str) -> tuple[bytes, str]:
    """The object's bytes and the content type to store, or the object deleted and invalid_input."""
    limit = min(int(target["upload_max_bytes"]), res.settings.max_upload_bytes)
    if isinstance(read, BlobMissing):
        raise InvalidInput("nothing was uploaded to this URL (PUT the file to it first)", data={"reason": "not-uploaded"})
    try:
        if isinstance(read, BlobTooLarge) or (isinstance(read, bytes) and len(read) > limit):
            raise InvalidInput(f"the file is larger than the limit of {limit} bytes; it was deleted",
                               data={"reason": "too-large"})
        if isinstance(read, BlobError):
            raise ServiceUnavailable("object storage is unavailable; nothing was stored") from read
        if isinstance(read, BaseException):
            raise read
        content_type = content_sniff.content_type_for(target["data_type"], read[:content_sniff.HEAD_BYTES], declared)
        if target["data_type"] == "image" and _small_image(read):
            # A small image decodes in less time than handing it to a thread takes (and the GIL back).
            fault = content_sniff.whole_image_fault(read)
            if fault is not None:
                raise InvalidInput(f"the image does not decode whole ({fault}); nothing was stored", data={"reason": "corrupt"})
        elif target["data_type"] == "image":
            await content_sniff.check_whole_image(read)
        return read, content_type
    except InvalidInput:
        await discard(res, principal.org_id, key)
        raise


def _small_image(data: bytes) -> bool:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:  # the header only
            width, height = image.size
    except Exception:  # noqa: BLE001 - not an image Pillow reads: the thread's check says why
        return False
    return width * height <= INLINE_DECODE_PIXELS


async def discard(res: Resources, org_id: UUID, key: str) -> None:
    """Delete a refused object and its record (the record last: should S3 fail, housekeeping retries)."""
    try:
        await res.blobs.delete([key])
    except BlobError:
        return
    async with res.pool.acquire() as conn:
        await q.forget(conn, org_id, key)


async def sweep(res: Resources, limit: int = 500) -> int:
    """Delete the objects of records whose window closed that no identifier holds, and those records; safe in
    many processes at once (each takes its own records). Returns how many objects were deleted."""
    async with res.pool.acquire() as conn, conn.transaction():
        records = await q.take_expired(conn, SWEEP_MARGIN_SECONDS, limit)
        keys = [r["storage_key"] for r in records if not r["registered"]]
        if keys:
            await res.blobs.delete(keys)  # a failure rolls the records back for the next round
    return len(keys)
