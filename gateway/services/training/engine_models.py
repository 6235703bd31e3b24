"""Library engine models: create, update (with the artifact upload), delete, and the library's summary.

The worker saving a trained artifact, an external engine's `updateLibraryEngineModel` multipart upload
and an admin's mutation all go through ``update``: the artifact is stored under a new key first, then
the row changes in one transaction, or the new object is removed and nothing changed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from gateway.errors import InvalidInput, NotFound
from gateway.resources import Resources
from gateway.services import blob_cleanup
from gateway.services.access.ids import parse_id
from gateway.services.access.paging import Page, check_page
from gateway.services.access.principal import Principal
from gateway.services.ingest import uploads
from gateway.services.library.entities import check_jsondata
from gateway.services.training import promotion
from gateway.services.training import versions as model_versions
from storage.blobs import StoredBlob
from storage.queries import engine_models as q
from storage.queries import engines as engine_q
from storage.queries import libraries as library_q
from storage.queries import trainings as training_q
from storage.rows import EngineModel

TRAIN_STATUSES = ("pending", "queued", "complete", "failed", "running")
# An artifact that a newer one replaced is kept this long, so downloads already under way finish.
REPLACED_ARTIFACT_GRACE_SECONDS = 3600

# Run inside the update's transaction; returning False aborts the update (a worker that lost its lease).
TxHook = Callable[[asyncpg.Connection], Awaitable[bool]]


async def get(res: Resources, principal: Principal, model_id: object) -> EngineModel:
    mid = parse_id(model_id)
    async with res.pool.acquire() as conn:
        row = await q.by_id(conn, principal.org_id, mid)
    if row is None:
        raise NotFound()
    principal.check_library(row.library_id)
    return row


async def create(res: Resources, principal: Principal, data: dict[str, Any]) -> EngineModel:
    principal.require_write()
    if not data.get("engine_id"):
        raise InvalidInput("engineId is required")
    if not data.get("library_id"):
        raise InvalidInput("libraryId is required")
    lid = parse_id(data["library_id"])
    status = data.get("train_status") or "pending"
    if status not in TRAIN_STATUSES:
        raise InvalidInput(f"trainStatus must be one of {', '.join(TRAIN_STATUSES)}")
    async with res.pool.acquire() as conn:
        library = await library_q.by_id(conn, principal.org_id, lid)
        if library is None:
            raise NotFound()
        engine = await engine_q.by_id(conn, principal.org_id, str(data["engine_id"]))
        if engine is None:
            raise NotFound(data={"objectType": "engine"})
        if not engine.library_required:
            raise InvalidInput(f"engine {engine.id} does not use libraries")
        return await q.insert(
            conn,
            id=uuid4(),
            org_id=principal.org_id,
            library_id=lid,
            engine_id=engine.id,
            library_version=library.version,
            train_job_id=parse_id(data["train_job_id"]) if data.get("train_job_id") else None,
            train_status=status,
            data_url=data.get("data_url"),
            jsondata=check_jsondata(data.get("jsondata")),
            accuracy=data.get("accuracy"),
        )


async def update(
    res: Resources,
    principal: Principal,
    model_id: object,
    changes: dict[str, Any],
    *,
    file: uploads.Uploaded | None = None,
    artifact: tuple[bytes, str] | None = None,
    in_transaction: TxHook | None = None,
    version: tuple[dict[str, Any], list[str] | None] | None = None,
) -> EngineModel | None:
    """Apply `updateLibraryEngineModel`'s semantics. Returns None when ``in_transaction`` declined.

    ``version``: ``model_versions.check_version``'s result, written in the same transaction (all or nothing)."""
    mid = parse_id(model_id)
    principal.check_model_write(mid)
    current = await get(res, principal, mid)

    status = changes.get("train_status")
    if status is not None and status not in TRAIN_STATUSES:
        raise InvalidInput(f"trainStatus must be one of {', '.join(TRAIN_STATUSES)}")
    if "train_status" in changes and status is None:
        del changes["train_status"]  # null means "keep" for a non-null column
    if "jsondata" in changes:
        changes["jsondata"] = check_jsondata(changes["jsondata"]) if changes["jsondata"] is not None else {}
        if not isinstance(changes["jsondata"], dict):
            raise InvalidInput("jsondata of a library engine model must be a JSON object")
    if "train_job_id" in changes and changes["train_job_id"] is not None:
        changes["train_job_id"] = parse_id(changes["train_job_id"])
    if "accuracy" in changes and changes["accuracy"] is not None:
        if not 0.0 <= float(changes["accuracy"]) <= 100.0:
            raise InvalidInput("accuracy must be between 0 and 100")

    # Content type: the input's, else the file part's, else what was stored before.
    content_type = changes.pop("content_type", None)
    if content_type is not None:
        content_type = uploads.check_mime(content_type)
    elif file is not None and file.content_type:
        content_type = uploads.check_mime(file.content_type, "the file part's Content-Type")
    elif artifact is not None:
        content_type = uploads.check_mime(artifact[1])

    new_url = changes.pop("data_url", None) if "data_url" in changes else None
    stored: StoredBlob | None = None
    key: str | None = None
    if file is not None or artifact is not None or new_url:
        if content_type is None and new_url is None:
            content_type = current.content_type
        if file is not None or artifact is not None:
            if content_type is None:
                raise InvalidInput("contentType is required for a model file (input contentType or the part's Content-Type)")
            key = uploads.object_key(principal.org_id, "models", current.library_id, mid)
            if file is not None:
                stored = await uploads.store_upload(res, key, file, content_type)
            else:
                stored = await uploads.store(res, key, _one(artifact[0]), content_type, res.settings.max_artifact_bytes)
        else:
            key = uploads.object_key(principal.org_id, "models", current.library_id, mid)
            stored = await uploads.store_url(res, key, new_url, content_type)
            content_type = content_type or stored.content_type

    if stored is not None:
        changes["storage_key"] = stored.key
        changes["data_url"] = None
    if content_type is not None:
        changes["content_type"] = content_type
    effective_type = content_type or current.content_type
    if effective_type and ("jsondata" in changes or stored is not None or content_type is not None):
        jsondata = dict(changes.get("jsondata", current.jsondata) or {})
        jsondata["contentType"] = effective_type
        changes["jsondata"] = jsondata

    try:
        async with res.pool.acquire() as conn, conn.transaction():
            # The hook (a worker finishing its task) goes first, so locks are taken task -> job -> model,
            # never model -> task: a claim takes task -> model and the two cannot deadlock.
            if in_transaction is not None and not await in_transaction(conn):
                raise _Declined()
            # Then the (library, engine) default lock before the row: the order promotion's callers share.
            await training_q.lock_default(conn, current.library_id, current.engine_id)
            locked = await q.by_id(conn, principal.org_id, mid, for_update=True)
            if locked is None:
                raise NotFound()
            row = await q.set_fields(conn, principal.org_id, mid, changes)
            if key is not None:
                await blob_cleanup.keep(conn, key)
                if locked.storage_key:
                    await blob_cleanup.schedule(conn, [locked.storage_key], REPLACED_ARTIFACT_GRACE_SECONDS)
            if row.train_status == "complete" and locked.train_status != "complete":
                await library_q.mark_trained(conn, principal.org_id, row.library_id, row.library_version)
                row = await promotion.on_complete(conn, row)  # the default moves only to a completed model
            if version is not None:
                row = await model_versions.apply_version(conn, principal, row, *version)
        return row
    except _Declined:
        if key is not None:
            await blob_cleanup.delete_now(res, [key])
        return None
    except BaseException:
        if key is not None:
            await blob_cleanup.delete_now(res, [key])
        raise


