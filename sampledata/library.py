"""One identifier of a sample library, as a training context sees it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Entry:
    """One identifier of the library: its entity and its bytes."""

    identifier_id: str
    entity_id: str
    entity_name: str
    data: bytes
    by_reference: bool = False  # stored by URL: no sha256 before fetch
    identifier_type_id: str = "image"
