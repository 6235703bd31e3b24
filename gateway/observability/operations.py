"""What a GraphQL request is called in metrics and traces: its operation type and first root field.

Client-chosen operation names would let any client add label values without bound, so a request is named by
the schema's own root fields; a field the schema does not have reads "unknown", a document that does not parse
"invalid". Names are cached by query text (clients send the same few documents over and over).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache
from graphql import GraphQLError, parse
from graphql.language import FieldNode, OperationDefinitionNode

CACHED_QUERIES = 1024
CACHED_QUERY_CHARS = 16_384  # longer documents are named again each time rather than kept
INTROSPECTION = frozenset({"__schema", "__type", "__typename"})


@dataclass(frozen=True, slots=True)
class Operation:
    kind: str  # query | mutation | subscription | unknown
    field: str  # the first root field, "unknown" or "invalid"


UNKNOWN = Operation("unknown", "unknown")
INVALID = Operation("unknown", "invalid")


class OperationNames:
    def __init__(self, schema: Any, max_tokens: int) -> None:
        graphql_schema = getattr(schema, "_schema", None)  # Strawberry's graphql-core schema
        roots = (("query", "query_type"), ("mutation", "mutation_type"), ("subscription", "subscription_type"))
        self._fields = {
            kind: frozenset(root.fields) | INTROSPECTION
            for kind, attribute in roots
            if (root := getattr(graphql_schema, attribute, None)) is not None
        }
        self._max_tokens = max_tokens
        self._cache: LRUCache[tuple[str, str | None], Operation] = LRUCache(CACHED_QUERIES)

    def of(self, query: str, operation_name: str | None) -> Operation:
        key = (query, operation_name)
        found = self._cache.get(key)
        if found is None:
            found = self._name(query, operation_name)
            if len(query) <= CACHED_QUERY_CHARS:
                self._cache[key] = found
        return found

    def _name(self, query: str, operation_name: str | None) -> Operation:
        try:
            document = parse(query, no_location=True, max_tokens=self._max_tokens)
        except (GraphQLError, RecursionError):
            return INVALID
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if operation_name is not None:
            operations = [d for d in operations if d.name is not None and d.name.value == operation_name]
        if len(operations) != 1:
            return INVALID
        operation = operations[0]
        kind = operation.operation.value
        field = next((s.name.value for s in operation.selection_set.selections if isinstance(s, FieldNode)), None)
        if field is None or field not in self._fields.get(kind, ()):
            return Operation(kind, "unknown")
        return Operation(kind, field)


def refusal_code(body: bytes) -> str:
    """The code of a refusal made before the operation ran (its JSON body is small)."""
    try:
        return str(json.loads(body)["errors"][0]["extensions"]["code"])
    except (ValueError, LookupError, TypeError):
        return "internal_error"
