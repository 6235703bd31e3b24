"""The model registry: registering packages as numbered versions, aliases, lookups, and the rules
around them (tenancy, system models read-only, what may be deleted).

A model is a name in an organization (or a system model, organization NULL, that every organization
sees and none may change). Each registration of the name adds version n+1. Versions point at
content-addressed blobs (``models/sha256/<hex>.onnx``) that the same bytes share; a blob is deleted when
the last version using it is. Nothing is stored before a package passes its static checks
(gateway/services/models/packages/); user uploads are then ``validating`` until a worker's trial
inference (gateway/services/models/trial.py) makes them ``ready`` or ``failed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from gateway.errors import InvalidInput, NotAllowed, NotFound, ServiceUnavailable
from gateway.resources import Resources
from gateway.services import blob_cleanup
from gateway.services.access.paging import Page, check_page
from gateway.services.access.principal import Principal
from gateway.services.ingest.remote_files import FetchRefused, fetch_bytes
from gateway.services.ingest.uploads import read_limited
from gateway.services.models import trial as model_trials
from gateway.services.models.packages import Limits, Package, PackageError, read_package
from gateway.services.models.refs import (
    DEFAULT,
    check_alias,
    check_application,
    check_name,
    check_tags,
    parse_ref,
)
from storage.blobs import BlobError, BlobTooLarge
from storage.queries import models as q
from storage.rows import ModelVersion

__all__ = [
    "register", "register_system_model", "resolve_model", "default_model", "model_bytes", "get", "list_page",
    "update", "set_alias", "delete_version", "parse_ref",
]

# The system defaults by identifier type (names from the pull catalogue, gateway/services/models/pull/catalogue.py).
SYSTEM_DEFAULTS = {
    ("embedding", "face"): "face-embedding",
    ("embedding", "audio-recording"): "speaker-embedding",
    ("embedding", None): "image-embedding",
    ("auto_annotation", "face"): "face-detector",
}
# One message for every miss, whichever part of the reference missed: another organization's model name
# answers exactly as a name nobody has (the tenancy tests compare the two).
NO_SUCH_MODEL = "no such model version in this organization or among the system models"
_LOCK_CLASS = 0x6D6F64  # "mod": advisory locks per blob digest (the two-key form, apart from the migration lock)


def _limits(res: Resources) -> Limits:
    s = res.settings
    return Limits(max_bytes=s.model_max_bytes, max_members=s.model_max_members, max_ratio=s.model_max_ratio)


def blob_key(sha256: str) -> str:
    return f"models/sha256/{sha256}.onnx"


# ------------------------------------------------------------------ registering


async def register(
    res: Resources,
    principal: Principal,
    *,
    name: Any,
    application: Any,
    description: str | None = None,
    tags: Any = None,
    aliases: Sequence[str] | None = None,
    manifest: dict[str, Any] | None = None,
    file: Any = None,
    url: str | None = None,
) -> ModelVersion:
    """``registerModel``: a package from an upload or a URL becomes the next version of ``name``."""
    principal.require_admin()
    name = check_name(name)
    application = check_application(application)
    tags = check_tags(tags)
    aliases = [check_alias(a) for a in aliases or ()]
    if (file is None) == (url is None):
        raise InvalidInput("registerModel takes the package as a file (input.file or the form's file part) or a url")
    if description is not None and len(description) > 4000:
        raise InvalidInput("description must be at most 4000 characters")
    data, filename = await _read_file(res, file) if file is not None else await _read_url(res, url)
    package = await _checked(data, filename, application, manifest, _limits(res))
    source = {"file": filename, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "format": package.format}
    version = await _store(
        res, org_id=principal.org_id, name=name, application=application, description=description, tags=tags,
        aliases=aliases, package=package, source=source, status="validating",
    )
    return version


async def _checked(data: bytes, filename: str | None, application: str, manifest: Any, limits: Limits) -> Package:
    if manifest is not None and not isinstance(manifest, dict):
        raise InvalidInput("manifest must be a JSON object")
    try:
        return await asyncio.to_thread(
            read_package, data, filename=filename, application=application, manifest=manifest, limits=limits
        )
    except PackageError:
        raise
    except RecursionError:
        raise PackageError("the package nests too deeply to be read", "bad_package") from None


async def _read_file(res: Resources, upload: Any) -> tuple[bytes, str | None]:
    limit = res.settings.max_upload_bytes
    body = await read_limited(upload, limit, f"the file is larger than the limit of {limit} bytes")
    if not body:
        raise PackageError("the model file is empty", "empty_file")
    return body, getattr(upload, "filename", None)


async def _read_url(res: Resources, url: str) -> tuple[bytes, str | None]:
    if not isinstance(url, str):
        raise InvalidInput("url must be text")
    try:
        async with res.fetch_limiter:
            data, _ = await fetch_bytes(res.http, url, res.fetch_policy)
    except FetchRefused as exc:
        raise InvalidInput(str(exc), data={"reason": exc.reason}) from exc
    if not data:
        raise InvalidInput("the model file at the URL is empty")
    return data, url.split("?")[0].rstrip("/").rsplit("/", 1)[-1] or None


async def register_system_model(
    res: Resources,
    *,
    name: str,
    application: str,
    model_bytes: bytes,
    manifest: dict,
    source: dict,
    description: str = "",
    aliases: Sequence[str] = (),
) -> ModelVersion:
    """Register a model every organization sees (``engineshed models pull``). The same checks as an upload,
    then the trial inference inline (in a bounded child process of the caller: a CLI or a worker, never
    the gateway); nothing is stored unless both pass. The same bytes under the same name return the
    version that holds them, with any of ``aliases`` the model lacks pointed at it."""
    name = check_name(name)
    application = check_application(application)
    aliases = [check_alias(a) for a in aliases]
    package = await _checked(model_bytes, f"{name}.onnx", application, manifest, _limits(res))
    async with res.pool.acquire() as conn:
        existing = await q.version_with_bytes(conn, None, name, package.sha256)
        if existing is not None and aliases:
            # A pull of bytes already registered gives back any catalogue alias the model has lost (its
            # `default` deleted, say), so a system model always has one; an alias moved elsewhere stays there.
            await q.add_missing_aliases(conn, existing.id, aliases)
            existing = await q.version_with_bytes(conn, None, name, package.sha256)
    if existing is not None:
        return existing
    trial = await model_trials.run_trial(res.settings, package.onnx_bytes, package.manifest, application)
    if not trial.ok:
        raise PackageError(f"system model {name}: trial inference failed: {trial.error}", "trial")
    return await _store(
        res, org_id=None, name=name, application=application, description=description, tags={}, aliases=aliases,
        package=package, source=dict(source), status="ready", trial=trial,
    )


def _lock_key(sha256: str) -> int:
    return int(sha256[:8], 16) - 2**31


# How long a registration or deletion waits for another one of the same bytes (which may be storing a file
# of up to ENGINESHED_MODEL_MAX_BYTES) before answering service_unavailable.
_LOCK_WAIT_SECONDS = 120.0
_LOCK_POLL_SECONDS = 0.1


@contextlib.asynccontextmanager
async def _digest_lock(conn: asyncpg.Connection, sha256: str) -> AsyncIterator[None]:
    """A session advisory lock on one blob digest, held for the block. The pool does not reset connections
    (storage/db.py), so a connection that may hold the lock without its unlock having run (cancelled or
    failed while taking or releasing it) is terminated, which releases it. Taken with pg_try_advisory_lock
    and a bounded wait, so no statement blocks past the pool's command timeout."""
    args = (_LOCK_CLASS, _lock_key(sha256))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _LOCK_WAIT_SECONDS
    try:
        while not await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", *args):
            if loop.time() > deadline:
                raise ServiceUnavailable("another registration or deletion of the same model file is under way; try again")
            await asyncio.sleep(_LOCK_POLL_SECONDS)
    except ServiceUnavailable:
        raise
    except BaseException:
        conn.terminate()
        raise
    try:
        yield
    finally:
        try:
            await conn.execute("SELECT pg_advisory_unlock($1, $2)", *args)
        except BaseException:
            conn.terminate()
            raise


