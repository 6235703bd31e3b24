"""What every domain module of the schema shares: the paginated list, the delete answer, the fields a client
sent, and the construction of a type another domain owns."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ForwardRef, Generic, Optional, Self, TypeVar, get_args
from uuid import UUID

import strawberry
from strawberry import UNSET

from gateway.services.access.paging import Page, check_page

T = TypeVar("T")
C = TypeVar("C")

# An ID filter that parses as no UUID matches nothing: this ID never exists.
NO_SUCH_ID = UUID(int=0)


@strawberry.type
class Paginated(Generic[T]):
    """A page of records: `count` is the records in this page, `totalCount` those of every page. Each list is a
    subclass named as the wire has it (LibraryList, JobList ...)."""

    offset: int
    limit: int
    count: int
    total_count: int
    records: list[T]

    @classmethod
    def of(cls, page: Page[Any], records: list[T]) -> Self:
        """The page's records, already turned into their GraphQL type."""
        return cls(offset=page.offset, limit=page.limit, count=len(records), total_count=page.total, records=records)

    @classmethod
    def sliced(cls, records: Sequence[T], offset: Optional[int], limit: Optional[int], maximum: int) -> Self:
        """One page of records all read at once (the type catalogue, engine categories, a job's results)."""
        offset, limit = check_page(offset, limit, maximum)
        chosen = list(records[offset : offset + limit])
        return cls(offset=offset, limit=limit, count=len(chosen), total_count=len(records), records=chosen)


@strawberry.type
class DeletePayload:
    id: Optional[strawberry.ID]
    message: Optional[str]


def sent(input_obj: object, *names: str) -> dict[str, object]:
    """The fields a client actually sent (UNSET ones are left out, null ones kept)."""
    out: dict[str, object] = {}
    for name in names:
        value = getattr(input_obj, name)
        if value is not UNSET:
            out[name] = value
    return out


def json_text(value: object) -> Optional[str]:
    return None if value is None else json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def lazy_class(ref: type[C]) -> type[C]:
    """The class an ``Annotated["X", strawberry.lazy("gateway.schema.x")]`` reference names.

    Domains link to each other only through such references (the GraphQL graph is cyclic: a library lists its
    entities, an entity names its library), so a resolver builds another domain's type from the same reference
    its return annotation uses, imported when first resolved as Strawberry itself resolves it."""
    forward, reference = get_args(ref)[:2]
    if isinstance(forward, str):
        forward = ForwardRef(forward)
    return reference.resolve_forward_ref(forward).resolve_type()
