"""EntityType.schema: the JSON Schema that the jsondata of a library type's entities must satisfy."""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from gateway.errors import InvalidInput

MAX_SCHEMA_BYTES = 64 * 1024
# Regular expressions from clients could backtrack for minutes inside a request: not accepted.
_REFUSED_KEYWORDS = ("pattern", "patternProperties", "$dynamicRef", "$id", "$ref other than to this schema (#...)")


def _keywords(value: Any) -> set[str]:
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.update(item)
            ref = item.get("$ref")
            if ref is not None and not (isinstance(ref, str) and ref.startswith("#")):
                found.add("$ref other than to this schema (#...)")  # nothing is fetched from elsewhere
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def check_schema(schema: Any) -> dict[str, Any]:
    """A valid JSON Schema object (draft 2020-12), or invalid_input saying why."""
    if not isinstance(schema, dict):
        raise InvalidInput("entityType.schema must be a JSON object (a JSON Schema; {} accepts any jsondata)")
    if len(json.dumps(schema)) > MAX_SCHEMA_BYTES:
        raise InvalidInput(f"entityType.schema must be at most {MAX_SCHEMA_BYTES} bytes")
    refused = sorted(k for k in _keywords(schema) if k in _REFUSED_KEYWORDS)
    if refused:
        raise InvalidInput(f"entityType.schema may not use {', '.join(refused)}")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise InvalidInput(f"entityType.schema is not a valid JSON Schema: {exc.message}") from None
    return schema


def violation(schema: dict[str, Any], jsondata: Any) -> str | None:
    """Why jsondata does not satisfy the schema (the first error, with its path), or None."""
    if not schema:
        return None
    try:
        error = next(iter(Draft202012Validator(schema).iter_errors(jsondata)), None)
    except Exception as exc:  # an unresolvable local $ref: the schema, not the data, is at fault
        raise InvalidInput(f"the entity schema cannot be applied: {exc}") from None
    if error is None:
        return None
    where = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return f"jsondata{where}: {error.message}"


def check_jsondata(schema: dict[str, Any], jsondata: Any, library_type_id: str) -> None:
    problem = violation(schema, jsondata)
    if problem:
        raise InvalidInput(f"{problem} (the entity schema of library type {library_type_id!r})")
