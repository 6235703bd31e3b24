"""A library's default engine and default model: what trains it and what answers for it when nobody names one."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg

from engines.interface import Engine
from gateway.errors import InvalidInput, NotFound
from gateway.resources import Resources
from gateway.services.access.ids import parse_id
from gateway.services.access.principal import Principal
from gateway.services.models import backbones as engine_backbones
from storage.queries import engines as engine_q
from storage.queries import libraries as library_q
from storage.queries import trainings as q
from storage.queries import types as type_q
from storage.rows import EngineModel, Library


@dataclass(frozen=True, slots=True)
class DefaultEngine:
    engine: Engine  # the installed engine
    identifier_type_id: str  # the library's identifier type it was chosen for (the training's `type`)


async def default_engine(res: Resources, conn: asyncpg.Connection, org_id: UUID, library: Library) -> DefaultEngine:
    """The engine that declares itself default (``EngineInfo.default_for``) for the first of the library
    type's identifier types that has one; invalid_input when none is installed.

    An engine whose required registered models are missing (``EngineInfo.requires_models``: the face engine
    on an install that pulled no face models) is passed over for the next claim (the gallery), so an offline
    install still trains people libraries instead of accepting a training that fails in the worker."""
    library_type = await type_q.library_type_by_id(conn, library.library_type_id)
    compatible = {e.id for e in await engine_q.compatible(conn, org_id, library.library_type_id)}
    type_ids = list(library_type.identifier_type_ids) if library_type else []
    unusable: list[str] = []
    for type_id in type_ids:
        claims = sorted(
            ((engine.info.default_for.index(type_id), engine.info.id, engine)
             for engine_id, engine in res.engines.items()
             if engine_id in compatible and type_id in getattr(engine.info, "default_for", ())),
            key=lambda c: (c[0], c[1]),
        )
        for _rank, engine_id, engine in claims:
            missing = await engine_backbones.missing_models(res, org_id, engine)
            if not missing:
                return DefaultEngine(engine, type_id)
            unusable.append(f"{engine_id} (no registered {', '.join(missing)} model)")
    raise InvalidInput(
        f"no installed engine is the default for library type {library.library_type_id} "
        f"(identifier types {', '.join(type_ids) or 'none'})"
        + (f"; passed over: {'; '.join(unusable)}" if unusable else "")
    )


async def default_engine_ids(res: Resources, org_id: UUID, library_ids: list[UUID]) -> dict[UUID, str]:
    """Each library's default engine ID (libraries without one are left out): what a library's "last training"
    is taken from (storage.queries.trainings.last_trainings' ``default_engines``)."""
    out: dict[UUID, str] = {}
    by_type: dict[str, str | None] = {}  # the default engine depends on the library's type only
    async with res.pool.acquire() as conn:
        for library in await library_q.by_ids(conn, org_id, library_ids):
            if library.library_type_id not in by_type:
                try:
                    by_type[library.library_type_id] = (await default_engine(res, conn, org_id, library)).engine.info.id
                except InvalidInput:
                    by_type[library.library_type_id] = None
            if by_type[library.library_type_id] is not None:
                out[library.id] = by_type[library.library_type_id]
    return out


async def default_model_of(res: Resources, principal: Principal, library_id: object, engine_id: object | None) -> EngineModel:
    """The default model of a library for ``engine_id``; without one, the default model of the library's
    default engine, else the newest default model of any engine (a library trained only by the gallery while
    the face engine could not run still answers)."""
    lid = parse_id(library_id)
    principal.check_library(lid)
    async with res.pool.acquire() as conn:
        library = await library_q.by_id(conn, principal.org_id, lid)
        if library is None:
            raise NotFound()
        if engine_id is not None:
            model = await q.default_model(conn, principal.org_id, lid, str(engine_id))
            if model is None:
                raise InvalidInput(f"library {lid} has no default model for engine {engine_id}: train it first")
            return model
        try:
            engine: str | None = (await default_engine(res, conn, principal.org_id, library)).engine.info.id
        except InvalidInput:
            engine = None
        model = await q.default_model(conn, principal.org_id, lid, engine) if engine is not None else None
        if model is None:
            model = await q.newest_default_model(conn, principal.org_id, lid)
    if model is None:
        raise InvalidInput(f"library {lid} has no default model: train it first")
    return model