async def _store(
    res: Resources, *, org_id: UUID | None, name: str, application: str, description: str | None, tags: dict[str, str],
    aliases: Sequence[str], package: Package, source: dict[str, Any], status: str,
    trial: model_trials.TrialResult | None = None,
) -> ModelVersion:
    """Upload the blob unless its digest is stored already, then the version, its model and aliases in one
    transaction. An advisory lock on the digest, held from the check to the commit, keeps a concurrent
    delete of the last version sharing these bytes from removing the object under us."""
    key = blob_key(package.sha256)
    uploaded = False
    async with res.pool.acquire() as conn:
        async with _digest_lock(conn, package.sha256):
            if org_id is None:
                # Two pulls at once (dev's background pull and a `models pull`, two devs on one database)
                # both passed register_system_model's first look: the second returns the first's version.
                existing = await q.version_with_bytes(conn, None, name, package.sha256)
                if existing is not None:
                    return existing
            if await q.blob_by_sha(conn, package.sha256) is None:
                # A deletion the sweeper has not finished is cancelled first, then this upload is recorded as
                # an orphan-to-be, so a crash before the commit still leaves nothing behind.
                await blob_cleanup.keep(conn, key)
                await blob_cleanup.schedule(conn, [key], blob_cleanup.UPLOAD_GRACE_SECONDS)
                try:
                    await res.blobs.put_bytes(key, package.onnx_bytes, "application/onnx")
                except BlobError as exc:
                    raise ServiceUnavailable("object storage is unavailable; nothing was stored") from exc
                uploaded = True
            try:
                version = await _insert(conn, org_id=org_id, name=name, application=application,
                                        description=description, tags=tags, aliases=aliases, package=package,
                                        source=source, status=status, trial=trial, key=key)
            except BaseException:
                if uploaded:
                    await blob_cleanup.delete_now(res, [key])
                raise
    return version


