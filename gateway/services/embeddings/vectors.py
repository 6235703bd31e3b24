"""Embeddings as data: which model embeds, inserting vectors, reading them back.

Vectors live in ``identifier_embeddings`` (pgvector), one per (identifier, model version). They are made at
ingest by workers (gateway/worker/embedding.py) for the identifier type's default model and for every model a
LibraryEngineModel of the library uses, by ``generateEmbeddings`` jobs, by training, or inserted by clients.
Only image identifier types are embedded here: a registered embedding model reads whole images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import numpy as np

from gateway.errors import InvalidInput, NotFound
from gateway.resources import Resources
from gateway.services.access.ids import parse_id
from gateway.services.access.principal import Principal
from gateway.services.models import registry as models
from storage.queries import identifiers as identifier_q
from storage.queries import libraries as library_q
from storage.queries import types as type_q
from storage.queries import vectors as q
from storage.rows import ModelVersion

EMBEDDING = "embedding"
MAX_INSERT = 100  # insertEmbeddings takes fewer than this many per call
MAX_UNIQUE_NAMES = 1000  # embeddingVectors per call: each answer carries a whole vector


@dataclass(frozen=True, slots=True)
class StoredEmbedding:
    """One EntityIdentifier.embeddings entry."""

    model: str
    model_version_id: UUID
    dimension: int
    created_at: datetime
    source: str


@dataclass(frozen=True, slots=True)
class VectorOf:
    """One embeddingVectors answer."""

    unique_name: str
    identifier_id: UUID
    library_id: UUID
    model: str
    vector: np.ndarray


# ------------------------------------------------------------------ models


async def resolve_version(res: Resources, org_id: UUID, ref: str | None, identifier_type: str | None = None) -> ModelVersion:
    """The embedding model version ``ref`` names, or the system default for ``identifier_type``."""
    if ref:
        version = await models.resolve_model(res, org_id, ref, EMBEDDING)
    else:
        version = await models.default_model(res, org_id, EMBEDDING, identifier_type)
        if version is None:
            kind = identifier_type or "image"
            raise InvalidInput(
                f"no modelId was given and no default embedding model for {kind} identifiers is registered; "
                "name a registered embedding model (modelId) or pull a default (engineshed models pull)"
            )
    if not version.dimension or version.dimension <= 0:
        raise InvalidInput(f"model {version.ref} declares no output dimension")
    return version


async def library_default_version(res: Resources, org_id: UUID, library_id: UUID) -> ModelVersion | None:
    """The embedding model a library's type picks where none is named: the system default of the first of the
    type's image identifier types that has a ready one (people: face, so face-embedding; objects: image, so
    image-embedding). Ingest embeds a face identifier with face-embedding, so a people library searched with the
    image model would find nothing. None when no type of the library has a ready default."""
    async with res.pool.acquire() as conn:
        library = await library_q.by_id(conn, org_id, library_id)
        if library is None:
            raise NotFound()
        library_type = await type_q.library_type_by_id(conn, library.library_type_id)
        data_types = {t.id: t.data_type for t in await type_q.identifier_types(conn, org_id)}
    for type_id in library_type.identifier_type_ids if library_type else []:
        if data_types.get(type_id, "image") != "image":
            continue  # only whole images are embedded here
        version = await models.default_model(res, org_id, EMBEDDING, type_id)
        if version is not None and version.dimension and version.dimension > 0:
            return version
    return None


async def existing_library(res: Resources, principal: Principal, library_id: object | None) -> UUID | None:
    """:func:`_scoped_library`, and not_found for a library the organization does not have."""
    lid = _scoped_library(principal, library_id)
    if lid is not None and library_id is not None:
        async with res.pool.acquire() as conn:
            if await library_q.by_id(conn, principal.org_id, lid) is None:
                raise NotFound()
    return lid


def _scoped_library(principal: Principal, library_id: object | None) -> UUID | None:
    """The library a call is limited to: the one given, or a task token's own."""
    lid = parse_id(library_id) if library_id is not None else None
    if principal.is_task:
        if lid is None:
            return principal.library_id
        principal.check_library(lid)
    return lid


# ------------------------------------------------------------------ inserting and reading vectors


