"""Offset/limit checks shared by every list."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from gateway.errors import InvalidInput

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    records: list[T]
    offset: int
    limit: int
    total: int


def check_page(offset: int | None, limit: int | None, maximum: int) -> tuple[int, int]:
    offset = 0 if offset is None else offset
    limit = 30 if limit is None else limit
    if offset < 0:
        raise InvalidInput("offset must not be negative")
    if limit < 0:
        raise InvalidInput("limit must not be negative")
    if limit > maximum:
        raise InvalidInput(f"limit must be at most {maximum}")
    return offset, limit
