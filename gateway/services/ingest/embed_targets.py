"""Which model versions embed a new identifier as it is ingested."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from gateway.resources import Resources
from gateway.services.models import registry as models

EMBEDDING = "embedding"


def ingest_default_name(type_id: str) -> str | None:
    """The system embedding model that embeds new identifiers of a type by default (see ingest_versions)."""
    return models.default_model_name(EMBEDDING, type_id)


def ingest_versions(res: Resources, data_type: str | None, candidates: Sequence[UUID]) -> list[UUID]:
    """The model versions a new identifier is embedded by: the type's default and the library's models' own.

    ``candidates`` come with the upload's checks, in one query (storage/queries/identifiers.py TARGET):
    the default named by :func:`ingest_default_name` when it is ready, then the library's models' versions.
    Only image identifiers are embedded on ingest, and only while ENGINESHED_EMBED_ON_INGEST is on.
    """
    if data_type != "image" or not res.settings.embed_on_ingest:
        return []
    return list(dict.fromkeys(candidates))