def check_vector(values: Sequence[float], dimension: int, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size != dimension:
        raise InvalidInput(f"{what} has {array.size} values; the model's dimension is {dimension}")
    if not np.isfinite(array).all():
        raise InvalidInput(f"{what} holds a value that is not a finite number")
    if not np.any(array):
        raise InvalidInput(f"{what} is all zeros, which has no direction to compare by cosine")
    if np.abs(array).max() > 3.4e38:
        raise InvalidInput(f"{what} holds a value outside the float32 range")
    return array.astype(np.float32)


async def insert(
    res: Resources, principal: Principal, model_ref: str, vector_dimension: Sequence[int],
    records: Sequence[tuple[str, Sequence[float]]], library_id: object | None,
) -> int:
    """insertEmbeddings: all of ``records`` (unique name, vector) or none; returns how many were stored."""
    principal.require_write()
    if not isinstance(model_ref, str) or not model_ref.strip():
        raise InvalidInput("modelId is required: the registered embedding model the vectors came from")
    dims = list(vector_dimension)
    if len(dims) != 1 or dims[0] <= 0:
        raise InvalidInput(f"vectorDimension must be one positive number, such as [2048], not {dims}")
    if not records:
        raise InvalidInput("embeddings is empty")
    if len(records) >= MAX_INSERT:
        raise InvalidInput(
            f"insertEmbeddings takes fewer than {MAX_INSERT} embeddings per call (got {len(records)}); split the batch",
            data={"limit": MAX_INSERT - 1},
        )
    lid = await existing_library(res, principal, library_id)
    version = await resolve_version(res, principal.org_id, model_ref)
    dimension = dims[0]
    if dimension != version.dimension:
        raise InvalidInput(f"vectorDimension [{dimension}] is not the dimension of model {version.ref} ({version.dimension})")
    names: list[str] = []
    for position, (name, _) in enumerate(records):
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput(f"embeddings[{position}].uniqueName is empty")
        names.append(name)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidInput(f"uniqueName given more than once in one call: {', '.join(repeated[:10])}")
    vectors = [
        check_vector(values, dimension, f"embeddings[{position}] ({name})")
        for position, (name, values) in enumerate(records)
    ]
    async with res.pool.acquire() as conn, conn.transaction():
        found = await identifier_q.by_unique_names(conn, principal.org_id, names, lid)
        by_name: dict[str, list[Any]] = {}
        for row in found:
            by_name.setdefault(row["unique_name"], []).append(row)
        missing = [n for n in names if n not in by_name]
        if missing:
            raise NotFound(
                f"no identifier has the uniqueName {', '.join(map(repr, missing))}",
                data={"objectType": "entityIdentifier", "uniqueNames": missing},
            )
        ambiguous = [n for n in names if len(by_name[n]) > 1]
        if ambiguous:
            raise InvalidInput(
                f"uniqueName {', '.join(map(repr, ambiguous[:10]))} is used in several libraries; give libraryId"
            )
        rows = [(by_name[n][0]["id"], by_name[n][0]["library_id"], v.tolist()) for n, v in zip(names, vectors, strict=True)]
        await q.upsert_inserted(conn, principal.org_id, version.id, dimension, rows)
        await q.want_index(conn, principal.org_id, version.id, dimension)
    return len(rows)


async def vectors(
    res: Resources, principal: Principal, unique_names: Sequence[str], model_ref: str | None, library_id: object | None,
) -> list[VectorOf]:
    """embeddingVectors: the vectors of the named identifiers (names without one are left out)."""
    principal.require_read()
    names = list(dict.fromkeys(unique_names))
    if len(names) > MAX_UNIQUE_NAMES:
        raise InvalidInput(f"embeddingVectors takes at most {MAX_UNIQUE_NAMES} uniqueNames per call")
    lid = await existing_library(res, principal, library_id)
    if not names:
        return []
    async with res.pool.acquire() as conn:
        found = await identifier_q.by_unique_names(conn, principal.org_id, names, lid)
    versions: dict[str | None, ModelVersion] = {}
    by_version: dict[UUID, list[Any]] = {}
    for row in found:
        key = None if model_ref else row["identifier_type_id"]
        if key not in versions:
            versions[key] = await resolve_version(res, principal.org_id, model_ref, row["identifier_type_id"])
        by_version.setdefault(versions[key].id, []).append(row)
    refs = {v.id: v.ref for v in versions.values()}
    out: list[VectorOf] = []
    async with res.pool.acquire() as conn:
        for version_id, rows in by_version.items():
            got = await q.vectors_by_ids(conn, principal.org_id, version_id, [r["id"] for r in rows])
            for r in rows:
                if r["id"] in got:
                    out.append(VectorOf(r["unique_name"], r["id"], r["library_id"], refs[version_id], got[r["id"]]))
    order = {n: i for i, n in enumerate(names)}
    out.sort(key=lambda v: (order[v.unique_name], str(v.library_id)))
    return out


async def of_identifiers(res: Resources, org_id: UUID, ids: Sequence[UUID]) -> dict[UUID, list[StoredEmbedding]]:
    """EntityIdentifier.embeddings for many identifiers (one query)."""
    out: dict[UUID, list[StoredEmbedding]] = {i: [] for i in ids}
    async with res.pool.acquire() as conn:
        for r in await q.of_identifiers(conn, org_id, list(ids)):
            out[r["identifier_id"]].append(
                StoredEmbedding(r["model"], r["model_version_id"], r["dimension"], r["created_at"], r["source"]))
    return out
