"""generateEmbeddings: a job that embeds the identifiers a selection holds that lack a vector."""

from __future__ import annotations

from uuid import UUID

from gateway.errors import InvalidInput, NotFound
from gateway.resources import Resources
from gateway.services.access.ids import parse_id
from gateway.services.access.principal import Principal
from gateway.services.embeddings.vectors import resolve_version
from gateway.services.queue import builtin
from gateway.services.queue.enqueue import NewJob, NewTask, enqueue
from gateway.services.selection import IdentifierSelection, parse_query
from storage.queries import libraries as library_q
from storage.queries import vectors as q
from storage.rows import Job, ModelVersion


async def generate(
    res: Resources, principal: Principal, *, library_id: object | None, identifier_type_id: str | None,
    model_ref: str | None, selection: IdentifierSelection, query: str | None = None,
) -> Job:
    """generateEmbeddings: a job whose tasks embed the selection's identifiers that lack a vector (one task
    per model version: without modelId a people library's faces take the face default, its images the image one).
    ``query``: the selection's query language (gateway.services.selection.parse_query), checked here."""
    principal.require_write()
    conditions = parse_query(query)
    if (library_id is None) == (identifier_type_id is None):
        raise InvalidInput("give exactly one of libraryId (one library) or identifierTypeId (every library holding it)")
    org = principal.org_id
    async with res.pool.acquire() as conn:
        if library_id is not None:
            lid = parse_id(library_id)
            principal.check_library(lid)
            if await library_q.by_id(conn, org, lid) is None:
                raise NotFound()
            libraries = [lid]
            types = await q.image_types_of_library(conn, org, lid)
            if not types:
                raise InvalidInput("this library takes no image identifiers; embedding models read images")
        else:
            type_id = str(identifier_type_id)
            data_type = await q.identifier_type_data(conn, org, type_id)
            if data_type is None:
                raise NotFound(f"no identifier type {type_id!r}", data={"objectType": "entityIdentifierType"})
            if data_type != "image":
                raise InvalidInput(f"identifier type {type_id} holds {data_type}; embedding models read images")
            libraries = await q.libraries_holding_type(conn, org, type_id)
            if principal.is_task:
                libraries = [lid for lid in libraries if lid == principal.library_id]
            types = [type_id]
    groups: dict[UUID, tuple[ModelVersion, list[str]]] = {}
    for type_id in types:
        version = await resolve_version(res, org, model_ref, type_id)
        groups.setdefault(version.id, (version, []))[1].append(type_id)
    async with res.pool.acquire() as conn, conn.transaction():
        tasks = [
            NewTask(builtin.EMBEDDINGS, {
                "mode": "embed", "modelVersionId": str(version.id), "model": version.ref,
                "libraryIds": [str(lid) for lid in libraries], "identifierTypeIds": type_ids,
                "filter": selection.as_json(), "query": conditions,
            })
            for version, type_ids in groups.values()
        ]
        job = await enqueue(conn, NewJob(
            org_id=org, name="generateEmbeddings", actor=principal.actor, max_attempts=res.settings.max_attempts,
            library_id=libraries[0] if len(libraries) == 1 else None,
            model_version_id=next(iter(groups)) if len(groups) == 1 else None,
        ), tasks)
    return job
