"""Entity identifier rules: the file or URL goes to S3 first, the row commits after, or neither stays."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import asyncpg

from gateway.errors import InvalidInput, NotFound
from gateway.resources import Resources
from gateway.services import blob_cleanup
from gateway.services.access.ids import parse_id
from gateway.services.access.principal import Principal
from gateway.services.ingest import embed_targets, naming, uploads
from gateway.services.ingest.remote_files import FetchRefused, check_url_syntax
from gateway.services.library import people
from gateway.services.library.entities import jsondata_of
from storage.queries import entities as entity_q
from storage.queries import identifiers as q
from storage.queries import vectors as vector_q
from storage.rows import Identifier


async def get(res: Resources, principal: Principal, identifier_id: object) -> Identifier:
    iid = parse_id(identifier_id)
    async with res.pool.acquire() as conn:
        row = await q.by_id(conn, principal.org_id, iid)
    if row is None:
        raise NotFound()
    principal.check_library(row.library_id)
    return row

PROFILE_MODES = ("none", "ifNotSet", "always")
UNASSIGNED = "unassigned"  # the key segment where an entity's ID goes for identifiers with none


async def _profile(conn: Any, principal: Principal, row: Identifier, mode: str) -> None:
    """CreateEntityIdentifier.profileUpdateMode: make the new identifier the entity's profile image."""
    if mode != "none" and row.entity_id is not None:
        await entity_q.set_profile_identifier(conn, principal.org_id, row.entity_id, row.id, principal.actor, always=mode == "always")


async def create(res: Resources, principal: Principal, data: dict[str, Any], file: uploads.Uploaded | None) -> Identifier:
    principal.require_write()
    # With an entity: the identifier is that entity's. With only a library: it is unassigned (annotation type
    # raw) until a person or an accepted suggestion places it.
    eid = parse_id(data["entity_id"]) if data.get("entity_id") else None
    lid = parse_id(data["library_id"]) if data.get("library_id") else None
    if eid is None and lid is None:
        raise InvalidInput("entityId or libraryId is required (libraryId alone: an unassigned identifier)")
    if lid is not None:
        principal.check_library(lid)
    type_id = data.get("identifier_type_id")
    if not type_id:
        raise InvalidInput("identifierTypeId is required")
    url = data.get("url")
    if file is None and not url:
        raise InvalidInput("At least one of url or file must be provided")
    content_type = data.get("content_type") or (file.content_type if file is not None else None)
    store_reference = bool(data.get("store_reference")) and file is None
    if content_type is not None or file is not None or store_reference:
        content_type = uploads.check_mime(content_type)
    # else: a URL to copy without a contentType takes the type the remote answer declares (store_url).
    jsondata = jsondata_of(data)
    profile_mode = data.get("profile_update_mode") or "none"
    if profile_mode not in PROFILE_MODES:
        raise InvalidInput(f"profileUpdateMode must be one of {', '.join(PROFILE_MODES)}")

    explicit_name = data.get("unique_name")
    if explicit_name is not None:
        explicit_name = naming.check_unique_name(explicit_name)
    key = None
    default_embedder = embed_targets.ingest_default_name(type_id)
    async with res.pool.acquire() as conn:
        if eid is not None:
            target = await q.target(conn, principal.org_id, eid, type_id, default_embedder)
        else:
            target = await q.target_library(conn, principal.org_id, lid, type_id, default_embedder)
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
        if explicit_name is not None and await q.unique_name_taken(conn, target["library_id"], explicit_name):
            raise InvalidInput(_name_taken(explicit_name))
        if not store_reference:
            key = uploads.object_key(principal.org_id, "identifiers", target["library_id"], eid or UNASSIGNED)
        if file is not None:
            # Recorded as an orphan-to-be before the upload, on the connection the checks used.
            await blob_cleanup.schedule(conn, [key], blob_cleanup.UPLOAD_GRACE_SECONDS)

    values: dict[str, Any] = dict(
        id=uuid4(),
        org_id=principal.org_id,
        library_id=target["library_id"],
        entity_id=eid,
        identifier_type_id=type_id,
        title=data.get("title"),
        is_priority=bool(data.get("is_priority") or False),
        content_type=content_type,
        jsondata=jsondata,
        storage_key=None,
        reference_url=None,
        content_length=None,
        content_sha256=None,
        unique_name=explicit_name,
    )
    default_name = None
    if explicit_name is None:
        default_name = naming.default_unique_name(getattr(file, "filename", None) if file is not None else None, url)
    versions = embed_targets.ingest_versions(res, target["data_type"], target["ingest_versions"])
    if store_reference:
        try:
            check_url_syntax(url)
        except FetchRefused as exc:
            raise InvalidInput(str(exc)) from exc
        values["reference_url"] = url
        async with res.pool.acquire() as conn:
            return await _insert_named(conn, False, values, default_name, versions, principal, profile_mode)

    if file is not None:
        stored = await uploads.store_upload(res, key, file, content_type, scheduled=True, data_type=target["data_type"])
    else:
        stored = await uploads.store_url(res, key, url, content_type, data_type=target["data_type"])
    values.update(storage_key=key, content_type=stored.content_type, content_length=stored.size, content_sha256=stored.sha256)
    try:
        async with res.pool.acquire() as conn:
            return await _insert_named(conn, True, values, default_name, versions, principal, profile_mode)
    except BaseException:
        await blob_cleanup.delete_now(res, [key])
        raise