async def _insert(
    conn: asyncpg.Connection, *, org_id: UUID | None, name: str, application: str, description: str | None,
    tags: dict[str, str], aliases: Sequence[str], package: Package, source: dict[str, Any], status: str,
    trial: model_trials.TrialResult | None, key: str,
) -> ModelVersion:
    async with conn.transaction():
        await q.insert_blob(conn, package.sha256, key, len(package.onnx_bytes))
        await blob_cleanup.keep(conn, key)
        model = await q.model_by_name(conn, org_id, name, for_update=True)
        created = False
        if model is None:
            model = await q.insert_model(conn, id=uuid4(), org_id=org_id, name=name, application=application,
                                         description=description or "", tags=tags)
            if model is None:  # another registration created the name a moment ago
                model = await q.model_by_name(conn, org_id, name, for_update=True)
            else:
                created = True
        if model["application"] != application:
            raise InvalidInput(f"model {name} is a {model['application']} model; a new version must be one too")
        if not created and (description is not None or tags):
            await q.update_model(conn, model["id"], description=description, tags=tags or None)
        number = await q.next_version(conn, org_id, model["name"], model["id"])
        validation = dict(package.checks)
        if trial is not None:
            validation.update(trial.details)
        version_id = uuid4()
        await q.insert_version(
            conn, id=version_id, model_id=model["id"], org_id=org_id, version=number, status=status,
            sha256=package.sha256, size_bytes=len(package.onnx_bytes), manifest=package.manifest,
            dimension=package.dimension, labels=package.labels, source=source, validation=validation,
            throughput=trial.throughput if trial else None, throughput_batch=trial.batch if trial else None,
            provider=trial.provider if trial else None,
        )
        wanted = list(dict.fromkeys(aliases))
        if DEFAULT not in wanted and not created:
            current = await q.version_by_alias(conn, org_id, model["name"], DEFAULT)
            if current is None or await q.locked_status(conn, current.id) == "failed":
                wanted.append(DEFAULT)  # a default that cannot run (its trial failed) gives way to the new version
        if created and DEFAULT not in wanted:
            wanted.append(DEFAULT)  # the first version is the default until another is named
        for alias in wanted:
            await q.set_alias(conn, model["id"], alias, version_id)
        if status == "validating":
            await model_trials.wake_workers(conn)
        return await q.version_by_id(conn, version_id)


# ------------------------------------------------------------------ reading


async def _find(conn: asyncpg.Connection, org_id: UUID | None, name: str, version: int | None, alias: str | None) -> ModelVersion | None:
    """The organization's own model first, then the system model of that name."""
    for owner in ((org_id, None) if org_id is not None else (None,)):
        if version is not None:
            row = await q.version_by_number(conn, owner, name, version)
        else:
            row = await q.version_by_alias(conn, owner, name, alias or DEFAULT)
        if row is not None:
            return row
        if await q.model_by_name(conn, owner, name) is not None:
            return None  # the name is the organization's: a system model of the same name is hidden by it
    return None


