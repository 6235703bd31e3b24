"""A library's counts, preview identifiers and issues, read from its identifiers and its last training."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from gateway.errors import CapacityExceeded, NotFound
from gateway.services.principal import Principal
from storage.queries import trainings as q
from storage.rows import EngineModel

MAX_ISSUE_REASONS = 200
PREVIEW_COUNT = 5


@dataclass(slots=True)
class LibraryInsight:
    """Counts: ``identifiers`` is every identifier of the library, unassigned ones (no entity, #14) included;
    ``active_entities`` the entities with at least one; ``usable_identifiers`` the assigned identifiers a training
    uses, less those the last complete training skipped (unassigned ones are never trained on)."""

    entities: int = 0
    active_entities: int = 0
    identifiers: int = 0
    usable_identifiers: int = 0
    has_error: bool = False
    has_warning: bool = False
    reasons: list[dict[str, Any]] = field(default_factory=list)
    last_training: EngineModel | None = None


def _reason(kind: str, severity: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "severity": severity, "message": message, "identifierId": extra.get("identifierId"),
            "entityId": extra.get("entityId"), "detail": extra.get("detail")}


async def insights(
    res: Any, principal: Principal, library_ids: list[UUID], *, near_duplicates: bool = False,
) -> dict[UUID, LibraryInsight]:
    """Counts and issues of several libraries in a few queries (a DataLoader's batch).

    Issues: the last finished training failed (an error), and, as warnings, identifiers its gates skipped
    (``jsondata.skipped``) or warned about (``jsondata.warnings``), entities with fewer than 2 identifiers,
    and identifiers whose content another identifier of the library has too. With ``near_duplicates`` (asked
    only where the issues are read: it scans each library's stored vectors), also identifiers whose stored
    vector is near-identical to one under another entity (gateway.services.embeddings.duplicates); a library
    too large for that scan gets an ``info`` reason saying the check was skipped and why.
    """
    from gateway.services import trainings  # trainings imports this module

    out = {lid: LibraryInsight() for lid in library_ids}
    # The "last training" is the library's default engine's (a publish trains every compatible engine at once).
    default_engines = await trainings.default_engine_ids(res, principal.org_id, library_ids)
    async with res.pool.acquire() as conn:
        counts = await q.library_counts(conn, principal.org_id, library_ids)
        last = await q.last_trainings(conn, principal.org_id, library_ids, default_engines)
        duplicates = await q.duplicates(conn, principal.org_id, library_ids, MAX_ISSUE_REASONS * len(library_ids))
        thin = await q.thin_entities(conn, principal.org_id, library_ids, MAX_ISSUE_REASONS * len(library_ids))
    for lid, insight in out.items():
        record = counts.get(lid)
        if record is not None:
            insight.entities = int(record["entities"])
            insight.active_entities = int(record["active_entities"])
            insight.identifiers = int(record["identifiers"])
            insight.usable_identifiers = int(record["assigned"])
        assigned = insight.usable_identifiers
        model = last.get(lid)
        insight.last_training = model
        if model is not None:
            data = model.jsondata if isinstance(model.jsondata, dict) else {}
            if model.train_status == "failed":
                insight.has_error = True
                insight.reasons.append(_reason("training-failed", "error",
                                               str(data.get("error") or "the last training failed")))
            skipped = [s for s in data.get("skipped") or [] if isinstance(s, dict)]
            warnings = [w for w in data.get("warnings") or [] if isinstance(w, dict)]
            if model.train_status == "complete":
                insight.usable_identifiers = max(0, assigned - len(skipped))
            for item, severity in [(s, "warning") for s in skipped] + [(w, "warning") for w in warnings]:
                insight.reasons.append(_reason(
                    str(item.get("reason") or "skipped"), severity,
                    f"identifier {item.get('identifierId')}: {item.get('reason')}",
                    identifierId=item.get("identifierId"), entityId=item.get("entityId"), detail=item.get("detail"),
                ))
    for record in thin:
        insight = out[record["library_id"]]
        insight.reasons.append(_reason(
            "too-few-identifiers", "warning",
            f"entity {record['name']!r} has {record['n']} identifier(s); recognition needs at least 2 to be evaluated",
            entityId=str(record["id"]),
        ))
    for record in duplicates:
        out[record["library_id"]].reasons.append(_reason(
            "duplicate", "warning", f"identifier {record['id']} has the same content as another identifier of the library",
            identifierId=str(record["id"]), entityId=str(record["entity_id"]) if record["entity_id"] else None,
            detail=record["content_sha256"],
        ))
    if near_duplicates:
        reported = {(r["library_id"], str(r["id"])) for r in duplicates}
        for lid in library_ids:
            await _near_duplicates(res, principal, lid, out[lid], reported)
    for insight in out.values():
        insight.has_warning = any(r["severity"] == "warning" for r in insight.reasons)
        insight.reasons = insight.reasons[:MAX_ISSUE_REASONS]
    return out


async def _near_duplicates(
    res: Any, principal: Principal, library_id: UUID, insight: LibraryInsight, reported: set[tuple[UUID, str]],
) -> None:
    """Add a ``duplicate`` reason for each identifier of a near-identical pair not already reported as a byte copy."""
    from gateway.services import embeddings

    try:
        pairs = await embeddings.duplicates(res, principal, library_id, limit=MAX_ISSUE_REASONS)
    except CapacityExceeded as exc:
        # The byte-identical duplicates above still stand; say plainly that the rest was not looked for.
        insight.reasons.append(_reason(
            "duplicate-check-skipped", "info",
            f"near-identical duplicates were not looked for: {exc.message}; byte-identical ones are reported",
        ))
        return
    except NotFound:  # deleted meanwhile
        return
    for pair in pairs:
        if pair.reason != "near-identical":
            continue
        for this, other in ((pair.first, pair.second), (pair.second, pair.first)):
            if (library_id, str(this.id)) in reported:
                continue
            reported.add((library_id, str(this.id)))
            insight.reasons.append(_reason(
                "duplicate", "warning",
                f"identifier {this.id} is near-identical to identifier {other.id} of another entity",
                identifierId=str(this.id), entityId=str(this.entity_id) if this.entity_id else None,
                detail=f"near-identical to {other.id} (cosine {pair.score:.4f})",
            ))
