"""The schema: Query, Mutation and Subscription composed of each domain's fields, and its extensions.

Strawberry lists a composed type's fields base by base, in the order the bases are named: they are named in the
order the published schema lists the fields."""

from __future__ import annotations

import logging

import strawberry
from strawberry.extensions import MaxTokensLimiter, ParserCache
from strawberry.file_uploads import Upload

from gateway.errors import ApiError, unstorable
from gateway.schema.caller import CallerQuery
from gateway.schema.catalogue import PROPERTY_TYPES, CatalogueMutation, CatalogueQuery
from gateway.schema.embeddings import EmbeddingMutation, EmbeddingQuery
from gateway.schema.engine_models import (
    DefaultModelMutation,
    EngineModelMutation,
    EngineModelQuery,
)
from gateway.schema.engines import EngineMutation, EngineQuery
from gateway.schema.entities import EntityMutation, EntityQuery
from gateway.schema.enums import JobStatus
from gateway.schema.extensions.limits import QueryLimits
from gateway.schema.extensions.operation_choice import OperationChoice
from gateway.schema.extensions.validation_cache import ShapeValidationCache
from gateway.schema.identifiers import IdentifierMutation, IdentifierQuery
from gateway.schema.jobs import JobMutation, JobQuery, JobSubscription
from gateway.schema.labeling import LabelingMutation, LabelingQuery
from gateway.schema.libraries import LibraryMutation, LibraryQuery
from gateway.schema.media import MediaMutation, MediaQuery
from gateway.schema.models import ModelMutation, ModelQuery
from gateway.schema.recognition import RecognitionQuery
from gateway.schema.scalars import UploadScalar
from gateway.schema.tasks import TaskMutation, TaskQuery
from gateway.schema.tokens import TokenMutation, TokenQuery
from gateway.schema.webhooks import WebhookMutation, WebhookQuery
from gateway.schema.uploads import UploadQuery
from gateway.settings import Settings

_log = logging.getLogger("engineshed.graphql")


@strawberry.type
class Query(
    CallerQuery, ModelQuery, TokenQuery, LabelingQuery, EmbeddingQuery, LibraryQuery, EntityQuery, IdentifierQuery,
    CatalogueQuery, EngineModelQuery, EngineQuery, JobQuery, TaskQuery, RecognitionQuery, UploadQuery,
    WebhookQuery, MediaQuery,
):
    pass


@strawberry.type
class Mutation(
    CatalogueMutation, ModelMutation, TokenMutation, DefaultModelMutation, LabelingMutation, EmbeddingMutation,
    LibraryMutation, EntityMutation, IdentifierMutation, EngineModelMutation, JobMutation, EngineMutation, TaskMutation,
    WebhookMutation, MediaMutation,
):
    pass


@strawberry.type
class Subscription(JobSubscription):
    pass


class _Schema(strawberry.Schema):
    def process_errors(self, errors: list, execution_context: object = None) -> None:
        """Log unexpected errors (the HTTP view masks them for clients); client errors are not logged."""
        for error in errors:
            original = getattr(error, "original_error", None)
            if original is not None and error.path is not None and not isinstance(original, ApiError):
                if unstorable(original) is not None:  # answered invalid_input: the client's value, not our fault
                    _log.info("refused a value PostgreSQL cannot store in %s (%s)", error.path, type(original).__name__)
                    continue
                _log.error("unexpected error in %s", error.path, exc_info=original)


QUERY_CACHE_SIZE = 256


def build_schema(settings: Settings) -> strawberry.Schema:
    validation_caches = ShapeValidationCache.caches(QUERY_CACHE_SIZE)
    return _Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        # JobStatus is published beside TaskStatus (Job.status is a TaskStatus) for clients whose generated
        # code names it, though no field takes or returns it; the Property types beside their interface.
        types=[JobStatus, *PROPERTY_TYPES],
        scalar_overrides={Upload: UploadScalar},
        extensions=[
            lambda: MaxTokensLimiter(max_token_count=settings.max_query_tokens),
            # Engines and dashboards send the same few query texts again and again: parse and validate
            # each once (bounded LRUs keyed by the text, then by the parsed document; a text that does not
            # parse is not cached, and validation errors depend on nothing but the document).
            lambda: ParserCache(maxsize=QUERY_CACHE_SIZE),
            lambda: ShapeValidationCache(validation_caches),  # also when only the inline IDs differ
            OperationChoice,
            lambda: QueryLimits(
                max_depth=settings.max_query_depth,
                max_aliases=settings.max_query_aliases,
                max_cost=settings.max_query_cost,
            ),
        ],
    )