def _describe(name: str, version: int | None, alias: str | None) -> str:
    return f"{name}@{version}" if version is not None else f"{name}@{alias or DEFAULT}"


async def resolve_model(res: Resources, organization_id: UUID | None, ref: str, application: str | None = None) -> ModelVersion:
    """A usable (``ready``) version for ``name``, ``name@3``, ``name@default`` or ``name@alias``."""
    name, version, alias = parse_ref(ref)
    async with res.pool.acquire() as conn:
        row = await _find(conn, organization_id, name, version, alias)
    if row is None:
        raise NotFound(f"no model {_describe(name, version, alias)}", data={"objectType": "model"})
    if application is not None and row.application != application:
        raise InvalidInput(f"model {row.ref} is a {row.application} model, not {application}")
    if row.status != "ready":
        detail = f": {row.error}" if row.error else " (its trial inference has not finished)"
        raise InvalidInput(f"model {row.ref} is {row.status}{detail}; only ready versions can be used")
    return row


def default_model_name(application: str, identifier_type: str | None) -> str | None:
    """The name of the system model that is the default for an application and identifier type."""
    kind = identifier_type if identifier_type in ("face", "audio-recording") else None
    return SYSTEM_DEFAULTS.get((application, kind))


async def default_model(res: Resources, organization_id: UUID | None, application: str, identifier_type: str | None) -> ModelVersion | None:
    """The system default for an application and identifier type, or None when none is registered (ready)."""
    name = default_model_name(application, identifier_type)
    if name is None:
        return None
    async with res.pool.acquire() as conn:
        row = await q.version_by_alias(conn, None, name, DEFAULT)
    return row if row is not None and row.status == "ready" else None


async def model_bytes(res: Resources, version: ModelVersion) -> bytes:
    """The version's ONNX file from S3."""
    try:
        return await res.blobs.get_bytes(version.blob_key, max_bytes=res.settings.model_max_bytes)
    except BlobTooLarge as exc:
        raise InvalidInput(f"model {version.ref} is larger than ENGINESHED_MODEL_MAX_BYTES") from exc


async def pinned_version(res: Resources, org_id: UUID, version_id: UUID) -> ModelVersion | None:
    """A version by id, as a job recorded it when it was created: the organization's own or a system one,
    and ``ready``; None when it is gone or another organization's."""
    async with res.pool.acquire() as conn:
        row = await q.version_by_id(conn, version_id)
    if row is None or row.organization_id not in (None, org_id) or row.status != "ready":
        return None
    return row


async def get(res: Resources, principal: Principal, name: Any, version: int | None = None, alias: str | None = None) -> ModelVersion:
    """``model(name, version | alias)``: any version, whatever its status."""
    principal.require_read()
    name = check_name(name)
    if version is not None and alias is not None:
        raise InvalidInput("give a version or an alias, not both")
    if version is not None and version <= 0:
        raise InvalidInput("version must be positive")
    if alias is not None:
        check_alias(alias)
    async with res.pool.acquire() as conn:
        row = await _find(conn, principal.org_id, name, version, alias)
    if row is None:
        raise NotFound(NO_SUCH_MODEL, data={"objectType": "model"})
    return row


async def list_page(
    res: Resources, principal: Principal, *, application: str | None, name: str | None, tags: Any, status: str | None,
    system: bool | None, alias: str | None, order_by: str, descending: bool, offset: int | None, limit: int | None,
) -> Page[ModelVersion]:
    principal.require_read()
    offset, limit = check_page(offset, limit, res.settings.max_page_size)
    if application is not None:
        check_application(application)
    if order_by not in q.ORDERS:
        raise InvalidInput(f"orderBy must be one of {', '.join(q.ORDERS)}")
    if status is not None and status not in ("validating", "ready", "failed"):
        raise InvalidInput("status must be validating, ready or failed")
    wanted = check_tags(tags) or None
    async with res.pool.acquire() as conn:
        rows, total = await q.version_page(
            conn, principal.org_id, application=application, name=name, tags=wanted, status=status, system=system,
            alias=alias, order=order_by, descending=descending, offset=offset, limit=limit,
        )
    return Page(rows, offset, limit, total)


