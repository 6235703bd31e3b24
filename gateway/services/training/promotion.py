"""Which model of a (library, engine) is the default: promotion when a training completes, and rollback.

A model becomes the default only when it completes (never while it trains, so recognize keeps answering
with the old one). A model of a newer library version than the default's is always promoted (its accuracy
is measured on another test set, and only it knows the new entities); one of an older version is not.
Within one library version it is promoted unless it scores worse than the current default: its accuracy
is lower, or unknown while the default's is known. ``autoPromote`` (per training; default false, so a regression never
replaces a better model unasked) promotes it anyway. Both accuracies are recorded in the model's
``promotion``, promoted or not; ``setDefaultModel`` moves the default by hand (rolling back or forward).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import asyncpg

from gateway.errors import InvalidInput, NotFound
from gateway.resources import Resources
from gateway.services.access.ids import parse_id
from gateway.services.access.principal import Principal
from storage.queries import engine_models as model_q
from storage.queries import trainings as q
from storage.rows import EngineModel

DEFAULT_AUTO_PROMOTE = False


async def on_complete(conn: asyncpg.Connection, model: EngineModel) -> EngineModel:
    """Run in the transaction that marks ``model`` complete; returns the model as it is now.

    The caller takes ``lock_default`` of the model's (library, engine) before it locks or writes the model's
    row: every path that changes models of one (library, engine) takes that lock first, then rows, so a
    training that completes, ``setDefaultModel``, a delete and an alias move never wait on each other in a
    cycle. (Taking it again here is harmless: advisory locks are re-entrant within a transaction.)"""
    await q.lock_default(conn, model.library_id, model.engine_id)
    current = await q.default_model(conn, model.org_id, model.library_id, model.engine_id)
    if current is not None and current.id == model.id:
        return model
    previous = current.accuracy if current is not None else None
    if current is None:
        promoted, reason = True, "first complete model of this library and engine"
    elif model.library_version > current.library_version:
        # Accuracies of two library versions are measured on different test sets (and the old model does not
        # know the new entities): the newer library always wins.
        promoted, reason = True, (f"trained on a newer library version ({model.library_version} > "
                                  f"{current.library_version}); accuracies of different versions are not compared")
    elif model.library_version < current.library_version:
        promoted = model.auto_promote
        reason = (f"trained on an older library version ({model.library_version} < {current.library_version}); "
                  + ("promoted because autoPromote is set" if promoted else "setDefaultModel promotes it"))
    elif previous is not None and (model.accuracy is None or model.accuracy < previous):
        promoted = model.auto_promote
        reason = ("scores worse than the default; promoted because autoPromote is set" if promoted
                  else "scores worse than the default (autoPromote is off); setDefaultModel promotes it")
    else:
        promoted, reason = True, "scores at least as well as the default"
    if promoted:
        await q.set_default(conn, model)
    record: dict[str, Any] = {
        "promoted": promoted,
        "reason": reason,
        "accuracy": model.accuracy,
        "previousModelId": str(current.id) if current is not None else None,
        "previousAccuracy": previous,
        "autoPromote": model.auto_promote,
        "decidedDateTime": datetime.now(timezone.utc).isoformat(),
    }
    return await q.set_promotion(conn, model.org_id, model.id, record)


async def set_default(res: Resources, principal: Principal, model_id: object) -> EngineModel:
    """Make a complete model the default of its (library, engine): a rollback, or a worse model on purpose."""
    principal.require_write()
    mid = parse_id(model_id)
    async with res.pool.acquire() as conn, conn.transaction():
        # The (library, engine) lock first, then the row (re-read under it): the one order every path takes.
        model = await model_q.by_id(conn, principal.org_id, mid)
        if model is None:
            raise NotFound()
        principal.check_library(model.library_id)
        await q.lock_default(conn, model.library_id, model.engine_id)
        model = await model_q.by_id(conn, principal.org_id, mid, for_update=True)
        if model is None:
            raise NotFound()  # deleted while we waited
        if model.train_status != "complete":
            raise InvalidInput(f"model {mid} is {model.train_status}; only a complete model can be the default")
        return await q.set_default(conn, model)


async def after_default_deleted(conn: asyncpg.Connection, deleted: EngineModel) -> None:
    """The default model was deleted: the newest complete model of its (library, engine) takes over, so
    recognize by library keeps answering. The caller holds ``lock_default`` since before the delete."""
    await q.lock_default(conn, deleted.library_id, deleted.engine_id)
    if await q.default_model(conn, deleted.org_id, deleted.library_id, deleted.engine_id) is not None:
        return
    newest = await model_q.newest_complete(conn, deleted.org_id, deleted.library_id, deleted.engine_id)
    if newest is not None:
        await q.set_default(conn, newest)
