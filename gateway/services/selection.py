"""Which identifiers an analysis takes: the `filter` (annotation types, from/to dates), validated once
here so that embedding, auto-tagging and every other selection read it the same way, and the ``query`` language.

A selection's ``query`` is a small, closed form: one or more ``field=value``
clauses joined by `` AND ``, where field is one of

* ``entity.name`` (alias ``annotation.label``): the identifier's entity is named exactly value;
* ``identifier.title``: the identifier's title is exactly value;
* ``identifier.contentType``: its content type is exactly value.

A value may be wrapped in double quotes (to hold `` AND `` itself). Anything else is invalid_input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.errors import InvalidInput
from storage.queries import identifier_filter as q

ANNOTATION_TYPES = ("raw", "machine", "human")
MAX_QUERY_LENGTH = 1000
_QUERY_FIELDS = {
    "entity.name": "entity_name",
    "annotation.label": "entity_name",
    "identifier.title": "title",
    "identifier.contentType": "content_type",
}
_CLAUSE = re.compile(r'^\s*([A-Za-z.]+)\s*=\s*(?:"([^"]*)"|([^"]*?))\s*$')
_OR = re.compile(r"\s(?:or|\|\|)\s", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class IdentifierSelection:
    """None in a field: no condition on it."""

    annotation_types: tuple[str, ...] | None = None
    from_time: datetime | None = None
    to_time: datetime | None = None

    @classmethod
    def build(
        cls,
        annotation_types: Iterable[str] | None = None,
        from_time: datetime | None = None,
        to_time: datetime | None = None,
    ) -> IdentifierSelection:
        types: tuple[str, ...] | None = None
        if annotation_types is not None:
            types = tuple(dict.fromkeys(annotation_types))
            if not types:
                # An empty list would select nothing at all, which is never what a caller means.
                raise InvalidInput("filter.annotationTypes must name at least one of raw, machine, human (or be omitted)")
            unknown = [t for t in types if t not in ANNOTATION_TYPES]
            if unknown:
                raise InvalidInput(f"filter.annotationTypes: unknown {', '.join(map(repr, unknown))}; use raw, machine or human")
        if from_time is not None and to_time is not None and from_time > to_time:
            raise InvalidInput(
                f"filter: fromDateTime ({from_time.isoformat()}) is after toDateTime ({to_time.isoformat()})"
            )
        return cls(types, from_time, to_time)

    @property
    def is_empty(self) -> bool:
        return self.annotation_types is None and self.from_time is None and self.to_time is None

    def conditions(self, alias: str, first_param: int) -> tuple[str, list[Any]]:
        """`AND …` SQL on the entity_identifiers row ``alias`` with parameters from ``$first_param``."""
        return q.conditions(
            alias, first_param, annotation_types=self.annotation_types, from_time=self.from_time, to_time=self.to_time
        )

    def as_json(self) -> dict[str, Any]:
        """The form a job's payload keeps, so that a worker applies exactly what the caller asked."""
        return {
            "annotationTypes": list(self.annotation_types) if self.annotation_types is not None else None,
            "fromDateTime": self.from_time.isoformat() if self.from_time else None,
            "toDateTime": self.to_time.isoformat() if self.to_time else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> IdentifierSelection:
        data = data or {}
        parse = lambda v: datetime.fromisoformat(v) if v else None  # noqa: E731 - two uses, one line
        return cls.build(data.get("annotationTypes"), parse(data.get("fromDateTime")), parse(data.get("toDateTime")))


def parse_query(text: str | None) -> dict[str, str]:
    """The query's conditions by column (see the module docstring); {} for none."""
    if text is None or not text.strip():
        return {}
    if len(text) > MAX_QUERY_LENGTH:
        raise InvalidInput(f"query is longer than {MAX_QUERY_LENGTH} characters")
    if any(ord(ch) < 32 for ch in text):
        raise InvalidInput("query may not hold control characters")
    conditions: dict[str, str] = {}
    for clause in _split_clauses(text):
        match = _CLAUSE.match(clause)
        if match is None:
            raise InvalidInput(f"query: {clause.strip()!r} is not field=value (fields: {', '.join(_QUERY_FIELDS)})")
        field, quoted, bare = match.groups()
        if bare is not None and ("=" in bare or _OR.search(bare)):
            # "a=x OR b=y" would otherwise read as one value "x OR b=y" and quietly match nothing.
            raise InvalidInput(f"query: {clause.strip()!r}: only AND joins clauses; put a value that holds '=' or ' OR ' in double quotes")
        column = _QUERY_FIELDS.get(field)
        if column is None:
            raise InvalidInput(f"query: unknown field {field!r}; use one of {', '.join(_QUERY_FIELDS)}")
        value = quoted if quoted is not None else bare
        if not value:
            raise InvalidInput(f"query: {field} needs a value")
        if column in conditions and conditions[column] != value:
            raise InvalidInput(f"query: {field} is given twice with different values; nothing could match")
        conditions[column] = value
    return conditions


def _split_clauses(text: str) -> list[str]:
    """Split on `` AND `` (any case) outside double quotes."""
    parts, current, quoted, i = [], [], False, 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            quoted = not quoted
        if not quoted and text[i : i + 5].upper() == " AND ":
            parts.append("".join(current))
            current, i = [], i + 5
            continue
        current.append(ch)
        i += 1
    if quoted:
        raise InvalidInput("query: a double quote is not closed")
    parts.append("".join(current))
    return parts
