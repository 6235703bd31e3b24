"""Which model of a (library, engine) is the default: promotion when a training completes, and rollback.

A model becomes the default only when it completes (never while it trains, so recognize keeps answering
with the old one), and only if it cannot lose people:

* **Coverage.** It knows every entity the default knows that the library still holds (``jsondata.entityIds``,
  which built-in engines record), and it uses at least as many identifiers as the default did (``identifiers``),
  or as many as the library holds now of the engine's types if identifiers were deleted since. A model that
  knew 6 of 10 people does not replace one that knew all 10, whatever either scores.
* **Score, on a common evaluation set.** A training evaluates its own held-out rows; re-running both models
  on one shared set of identifiers is not possible from what is stored. The common evaluation set is therefore
  the entities both models evaluated (``jsondata.evaluation.perEntity``): each model's score is its own correct
  / evaluated tally over those entities only, so a model is not credited for dropping the people it found
  hard. Where either model has no per-entity tally, the overall accuracies are compared, as the reason says.
  The candidate must score at least as well as the default.

A model of a newer library version than the default's is not held to the score (the versions' test sets
differ), only to coverage; one of an older version is not promoted. ``autoPromote`` (per training; default
false, so a regression never replaces a better model unasked) promotes anyway. Where a model records no
coverage (an external engine's), coverage is not compared and the reason says so. The record in the model's
``promotion`` names both models' coverage and scores, promoted or not; ``setDefaultModel`` moves the default
by hand (rolling back or forward).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

import asyncpg

from gateway.errors import InvalidInput, NotFound
from gateway.resources import Resources
from gateway.services.access.ids import parse_id
from gateway.services.access.principal import Principal
from storage.queries import engine_models as model_q
from storage.queries import engines as engine_q
from storage.queries import identifiers as identifier_q
from storage.queries import training_reports as report_q
from storage.queries import trainings as q
from storage.rows import EngineModel

DEFAULT_AUTO_PROMOTE = False
LOST_LIST_CAP = 100  # entity ids recorded in promotion.lostEntityIds; lostEntities counts them all
SCORE_TOLERANCE = 1e-9  # "at least as well": equal scores computed in another order still tie


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
    record: dict[str, Any] = {"accuracy": model.accuracy, "autoPromote": model.auto_promote,
                              "previousModelId": str(current.id) if current is not None else None,
                              "previousAccuracy": current.accuracy if current is not None else None}
    if current is None:
        promoted, reason = True, "first complete model of this library and engine"
    else:
        promoted, reason = await _compare(conn, model, current, record)
    if promoted:
        await q.set_default(conn, model)
    record.update(promoted=promoted, reason=reason, decidedDateTime=datetime.now(timezone.utc).isoformat())
    return await q.set_promotion(conn, model.org_id, model.id, record)


async def _compare(conn: asyncpg.Connection, model: EngineModel, current: EngineModel,
                   record: dict[str, Any]) -> tuple[bool, str]:
    """Whether ``model`` replaces ``current`` and why; fills ``record`` with both coverages and scores."""
    if model.library_version < current.library_version:
        promoted = model.auto_promote
        return promoted, (f"trained on an older library version ({model.library_version} < {current.library_version}); "
                          + ("promoted because autoPromote is set" if promoted else "setDefaultModel promotes it"))
    mine, theirs = coverage_of(model), coverage_of(current)
    record["coverage"] = {"candidate": mine.as_json(), "default": theirs.as_json()}
    parts = [f"candidate knows {mine.describe()}, the default {theirs.describe()}"]
    lost_entities: list[str] = []
    missing_identifiers = 0
    if mine.entity_ids is not None and theirs.entity_ids is not None:
        gone = theirs.entity_ids - mine.entity_ids
        if gone:
            held = await report_q.still_in_library(conn, model.org_id, model.library_id, sorted(gone))
            lost_entities = sorted(str(e) for e in held)
        need = theirs.identifiers or 0
        if (mine.identifiers or 0) < need:
            types = await _engine_types(conn, model)
            need = min(need, await identifier_q.count_for_training(conn, model.org_id, model.library_id, types))
            missing_identifiers = max(0, need - (mine.identifiers or 0))
        record["lostEntityIds"] = lost_entities[:LOST_LIST_CAP]
        record["lostEntities"] = len(lost_entities)
        record["missingIdentifiers"] = missing_identifiers
        if lost_entities:
            parts.append(f"it would lose {len(lost_entities)} entit{'y' if len(lost_entities) == 1 else 'ies'} the default "
                         f"knows ({', '.join(lost_entities[:5])}{', …' if len(lost_entities) > 5 else ''})")
        if missing_identifiers:
            parts.append(f"it uses {missing_identifiers} identifier(s) fewer than the default")
    else:
        parts.append("entities compared by count: " + ("neither model" if mine.entity_ids is None and theirs.entity_ids is None
                                                       else "the candidate" if mine.entity_ids is None else "the default")
                     + " recorded them one by one")
        if mine.entities is not None and theirs.entities is not None and mine.entities < theirs.entities:
            # Without the lists, knowing fewer entities is the one loss that can be shown.
            lost_entities = [f"{theirs.entities - mine.entities} by count"]
            record["lostEntities"] = theirs.entities - mine.entities
            parts.append(f"it knows {theirs.entities - mine.entities} entit"
                         f"{'y' if theirs.entities - mine.entities == 1 else 'ies'} fewer than the default")
    covers = not lost_entities and not missing_identifiers
    newer = model.library_version > current.library_version
    if newer:
        scores_ok = True
        parts.append(f"trained on a newer library version ({model.library_version} > {current.library_version}); "
                     "accuracies of different versions are not compared")
    else:
        scores_ok, said = _scores(model, current, record)
        parts.append(said)
    if covers and scores_ok:
        compared = mine.entity_ids is not None and theirs.entity_ids is not None
        verdict = [v for v, holds in (("covers the default", compared), ("scores at least as well", not newer)) if holds]
        return True, "; ".join(parts) + "; promoted" + (f": {' and '.join(verdict)}" if verdict else "")
    why = "loses coverage" if not covers else "scores worse than the default"
    if model.auto_promote:
        return True, "; ".join(parts) + f"; {why}, promoted because autoPromote is set"
    return False, "; ".join(parts) + f"; {why} (autoPromote is off); setDefaultModel promotes it"


def _scores(model: EngineModel, current: EngineModel, record: dict[str, Any]) -> tuple[bool, str]:
    """At least as good on the common evaluation set (the entities both evaluated), else on overall accuracy."""
    mine, theirs = _per_entity(model), _per_entity(current)
    common = sorted(set(mine) & set(theirs)) if mine is not None and theirs is not None else []
    if common:
        a = _tally(mine, common)  # type: ignore[arg-type]
        b = _tally(theirs, common)  # type: ignore[arg-type]
        record["commonEvaluation"] = {"entities": len(common), "candidate": a, "default": b}
        said = f"on the {len(common)} entities both evaluated the candidate scores {_fmt(a)}, the default {_fmt(b)}"
        return (b is None or (a is not None and a >= b - SCORE_TOLERANCE)), said
    said = (f"no entity evaluated by both; overall accuracy: candidate {_fmt(model.accuracy)}, "
            f"default {_fmt(current.accuracy)}")
    ok = current.accuracy is None or (model.accuracy is not None and model.accuracy >= current.accuracy - SCORE_TOLERANCE)
    return ok, said


def _per_entity(model: EngineModel) -> dict[str, tuple[int, int]] | None:
    data = model.jsondata if isinstance(model.jsondata, dict) else {}
    evaluation = data.get("evaluation") if isinstance(data.get("evaluation"), dict) else {}
    tallies = evaluation.get("perEntity")
    if not isinstance(tallies, dict):
        return None
    return {str(k): (int(v.get("correct") or 0), int(v.get("count") or 0)) for k, v in tallies.items()
            if isinstance(v, dict) and v.get("count")}


def _tally(tallies: dict[str, tuple[int, int]], entities: list[str]) -> float | None:
    correct = sum(tallies[e][0] for e in entities)
    count = sum(tallies[e][1] for e in entities)
    return correct / count if count else None


def _fmt(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.3f}"


async def _engine_types(conn: asyncpg.Connection, model: EngineModel) -> list[str]:
    engine = await engine_q.by_id(conn, model.org_id, model.engine_id)
    return list(engine.identifier_type_ids) if engine is not None else []


@dataclass(frozen=True, slots=True)
class Coverage:
    """Whom a model knows, from its ``jsondata``: ``entity_ids`` None where the engine did not record them."""

    entity_ids: frozenset[UUID] | None
    entities: int | None
    identifiers: int | None

    def describe(self) -> str:
        return f"{_count(self.entities)} entities and {_count(self.identifiers)} identifiers"

    def as_json(self) -> dict[str, Any]:
        return {"entities": self.entities, "identifiers": self.identifiers}


def _count(value: int | None) -> str:
    return "?" if value is None else str(value)


def coverage_of(model: EngineModel) -> Coverage:
    data = model.jsondata if isinstance(model.jsondata, dict) else {}
    ids = data.get("entityIds")
    entity_ids = None
    if isinstance(ids, list):
        try:
            entity_ids = frozenset(UUID(str(i)) for i in ids)
        except ValueError:
            entity_ids = None
    entities = len(entity_ids) if entity_ids is not None else _int(data.get("entities"))
    return Coverage(entity_ids, entities, _int(data.get("identifiers")))


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


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
