"""A training's report: the identifiers it used, those it skipped by reason, and the entities it left with no
usable identifier. GraphQL's ``trainingReport``, the REST training's ``issues`` and the client read this one model.

The engine records what it saw (``jsondata``: ``identifiers``, ``skipped``, ``entityIds``, ``libraryReadAt``;
engines/training.py ``coverage_report``). Entities it never saw (none of their identifiers is of a type the
engine reads) are found here: the library's entities created by ``libraryReadAt`` that are not among the model's
``entityIds``. Lists are bounded (REPORT_LIST_CAP entities, SKIPPED_LIST_CAP identifiers per reason); the counts
are always whole, and ``capped`` says when a list is shorter than its count. An engine that records no
``entityIds`` (an external engine, or a model trained before they were recorded) gets ``recorded`` false and
only what its ``skipped`` says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from engines.training import REPORT_LIST_CAP
from gateway.resources import Resources
from storage.queries import engines as engine_q
from storage.queries import training_reports as q
from storage.rows import EngineModel

__all__ = ["EntityWithoutIdentifiers", "SkipReason", "SkippedIdentifier", "TrainingReport", "report_of", "reports"]

SKIPPED_LIST_CAP = 50

# What to change, per skip reason the built-in engines give (each skip's own detail says by how much).
REASON_HELP = {
    "too-small": "smaller than the engine's minSize: upload larger images or lower config minSize",
    "blurry": "less sharp than sharpnessThreshold: upload sharper images or lower config sharpnessThreshold",
    "no-face": "no face was found: upload a photo where the face is visible, or lower config minFaceSize",
    "face-too-small": "the face is smaller than minFaceSize: upload a closer photo or lower config minFaceSize",
    "fetch-failed": "the content could not be fetched: check its URL, or upload the file itself",
    "corrupt": "the content does not decode: upload the file again",
    "too-large": "larger than the engine accepts: upload a smaller file",
}


@dataclass(frozen=True, slots=True)
class SkippedIdentifier:
    identifier_id: str
    entity_id: str | None
    detail: str


@dataclass(frozen=True, slots=True)
class SkipReason:
    """The identifiers one reason skipped: all counted, at most SKIPPED_LIST_CAP listed."""

    reason: str
    count: int
    message: str
    identifiers: list[SkippedIdentifier]
    capped: bool


@dataclass(frozen=True, slots=True)
class EntityWithoutIdentifiers:
    """An entity the model does not know. ``reason``: ``all-skipped`` (every identifier it has was skipped),
    ``no-identifier`` (it had none of a type the engine reads), ``not-used`` (it had some, none skipped, none
    used: held out whole by a split, or filtered)."""

    id: str
    name: str
    reason: str
    message: str


@dataclass(slots=True)
class TrainingReport:
    recorded: bool  # whether the engine recorded the entities it used (built-in engines do)
    identifiers_used: int | None
    identifiers_skipped: int
    entities_used: int | None
    skipped: list[SkipReason] = field(default_factory=list)
    entities_without_identifiers: list[EntityWithoutIdentifiers] = field(default_factory=list)
    entities_without_identifiers_count: int = 0
    entities_without_identifiers_capped: bool = False

    @property
    def has_warning(self) -> bool:
        return bool(self.identifiers_skipped or self.entities_without_identifiers_count)

    def as_json(self) -> dict[str, Any]:
        """The camelCase form the REST training and the CLI's JSON print."""
        return {
            "recorded": self.recorded,
            "identifiersUsed": self.identifiers_used,
            "identifiersSkipped": self.identifiers_skipped,
            "entitiesUsed": self.entities_used,
            "skipped": [{"reason": s.reason, "count": s.count, "message": s.message, "capped": s.capped,
                         "identifiers": [{"identifierId": i.identifier_id, "entityId": i.entity_id, "detail": i.detail}
                                         for i in s.identifiers]} for s in self.skipped],
            "entitiesWithoutIdentifiers": [{"id": e.id, "name": e.name, "reason": e.reason, "message": e.message}
                                           for e in self.entities_without_identifiers],
            "entitiesWithoutIdentifiersCount": self.entities_without_identifiers_count,
            "entitiesWithoutIdentifiersCapped": self.entities_without_identifiers_capped,
        }


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _skip_reasons(data: dict[str, Any]) -> tuple[list[SkipReason], int]:
    items = [s for s in data.get("skipped") or [] if isinstance(s, dict)]
    by_reason: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        by_reason.setdefault(str(item.get("reason") or "skipped"), []).append(item)
    reasons = []
    for reason, group in sorted(by_reason.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        example = next((str(i["detail"]) for i in group if i.get("detail")), "")
        message = f"{len(group)} identifier(s) skipped: {REASON_HELP.get(reason, reason)}" + (f" (e.g. {example})" if example else "")
        listed = [SkippedIdentifier(str(i.get("identifierId")), str(i["entityId"]) if i.get("entityId") else None,
                                    str(i.get("detail") or "")) for i in group[:SKIPPED_LIST_CAP]]
        reasons.append(SkipReason(reason, len(group), message, listed, len(group) > SKIPPED_LIST_CAP))
    return reasons, len(items)


def _uuids(values: Any) -> list[UUID] | None:
    if not isinstance(values, list):
        return None
    try:
        return [UUID(str(v)) for v in values]
    except ValueError:
        return None


def _read_at(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _skipped_message(counts: dict[str, Any]) -> str:
    total = sum(int(n) for n in counts.values())
    parts = ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items(), key=lambda kv: (-int(kv[1]), kv[0])))
    return f"every identifier was skipped ({total}: {parts})"


