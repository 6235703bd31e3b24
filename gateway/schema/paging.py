"""Page wrappers: { offset limit count records } with count = records in THIS page, plus totalCount."""

from __future__ import annotations

from typing import Any

from gateway.services.paging import Page


def page_fields(page: Page[Any], records: list[Any]) -> dict[str, Any]:
    return {
        "offset": page.offset,
        "limit": page.limit,
        "count": len(records),
        "total_count": page.total,
        "records": records,
    }
