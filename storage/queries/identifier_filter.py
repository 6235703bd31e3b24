"""The SQL of an identifier selection's filter: annotation types and an upload-time range."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any


def conditions(
    alias: str,
    first_param: int,
    *,
    annotation_types: Sequence[str] | None,
    from_time: datetime | None,
    to_time: datetime | None,
) -> tuple[str, list[Any]]:
    """`AND …` conditions on the entity_identifiers row called ``alias``, numbered from ``$first_param``,
    and their arguments. The range is inclusive at both ends, as from/to dates read in a filter."""
    sql: list[str] = []
    args: list[Any] = []

    def param(value: Any) -> str:
        args.append(value)
        return f"${first_param + len(args) - 1}"

    if annotation_types is not None:
        sql.append(f"{alias}.annotation_type = ANY({param(list(annotation_types))}::text[])")
    if from_time is not None:
        sql.append(f"{alias}.created_at >= {param(from_time)}")
    if to_time is not None:
        sql.append(f"{alias}.created_at <= {param(to_time)}")
    return "".join(f" AND {c}" for c in sql), args


# The query language's columns (gateway/services/labeling_jobs.parse_query) as conditions on an identifier.
_QUERY_COLUMNS = {
    "entity_name": "EXISTS (SELECT 1 FROM entities qe WHERE qe.id = {alias}.entity_id AND qe.name = {param})",
    "title": "{alias}.title = {param}",
    "content_type": "{alias}.content_type = {param}",
}


def query_conditions(alias: str, first_param: int, query: Mapping[str, str] | None) -> tuple[str, list[Any]]:
    """`AND …` conditions for a parsed query ({column: value}), numbered from ``$first_param``."""
    sql: list[str] = []
    args: list[Any] = []
    for column, value in sorted((query or {}).items()):
        template = _QUERY_COLUMNS.get(column)
        if template is None:
            raise ValueError(f"unknown query column {column!r}")
        args.append(value)
        sql.append(template.format(alias=alias, param=f"${first_param + len(args) - 1}"))
    return "".join(f" AND {c}" for c in sql), args