async def _report(conn: asyncpg.Connection, model: EngineModel, type_ids: list[str]) -> TrainingReport:
    data = model.jsondata if isinstance(model.jsondata, dict) else {}
    reasons, skipped = _skip_reasons(data)
    known, read_at = _uuids(data.get("entityIds")), _read_at(data.get("libraryReadAt"))
    engine_named = {str(e.get("id")): e for e in data.get("entitiesWithoutIdentifiers") or [] if isinstance(e, dict)}
    report = TrainingReport(recorded=known is not None and read_at is not None, identifiers_used=_int(data.get("identifiers")),
                            identifiers_skipped=skipped, entities_used=len(known) if known is not None else _int(data.get("entities")),
                            skipped=reasons)
    if known is None or read_at is None:
        # Only what the engine named, if anything: whom it never paged cannot be told without its entity list.
        report.entities_without_identifiers = [
            EntityWithoutIdentifiers(eid, str(e.get("name") or ""), "all-skipped", _skipped_message(e.get("skipped") or {}))
            for eid, e in list(engine_named.items())[:REPORT_LIST_CAP]]
        report.entities_without_identifiers_count = _int(data.get("entitiesWithoutIdentifiersCount")) or len(engine_named)
        report.entities_without_identifiers_capped = report.entities_without_identifiers_count > len(report.entities_without_identifiers)
        return report
    rows, total = await q.entities_not_in_model(conn, model.org_id, model.library_id, REPORT_LIST_CAP, read_at, known, type_ids)
    kinds = " or ".join(type_ids) or "a type the engine reads"
    for row in rows:
        eid = str(row["id"])
        if eid in engine_named:
            reason, message = "all-skipped", _skipped_message(engine_named[eid].get("skipped") or {})
        elif row["readable"] == 0:
            reason, message = "no-identifier", f"it had no identifier of type {kinds} when the library was read"
        else:
            reason, message = "not-used", (f"none of its {row['readable']} identifier(s) was used or skipped: "
                                           "held out whole by the split, or filtered")
        report.entities_without_identifiers.append(EntityWithoutIdentifiers(eid, row["name"], reason, message))
    report.entities_without_identifiers_count = total
    report.entities_without_identifiers_capped = total > len(rows)
    return report


async def reports(res: Resources, org_id: UUID, models: list[EngineModel]) -> dict[UUID, TrainingReport | None]:
    """Each model's report; None for one that has not completed (a failed training says why in its error)."""
    out: dict[UUID, TrainingReport | None] = {m.id: None for m in models}
    complete = [m for m in models if m.train_status == "complete"]
    if not complete:
        return out
    async with res.pool.acquire() as conn:
        engines = {e.id: e for e in await engine_q.by_ids(conn, org_id, sorted({m.engine_id for m in complete}))}
        for model in complete:
            engine = engines.get(model.engine_id)
            out[model.id] = await _report(conn, model, list(engine.identifier_type_ids) if engine else [])
    return out


async def report_of(res: Resources, model: EngineModel) -> TrainingReport | None:
    """One model's report (the caller has checked the principal may read the model)."""
    return (await reports(res, model.org_id, [model]))[model.id]