def _name_taken(name: str) -> str:
    return f"uniqueName {name!r} is already used in this library; unique names are unique within a library"


async def _insert_named(
    conn: Any, keep_blob: bool, values: dict[str, Any], default_name: str | None, versions: list[UUID],
    principal: Principal, profile_mode: str,
) -> Identifier:
    """Insert the row with its uniqueName and queue its embeddings, atomically (one statement, or one
    transaction when the entity's profile image changes too); ``keep_blob``: its object was recorded as an
    orphan-to-be before the upload, and that record goes with the insert.

    An explicit uniqueName that another upload took meanwhile is invalid_input. The default (the file name)
    must not turn a second photo called IMG_0001.jpg into an error, so a taken default is made unique by
    prefixing the identifier's id.
    """
    candidates = [values["unique_name"]] if values["unique_name"] is not None else (
        [default_name, f"{values['id']}-{default_name}"] if default_name else [str(values["id"])])
    for attempt, name in enumerate(candidates):
        try:
            insert = dict(values, unique_name=name, keep_blob=keep_blob, embed_versions=versions,
                          channel=vector_q.EMBED_CHANNEL)
            if profile_mode == "none" or values["entity_id"] is None:
                return await q.insert_new(conn, **insert)
            async with conn.transaction():
                row = await q.insert_new(conn, **insert)
                await _profile(conn, principal, row, profile_mode)
            return row
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "entity_identifiers_unique_name" or attempt == len(candidates) - 1:
                if values["unique_name"] is not None:
                    raise InvalidInput(_name_taken(name)) from None
                raise
    raise AssertionError("unreachable")


async def update(res: Resources, principal: Principal, identifier_id: object, changes: dict[str, Any]) -> Identifier:
    principal.require_write()
    iid = parse_id(identifier_id)
    jsondata = jsondata_of(changes, partial=True)
    url = changes.pop("url", None)
    changes = {k: v for k, v in changes.items() if k not in ("jsondata", "jsonstring")}
    if jsondata is not ...:
        changes["jsondata"] = jsondata
    moving = "entity_id" in changes
    entity_id = changes.pop("entity_id", None)
    if url is not None:
        if moving:
            raise InvalidInput("send url and entityId in separate updateEntityIdentifier calls")
        return await _replace_content(res, principal, iid, changes, url)
    if moving:
        # Another entity of its library (null: unassigned), with the other changes, in one transaction.
        async with res.pool.acquire() as conn, conn.transaction():
            await people.place(conn, principal, iid, entity_id)
            row = await q.update(conn, principal.org_id, iid, changes)
        return row
    async with res.pool.acquire() as conn:
        row = await q.update(conn, principal.org_id, iid, changes)
    if row is None:
        raise NotFound()
    return row


