"""Which identifiers an analysis takes: the seeds' `filter` (annotation types, from/to dates), validated once
here so that embedding, auto-tagging and every other selection read it the same way."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.errors import InvalidInput
from storage.queries import identifier_filter as q

ANNOTATION_TYPES = ("raw", "machine", "human")


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
