"""DataLoaders, fresh per request: child lists cost one query per distinct argument set, not per parent."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from strawberry.dataloader import DataLoader

from gateway.services.access import caller as caller_service
from gateway.services.embeddings import vectors as embedding_service
from gateway.services.library import catalogue
from gateway.services.queue import engines as engine_service
from gateway.services.training import engine_models as model_service
from gateway.services.library import entities as entity_service
from gateway.services.access.paging import Page
from storage.queries import engine_models as model_q
from storage.queries import entities as entity_q
from storage.queries import identifiers as identifier_q
from storage.queries import libraries as library_q
from storage.queries import engines as engine_q
from storage.queries import jobs as job_q
from storage.queries import trainings as training_q
from storage.rows import Identifier
from storage.queries import suggestions as suggestion_q

if TYPE_CHECKING:
    from gateway.schema.context import Context

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def _grouped(
    load: Callable[[Any, list[Any]], Awaitable[dict[Any, Any]]], group_of: Callable[[Any], Any], id_of: Callable[[Any], Any]
) -> Callable[[Sequence[Any]], Awaitable[list[Any]]]:
    """Batch keys that share everything but the parent ID into one query per group."""

    async def batch(keys: Sequence[Any]) -> list[Any]:
        groups: dict[Any, list[Any]] = defaultdict(list)
        for key in keys:
            groups[group_of(key)].append(key)
        found: dict[Any, Any] = {}
        for group, members in groups.items():
            result = await load(group, list(dict.fromkeys(id_of(k) for k in members)))
            for key in members:
                found[key] = result.get(id_of(key))
        return [found[k] for k in keys]

    return batch


class Loaders:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        res = ctx.resources

        async def identifier_pages(group: tuple, entity_ids: list[UUID]) -> dict[UUID, Page]:
            type_id, identifier_id, offset, limit = group
            async with res.pool.acquire() as conn:
                pages, totals = await identifier_q.pages_for_entities(
                    conn, ctx.principal.org_id, entity_ids,
                    identifier_type_id=type_id, identifier_id=identifier_id, offset=offset, limit=limit,
                )
            return {eid: Page(pages[eid], offset, limit, totals[eid]) for eid in entity_ids}

        async def entity_pages(group: tuple, library_ids: list[UUID]) -> dict[UUID, Page]:
            ids, is_published, name, type_id, order_by, descending, offset, limit = group
            return await entity_service.library_pages(
                res, ctx.principal, library_ids, ids=list(ids) if ids is not None else None, is_published=is_published,
                name=name, identifier_type_id=type_id, order_by=order_by, descending=descending, offset=offset, limit=limit,
            )

        async def model_pages(group: tuple, library_ids: list[UUID]) -> dict[UUID, Page]:
            model_id, engine_id, train_status, library_version, current_version, by_modified, offset, limit = group
            return await model_service.library_pages(
                res, ctx.principal, library_ids, model_id=model_id, engine_id=engine_id, train_status=train_status,
                library_version=library_version, current_version=current_version, by_modified=by_modified,
                offset=offset, limit=limit,
            )

        async def identifier_counts(_group: None, entity_ids: list[UUID]) -> dict[UUID, dict[str, int]]:
            async with res.pool.acquire() as conn:
                return await entity_q.identifier_counts(conn, ctx.principal.org_id, entity_ids)

        async def library_summaries(_group: None, ids: list[UUID]) -> dict[UUID, Any]:
            async with res.pool.acquire() as conn:
                return await library_q.summaries(conn, ctx.principal.org_id, ids)

        async def libraries(_group: None, ids: list[UUID]) -> dict[UUID, Any]:
            async with res.pool.acquire() as conn:
                return {r.id: r for r in await library_q.by_ids(conn, ctx.principal.org_id, ids)}

        async def entities(_group: None, ids: list[UUID]) -> dict[UUID, Any]:
            async with res.pool.acquire() as conn:
                return {r.id: r for r in await entity_q.by_ids(conn, ctx.principal.org_id, ids)}

        async def engines(_group: None, ids: list[str]) -> dict[str, Any]:
            async with res.pool.acquire() as conn:
                return {r.id: r for r in await engine_q.by_ids(conn, ctx.principal.org_id, ids)}

        async def task_pages(group: tuple, job_ids: list[UUID]) -> dict[UUID, Page]:
            statuses, task_id, offset, limit = group
            async with res.pool.acquire() as conn:
                pages, totals = await job_q.task_pages(conn, ctx.principal.org_id, job_ids, statuses, offset, limit, task_id)
            return {jid: Page(pages[jid], offset, limit, totals[jid]) for jid in job_ids}

        async def models(_group: None, ids: list[UUID]) -> dict[UUID, Any]:
            async with res.pool.acquire() as conn:
                return {r.id: r for r in await model_q.by_ids(conn, ctx.principal.org_id, ids)}

        async def identifier_type_lists(org_ids: Sequence[UUID]) -> list[Any]:
            return [await catalogue.identifier_types(res, org_id) for org_id in org_ids]

        async def library_type_lists(org_ids: Sequence[UUID]) -> list[Any]:
            return [await catalogue.library_types(res, org_id) for org_id in org_ids]

        async def category_engine_pages(group: tuple, category_ids: list[str]) -> dict[str, Page]:
            filters, order, offset, limit = group
            return await engine_service.category_pages(
                res, ctx.principal, category_ids, filters=filters, order=list(order), offset=offset, limit=limit
            )

        async def engine_task_pages(group: tuple, engine_ids: list[str]) -> dict[str, Page]:
            statuses, task_id, field, from_time, to_time, has_source_asset, offset, limit = group
            return await engine_service.task_pages(
                res, ctx.principal, engine_ids, statuses=list(statuses) if statuses is not None else None, task_id=task_id,
                date_field=field, from_time=from_time, to_time=to_time, has_source_asset=has_source_asset,
                offset=offset, limit=limit,
            )

        async def engine_task_metrics(group: tuple, engine_ids: list[str]) -> dict[str, dict[str, int]]:
            start, end = group
            return await engine_service.task_metrics(res, ctx.principal, engine_ids, start, end)

        async def organizations(_group: None, ids: list[UUID]) -> dict[UUID, Any]:
            return await caller_service.organizations(res, ctx.principal, ids)

        async def identifiers(_group: None, ids: list[UUID]) -> dict[UUID, Any]:
            async with res.pool.acquire() as conn:
                return {r.id: r for r in await identifier_q.by_ids(conn, ctx.principal.org_id, ids)}

        async def identifier_embeddings(_group: None, ids: list[UUID]) -> dict[UUID, Any]:
            return await embedding_service.of_identifiers(res, ctx.principal.org_id, ids)

        async def jobs(_group: None, ids: list[UUID]) -> dict[UUID, Any]:
            async with res.pool.acquire() as conn:
                return {r.id: r for r in await job_q.jobs_by_ids(conn, ctx.principal.org_id, ids)}

        async def job_summaries(_group: None, ids: list[UUID]) -> dict[UUID, Any]:
            async with res.pool.acquire() as conn:
                return await training_q.job_summaries(conn, ctx.principal.org_id, ids)

        async def job_output_models(_group: None, ids: list[UUID]) -> dict[UUID, Any]:
            async with res.pool.acquire() as conn:
                return await training_q.models_by_train_jobs(conn, ctx.principal.org_id, ids)

        async def library_insights(_group: None, ids: list[UUID]) -> dict[UUID, Any]:
            from gateway.services.training import views as library_insights

            return await library_insights.insights(res, ctx.principal, ids)

        async def library_issues(_group: None, ids: list[UUID]) -> dict[UUID, Any]:
            from gateway.services.training import views as library_insights

            # Apart from library_insight: only Library.issues pays for the near-duplicate scan, not counts.
            return await library_insights.insights(res, ctx.principal, ids, near_duplicates=True)

        async def library_previews(_group: None, ids: list[UUID]) -> dict[UUID, Any]:
            from gateway.services.training.views import PREVIEW_COUNT

            found: dict[UUID, list[Any]] = {i: [] for i in ids}
            async with res.pool.acquire() as conn:
                for record in await training_q.preview_identifiers(conn, ctx.principal.org_id, ids, PREVIEW_COUNT):
                    found[record["library_id"]].append(Identifier.of(record))
            return found
        async def identifier_suggestions(_group: None, ids: list[UUID]) -> dict[UUID, Any]:
            async with res.pool.acquire() as conn:
                return await suggestion_q.for_identifiers(conn, ctx.principal.org_id, ids)

        none = lambda _key: None  # noqa: E731 - single-group loaders
        same = lambda key: key  # noqa: E731
        self.identifier_page = DataLoader(_grouped(identifier_pages, lambda k: k[1:], lambda k: k[0]), cache_key_fn=same)
        self.entity_page = DataLoader(_grouped(entity_pages, lambda k: k[1:], lambda k: k[0]))
        self.model_page = DataLoader(_grouped(model_pages, lambda k: k[1:], lambda k: k[0]))
        self.identifier_counts = DataLoader(_grouped(identifier_counts, none, same))
        self.library_summary = DataLoader(_grouped(library_summaries, none, same))
        self.library = DataLoader(_grouped(libraries, none, same))
        self.entity = DataLoader(_grouped(entities, none, same))
        self.engine = DataLoader(_grouped(engines, none, same))
        self.task_page = DataLoader(_grouped(task_pages, lambda k: k[1:], lambda k: k[0]))
        self.model = DataLoader(_grouped(models, none, same))
        self.category_engine_page = DataLoader(_grouped(category_engine_pages, lambda k: k[1:], lambda k: k[0]))
        self.engine_task_page = DataLoader(_grouped(engine_task_pages, lambda k: k[1:], lambda k: k[0]))
        self.engine_task_metrics = DataLoader(_grouped(engine_task_metrics, lambda k: k[1:], lambda k: k[0]))
        self.organization = DataLoader(_grouped(organizations, none, same))
        self.job = DataLoader(_grouped(jobs, none, same))
        self.identifier = DataLoader(_grouped(identifiers, none, same))
        self.job_summary = DataLoader(_grouped(job_summaries, none, same))
        self.job_output_model = DataLoader(_grouped(job_output_models, none, same))
        self.library_insight = DataLoader(_grouped(library_insights, none, same))
        self.library_issues = DataLoader(_grouped(library_issues, none, same))
        self.library_preview = DataLoader(_grouped(library_previews, none, same))
        self.identifier_suggestions = DataLoader(_grouped(identifier_suggestions, none, same))
        self.identifier_embeddings = DataLoader(_grouped(identifier_embeddings, none, same))
        # The type catalogue a request sees (built-ins and the organization's own): one read per request.
        self.identifier_types = DataLoader(identifier_type_lists)
        self.library_types = DataLoader(library_type_lists)
