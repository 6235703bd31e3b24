"""The wire's scalars: JSONData (any JSON, object literals too) and DateTime (ISO out; ISO or epoch in)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, NewType

import strawberry
from graphql import ValueNode, value_from_ast_untyped

from gateway.errors import InvalidInput


def _parse_json_literal(node: ValueNode, variables: dict[str, Any] | None = None) -> Any:
    return value_from_ast_untyped(node, variables)


JSONData = strawberry.scalar(
    NewType("JSONData", object),
    name="JSONData",
    description="Any JSON value; in a query it may be written as a GraphQL object literal.",
    serialize=lambda value: value,
    parse_value=lambda value: value,
    parse_literal=_parse_json_literal,
)


def format_datetime(value: datetime) -> str:
    """ISO-8601 UTC with milliseconds: 2019-02-26T21:15:59.000Z."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_datetime(value: Any) -> datetime:
    """ISO-8601 text, or epoch seconds / milliseconds (numbers or digit strings)."""
    if isinstance(value, bool):
        raise InvalidInput("a DateTime must be ISO-8601 text or epoch seconds")
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, (int, float)):
        seconds = value / 1000 if abs(value) >= 100_000_000_000 else value  # past year 5138 in s: it is ms
        try:
            return datetime.fromtimestamp(seconds, tz=timezone.utc)
        except (OverflowError, OSError, ValueError) as exc:
            raise InvalidInput(f"DateTime {value!r} is out of range") from exc
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("Z") or text.endswith("z"):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError as exc:
            raise InvalidInput(f"{value!r} is not an ISO-8601 date and time") from exc
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    raise InvalidInput("a DateTime must be ISO-8601 text or epoch seconds")


def _parse_datetime_literal(node: ValueNode, variables: dict[str, Any] | None = None) -> datetime:
    return parse_datetime(value_from_ast_untyped(node, variables))


DateTime = strawberry.scalar(
    NewType("DateTime", datetime),
    name="DateTime",
    description="ISO-8601 UTC with milliseconds on output; ISO-8601 or epoch seconds/milliseconds on input.",
    serialize=format_datetime,
    parse_value=parse_datetime,
    parse_literal=_parse_datetime_literal,
)


_NOT_A_FILE = ("an Upload is a file part of a multipart request (the GraphQL multipart request spec's map, or the "
               "plain form's `file` part), not {what}")


def parse_upload(value: Any) -> Any:
    """Only what the HTTP layer put there for a file part: a string, number or object in JSON variables would
    otherwise reach the services as if it were a file."""
    if callable(getattr(value, "read", None)) and hasattr(value, "filename"):
        return value
    raise InvalidInput(_NOT_A_FILE.format(what=f"a JSON {_json_kind(value)}"))


def _parse_upload_literal(node: ValueNode, variables: dict[str, Any] | None = None) -> Any:
    raise InvalidInput(_NOT_A_FILE.format(what="a value written in the query"))


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object" if isinstance(value, dict) else type(value).__name__


# Strawberry's own Upload takes any value; this one is installed in its place (scalar_overrides).
UploadScalar = strawberry.scalar(
    name="Upload",
    description="Represents a file upload.",
    serialize=lambda value: value,
    parse_value=parse_upload,
    parse_literal=_parse_upload_literal,
)
