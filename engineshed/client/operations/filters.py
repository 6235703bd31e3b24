"""Filters in the forms the LayerNext client takes (``{"annotation_types", "from_date", "to_date"}`` with dates
as text, date-times or epoch seconds) translated to the API's ``IdentifierFilter``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from datetime import time as dtime
from typing import Any

from engineshed.client.errors import InvalidInputError


def _epoch(value: Any, *, end_of_day: bool = False) -> int | None:
    """A filter date ("2022-08-02", an ISO date-time, a datetime/date or epoch seconds) as epoch seconds.

    A bare date as ``to_date`` means the whole of that day (UTC), as a person writing it means it.
    """
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return int(moment.timestamp())
    if isinstance(value, date):
        day = value
    else:
        text = str(value).strip()
        try:
            day = date.fromisoformat(text)
        except ValueError:
            try:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise InvalidInputError(f"filter date {value!r} is not a date (YYYY-MM-DD) or an ISO date-time") from None
            return _epoch(moment)
    start = datetime.combine(day, dtime.min, tzinfo=timezone.utc)
    if end_of_day:
        start += timedelta(days=1, seconds=-1)
    return int(start.timestamp())


def identifier_filter(filter: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """LayerNext's filter ``{"annotation_types": [...], "from_date": ..., "to_date": ...}`` as ``IdentifierFilter``.

    camelCase keys (``annotationTypes``, ``fromDateTime``, ``toDateTime``) pass through; unknown keys are refused
    rather than silently ignored.
    """
    if not filter:
        return None
    known = {"annotation_types", "annotationTypes", "from_date", "fromDateTime", "to_date", "toDateTime"}
    unknown = set(filter) - known
    if unknown:
        raise InvalidInputError(f"unknown filter keys: {', '.join(sorted(unknown))} (known: annotation_types, from_date, to_date)")
    out: dict[str, Any] = {}
    types = filter.get("annotation_types", filter.get("annotationTypes"))
    if types is not None:
        out["annotationTypes"] = [str(t) for t in types]
    start = filter.get("from_date", filter.get("fromDateTime"))
    end = filter.get("to_date", filter.get("toDateTime"))
    for key, value, end_of_day in (("fromDateTime", start, False), ("toDateTime", end, True)):
        if value is None:
            continue
        try:
            out[key] = _epoch(value, end_of_day=end_of_day)
        except InvalidInputError as exc:
            name = "from_date" if key == "fromDateTime" else "to_date"
            raise InvalidInputError(f"filter {name}: {exc.message}") from None
    return out or None