class _Declined(Exception):
    pass


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def delete(res: Resources, principal: Principal, model_id: object) -> UUID:
    principal.require_write()
    mid = parse_id(model_id)
    async with res.pool.acquire() as conn, conn.transaction():
        seen = await q.by_id(conn, principal.org_id, mid)
        if seen is None:
            raise NotFound()
        # The (library, engine) default lock before the row (see promotion.on_complete); then re-read.
        await training_q.lock_default(conn, seen.library_id, seen.engine_id)
        doomed = await q.by_id(conn, principal.org_id, mid, for_update=True)
        found, key = await q.delete(conn, principal.org_id, mid)
        if not found:
            raise NotFound()
        if doomed is not None and doomed.is_default:
            await promotion.after_default_deleted(conn, doomed)
        if key:
            await blob_cleanup.schedule(conn, [key])
    if key:
        await blob_cleanup.delete_now(res, [key])
    return mid


async def data_url(res: Resources, row: EngineModel) -> str | None:
    if row.storage_key:
        return await res.blobs.presign_get(row.storage_key, res.settings.presign_ttl_seconds)
    return row.data_url


async def read_artifact(res: Resources, row: EngineModel) -> bytes:
    if not row.storage_key:
        raise InvalidInput("this model has no stored artifact")
    return await res.blobs.get_bytes(row.storage_key, max_bytes=res.settings.max_artifact_bytes)


async def library_pages(
    res: Resources,
    principal: Principal,
    library_ids: list[UUID],
    *,
    model_id: object | None,
    engine_id: str | None,
    train_status: str | None,
    library_version: int | None,
    current_version: bool | None,
    by_modified: bool,
    offset: int | None,
    limit: int | None,
) -> dict[UUID, Page[EngineModel]]:
    """The same page of models for several libraries, in one query (Library.engineModels' DataLoader)."""
    offset, limit = check_page(offset, limit, res.settings.max_page_size)
    from gateway.services.access.ids import try_parse_ids

    mid = None
    if model_id is not None:
        parsed = try_parse_ids([model_id])
        mid = parsed[0] if parsed else UUID(int=0)  # not an ID: matches nothing
    async with res.pool.acquire() as conn:
        rows, totals = await q.pages_for_libraries(
            conn, principal.org_id, library_ids, model_id=mid, engine_id=engine_id, train_status=train_status,
            library_version=library_version, current_version=current_version, by_modified=by_modified,
            offset=offset, limit=limit,
        )
    return {i: Page(rows[i], offset, limit, totals[i]) for i in library_ids}