# ------------------------------------------------------------------ changing


async def _own_model(conn: asyncpg.Connection, principal: Principal, name: Any) -> asyncpg.Record:
    """The organization's model, locked; a system model's name is not_allowed, an unknown one not_found."""
    principal.require_admin()
    name = check_name(name)
    model = await q.model_by_name(conn, principal.org_id, name, for_update=True)
    if model is not None:
        return model
    if await q.model_by_name(conn, None, name) is not None:
        raise NotAllowed(f"{name} is a system model; system models are read-only")
    raise NotFound(NO_SUCH_MODEL, data={"objectType": "model"})


async def update(
    res: Resources, principal: Principal, name: Any, *, description: str | None, tags: Any,
    aliases: Iterable[tuple[str, int]] = (),
) -> ModelVersion:
    """``updateModel``: description, key/value labels (replaced whole when given), aliases moved."""
    if description is not None and len(description) > 4000:
        raise InvalidInput("description must be at most 4000 characters")
    new_tags = check_tags(tags) if tags is not None else None
    moves = [(check_alias(a), v) for a, v in aliases]
    async with res.pool.acquire() as conn, conn.transaction():
        model = await _own_model(conn, principal, name)
        await q.update_model(conn, model["id"], description=description, tags=new_tags)
        for alias, number in moves:
            await _move_alias(conn, model, alias, number)
        return await q.version_by_alias(conn, principal.org_id, model["name"], DEFAULT)


async def _move_alias(conn: asyncpg.Connection, model: asyncpg.Record, alias: str, number: int) -> ModelVersion:
    target = await q.version_by_number(conn, model["org_id"], model["name"], number)
    if target is None:
        raise NotFound(NO_SUCH_MODEL, data={"objectType": "model"})
    if await q.locked_status(conn, target.id) == "failed":
        # Everything that names the alias would resolve to a model that cannot run.
        raise NotAllowed(f"model {target.ref} failed its trial ({target.error or 'no reason given'}); an alias may not point at it")
    await q.set_alias(conn, model["id"], alias, target.id)
    return await q.version_by_id(conn, target.id)


async def set_alias(res: Resources, principal: Principal, name: Any, version: int, alias: Any) -> ModelVersion:
    """``setModelAlias``: point ``alias`` at ``version`` (moving it from wherever it pointed)."""
    alias = check_alias(alias)
    async with res.pool.acquire() as conn, conn.transaction():
        model = await _own_model(conn, principal, name)
        return await _move_alias(conn, model, alias, version)


async def delete_version(res: Resources, principal: Principal, name: Any, version: int) -> ModelVersion:
    """``deleteModelVersion``: refused while a library engine model, a job or an alias points at it. The
    ``default`` alias of a model's only version does not hold it: deleting it deletes the model."""
    async with res.pool.acquire() as conn:
        async with conn.transaction():
            model = await _own_model(conn, principal, name)
            row = await q.version_by_number(conn, principal.org_id, model["name"], version)
            if row is None:
                raise NotFound(NO_SUCH_MODEL, data={"objectType": "model"})
        # The digest's lock, then the delete: a registration of the same bytes waits for the blob's fate.
        async with _digest_lock(conn, row.sha256):
            async with conn.transaction():
                model = await _own_model(conn, principal, name)
                refs = await q.references(conn, row.id)
                only = await q.versions_left(conn, model["id"]) == 1
                holding = [a for a in refs["aliases"] if not (only and a == DEFAULT)]
                if refs["engine_models"] or refs["jobs"] or holding:
                    what = []
                    if refs["engine_models"]:
                        what.append(f"{refs['engine_models']} library engine model(s)")
                    if refs["jobs"]:
                        what.append(f"{refs['jobs']} job(s)")
                    if holding:
                        what.append("the alias(es) " + ", ".join(holding) + " (move them with setModelAlias first)")
                    raise NotAllowed(f"model {row.ref} is in use by {' and '.join(what)}")
                if only:
                    await q.delete_aliases_of_version(conn, row.id)
                key = await q.delete_version(conn, row.id)
                if only:
                    await q.delete_model(conn, model["id"])
                if key:
                    await blob_cleanup.schedule(conn, [key])
            if key:
                await blob_cleanup.delete_now(res, [key])
    return row
