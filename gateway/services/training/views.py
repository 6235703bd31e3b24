"""Read models of the training domain: a library's counts, preview identifiers and issues (read from its
identifiers and its last training), and what a training shows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg

from gateway.errors import CapacityExceeded, NotFound
from gateway.resources import Resources
from gateway.services.access.principal import Principal
from gateway.services.embeddings import duplicates as embedding_duplicates
from gateway.services.library.identifiers import url_for
from gateway.services.training.defaults import default_engine_ids
from gateway.services.training.report import TrainingReport, reports
from storage.queries import engines as engine_q
from storage.queries import libraries as library_q
from storage.queries import trainings as q
from storage.rows import EngineModel, Identifier, Job, Library

MAX_ISSUE_REASONS = 200
PREVIEW_COUNT = 5


@dataclass(slots=True)
class LibraryInsight:
    """Counts: ``identifiers`` is every identifier of the library, unassigned ones (no entity) included;
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
    res: Resources, principal: Principal, library_ids: list[UUID], *, near_duplicates: bool = False,
) -> dict[UUID, LibraryInsight]:
    """Counts and issues of several libraries in a few queries (a DataLoader's batch).

    Issues: the last finished training failed (an error), and, as warnings, identifiers its gates skipped
    (``jsondata.skipped``) or warned about (``jsondata.warnings``), entities with fewer than 2 identifiers,
    and identifiers whose content another identifier of the library has too. With ``near_duplicates`` (asked
    only where the issues are read: it scans each library's stored vectors), also identifiers whose stored
    vector is near-identical to one under another entity (gateway.services.embeddings.duplicates); a library
    too large for that scan gets an ``info`` reason saying the check was skipped and why.
    """
    out = {lid: LibraryInsight() for lid in library_ids}
    # The "last training" is the library's default engine's (a publish trains every compatible engine at once).
    default_engines = await default_engine_ids(res, principal.org_id, library_ids)
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
    res: Resources, principal: Principal, library_id: UUID, insight: LibraryInsight, reported: set[tuple[UUID, str]],
) -> None:
    """Add a ``duplicate`` reason for each identifier of a near-identical pair not already reported as a byte copy."""

    try:
        pairs = await embedding_duplicates.duplicates(res, principal, library_id, limit=MAX_ISSUE_REASONS)
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


@dataclass(slots=True)
class TrainingView:
    """What a training shows over REST, gathered for several trainings in a few queries."""

    job: Job
    model: EngineModel
    library: Library | None
    summary: asyncpg.Record | None  # the job's task summary (storage.queries.trainings.job_summaries)
    insight: LibraryInsight
    preview_urls: list[str]
    engine_type: str | None = None  # the first identifier type the training's engine reads (external engines too)
    report: TrainingReport | None = None  # what the training used and left out; None until it completes


async def views(res: Resources, principal: Principal, jobs: list[Job]) -> list[TrainingView]:
    if not jobs:
        return []
    job_ids = [j.id for j in jobs]
    async with res.pool.acquire() as conn:
        models = await q.models_by_train_jobs(conn, principal.org_id, job_ids)
        summaries = await q.job_summaries(conn, principal.org_id, job_ids)
        library_ids = list({m.library_id for m in models.values()})
        libraries = {lib.id: lib for lib in await library_q.by_ids(conn, principal.org_id, library_ids)}
        previews: dict[UUID, list[Any]] = {lid: [] for lid in library_ids}
        for record in await q.preview_identifiers(conn, principal.org_id, library_ids, PREVIEW_COUNT):
            previews[record["library_id"]].append(Identifier.of(record))
        engine_ids = sorted({m.engine_id for m in models.values()})
        engine_types = {e.id: (e.identifier_type_ids or [None])[0] for e in await engine_q.by_ids(conn, principal.org_id, engine_ids)}
    found = await insights(res, principal, library_ids, near_duplicates=True) if library_ids else {}
    reported = await reports(res, principal.org_id, list(models.values()))
    out = []
    for job in jobs:
        model = models.get(job.id)
        if model is None:
            continue
        urls = [await url_for(res, row) for row in previews.get(model.library_id, [])]
        out.append(TrainingView(job, model, libraries.get(model.library_id), summaries.get(job.id),
                                found.get(model.library_id, LibraryInsight()), urls, engine_types.get(model.engine_id),
                                reported.get(model.id)))
    return out
