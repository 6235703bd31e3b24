"""A cost limit on how much a query can fan out.

Depth, token and alias limits do not stop multiplication: ``libraries(limit: 1000) { records {
entities(limit: 1000) { records { identifiers(limit: 1000) ... }}}}`` stays shallow and short yet asks for
10^9 objects. Before execution, each field costs the product of the page sizes above it (a paged field
without ``limit`` counts its default, 30); over the budget the operation is refused as
``capacity_exceeded`` without running.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import FieldNode, FragmentDefinitionNode, FragmentSpreadNode, InlineFragmentNode, OperationDefinitionNode
from graphql.language import SelectionSetNode, VariableNode
from strawberry.extensions import SchemaExtension

from gateway.errors import CapacityExceeded

DEFAULT_PAGE = 30
# Fields that return a page wrapper: their `limit` multiplies everything selected inside them.
PAGED_FIELDS = frozenset(
    {
        "libraries", "entities", "identifiers", "engineModels", "jobs", "tasks", "engines", "libraryTypes",
        "entityIdentifierTypes", "engineCategories", "engineResults", "libraryEntityIdentifierTypes",
    }
)


def _limit(field: FieldNode, variables: dict[str, Any]) -> int:
    for argument in field.arguments or ():
        if argument.name.value == "limit":
            node = argument.value
            value: Any = variables.get(node.name.value) if isinstance(node, VariableNode) else getattr(node, "value", None)
            try:
                return max(1, int(value))
            except (TypeError, ValueError):
                return DEFAULT_PAGE
    return DEFAULT_PAGE


def _fields(
    selection_set: SelectionSetNode | None, fragments: dict[str, FragmentDefinitionNode], seen: frozenset[str]
) -> Iterator[FieldNode]:
    for selection in selection_set.selections if selection_set else ():
        if isinstance(selection, FieldNode):
            yield selection
        elif isinstance(selection, InlineFragmentNode):
            yield from _fields(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in fragments and name not in seen:  # cycles are a validation error; never loop here
                yield from _fields(fragments[name].selection_set, fragments, seen | {name})


def query_cost(
    selection_set: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    variables: dict[str, Any],
    multiplier: int = 1,
    budget: int | None = None,
) -> int:
    total = 0
    for field in _fields(selection_set, fragments, frozenset()):
        total += multiplier
        inner = multiplier * _limit(field, variables) if field.name.value in PAGED_FIELDS else multiplier
        total += query_cost(field.selection_set, fragments, variables, inner, budget)
        if budget is not None and total > budget:
            return total  # already over: stop walking
    return total


class QueryCostLimiter(SchemaExtension):
    def __init__(self, *, max_cost: int) -> None:
        self.max_cost = max_cost

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None:
            fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
            operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
            name = context.operation_name
            chosen = [o for o in operations if name is None or (o.name and o.name.value == name)]
            for operation in chosen[:1]:
                cost = query_cost(operation.selection_set, fragments, context.variables or {}, budget=self.max_cost)
                if cost > self.max_cost:
                    raise CapacityExceeded(
                        f"the query would return too many objects (estimated cost over {self.max_cost}); "
                        "ask for smaller pages or fewer nested lists"
                    )
        yield