async def _replace_content(res: Resources, principal: Principal, iid: UUID, changes: dict[str, Any], url: str) -> Identifier:
    """A new url: a reference identifier now refers to it; a stored one stores a copy of what it serves
    (its content type is the one the answer declares). The old object goes only once the row has the new one."""
    async with res.pool.acquire() as conn:
        current = await q.by_id(conn, principal.org_id, iid)
        data_type = await vector_q.identifier_type_data(conn, principal.org_id, current.identifier_type_id) if current else None
    if current is None:
        raise NotFound()
    if current.reference_url:
        try:
            check_url_syntax(url)
        except FetchRefused as exc:
            raise InvalidInput(str(exc)) from exc
        content = dict(storage_key=None, reference_url=url, content_type=current.content_type, content_length=None,
                       content_sha256=None)
        async with res.pool.acquire() as conn, conn.transaction():
            row = await q.replace_content(conn, principal.org_id, iid, None, **content)
            row = await q.update(conn, principal.org_id, iid, changes) if row is not None else None
        if row is None:
            raise NotFound()
        return row
    key = uploads.object_key(principal.org_id, "identifiers", current.library_id, current.entity_id or UNASSIGNED)
    stored = await uploads.store_url(res, key, url, None, data_type=data_type)
    content = dict(storage_key=key, reference_url=None, content_type=stored.content_type, content_length=stored.size,
                   content_sha256=stored.sha256)
    try:
        async with res.pool.acquire() as conn, conn.transaction():
            row = await q.replace_content(conn, principal.org_id, iid, current.storage_key, **content)
            if row is None:  # deleted, or its content replaced by someone else meanwhile
                raise NotFound()
            row = await q.update(conn, principal.org_id, iid, changes)
            await blob_cleanup.keep(conn, key)
            await blob_cleanup.schedule(conn, [current.storage_key])
    except BaseException:
        await blob_cleanup.delete_now(res, [key])
        raise
    await blob_cleanup.delete_now(res, [current.storage_key])
    return row

async def delete(res: Resources, principal: Principal, identifier_id: object) -> UUID:
    principal.require_write()
    iid = parse_id(identifier_id)
    async with res.pool.acquire() as conn, conn.transaction():
        row = await q.by_id(conn, principal.org_id, iid)
        if row is None:
            raise NotFound()
        if row.storage_key:
            await blob_cleanup.schedule(conn, [row.storage_key])
        await q.delete(conn, principal.org_id, iid)
    if row.storage_key:
        await blob_cleanup.delete_now(res, [row.storage_key])
    return iid

async def deleted_since(res: Resources, org_id: UUID, identifier_id: UUID) -> bool:
    """Whether an identifier a job selected, and whose object S3 no longer has, was deleted meanwhile.

    ``delete`` removes the object right after the row, so a long job meets this whenever people curate the
    library while it runs, and skips the identifier. An object missing under a row that still exists is not
    that: the caller fails the attempt as for any S3 error.
    """
    async with res.pool.acquire() as conn:
        return await q.by_id(conn, org_id, identifier_id) is None


async def url_for(res: Resources, row: Identifier) -> str:
    if row.reference_url:
        return row.reference_url
    return await res.blobs.presign_get(row.storage_key, res.settings.presign_ttl_seconds)

async def read_bytes(res: Resources, row: Identifier) -> bytes:
    """The identifier's content: from S3, or fetched from its reference URL under the fetch policy."""
    if row.storage_key:
        return await res.blobs.get_bytes(row.storage_key, max_bytes=res.settings.fetch_max_bytes)
    from gateway.services.ingest.remote_files import fetch_bytes

    async with res.fetch_limiter:
        data, _ = await fetch_bytes(res.http, row.reference_url, res.fetch_policy)
    return data

