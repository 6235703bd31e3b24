"""`IdentifierFilter`: the analysis filter (annotation types, from/to dates) on the wire."""

from __future__ import annotations

from enum import Enum
from typing import Optional

import strawberry

from gateway.schema.scalars import DateTime
from gateway.services.selection import IdentifierSelection


@strawberry.enum(description="How an identifier came by its entity: none yet, a model's suggestion, or a person.")
class AnnotationType(Enum):
    raw = "raw"
    machine = "machine"
    human = "human"


@strawberry.input(description="Narrows an analysis to identifiers of these annotation types, uploaded in this range (inclusive).")
class IdentifierFilter:
    annotation_types: Optional[list[AnnotationType]] = None
    from_date_time: Optional[DateTime] = None
    to_date_time: Optional[DateTime] = None


def to_selection(value: Optional[IdentifierFilter]) -> IdentifierSelection:
    """The validated selection (an empty one when no filter was given)."""
    if value is None:
        return IdentifierSelection()
    types = [t.value for t in value.annotation_types] if value.annotation_types is not None else None
    return IdentifierSelection.build(types, value.from_date_time, value.to_date_time)
