"""Query limits checked before validation: depth, aliases and fan-out cost, in one pass per fragment.

Strawberry's depth and alias limiters walk a fragment again at every spread, so 31 fragments that each
spread the next one twice cost 2^30 steps in under 1,000 tokens and freeze the process. Here each
fragment is measured once and its result reused, so any document costs time linear in its size.

Cost: each field costs the product of the page sizes above it (a paged field without ``limit`` counts
its default, 30). Depth, token and alias limits do not stop multiplication (``libraries(limit: 1000) {
records { entities(limit: 1000) { records { identifiers(limit: 1000) ... }}}}`` is shallow and short
yet asks for 10^9 objects); over the budget the operation is refused as ``capacity_exceeded``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
)
from strawberry.extensions import SchemaExtension

from gateway.errors import CapacityExceeded, InvalidInput

DEFAULT_PAGE = 30
# Fields that return a page wrapper: their `limit` multiplies everything selected inside them.
PAGED_FIELDS = frozenset(
    {
        "libraries", "entities", "identifiers", "engineModels", "jobs", "tasks", "engines", "libraryTypes",
        "entityIdentifierTypes", "engineCategories", "engineResults", "libraryEntityIdentifierTypes",
    }
)
_CAP = 10**18  # expanded counts can be astronomically large; keep the arithmetic bounded


@dataclass(frozen=True, slots=True)
class Measure:
    depth: int  # deepest field nesting, introspection fields not counted
    aliases: int  # aliased fields once every fragment is expanded
    cost: int  # objects asked for once every fragment is expanded, with page sizes multiplied


def _limit(field: FieldNode, variables: dict[str, Any]) -> int:
    for argument in field.arguments or ():
        if argument.name.value == "limit":
            node = argument.value
            value: Any = variables.get(node.name.value) if isinstance(node, VariableNode) else getattr(node, "value", None)
            try:
                return min(max(1, int(value)), _CAP)
            except (TypeError, ValueError):
                return DEFAULT_PAGE
    return DEFAULT_PAGE


class _Measurer:
    def __init__(self, fragments: dict[str, FragmentDefinitionNode], variables: dict[str, Any]) -> None:
        self._fragments = fragments
        self._variables = variables
        self._memo: dict[str, Measure] = {}
        self._visiting: set[str] = set()

    def selection_set(self, node: SelectionSetNode | None) -> Measure:
        depth = aliases = cost = 0
        for selection in node.selections if node else ():
            if isinstance(selection, FieldNode):
                inner = self.selection_set(selection.selection_set)
                paged = selection.name.value in PAGED_FIELDS
                factor = _limit(selection, self._variables) if paged else 1
                if not selection.name.value.startswith("__"):
                    depth = max(depth, 1 + inner.depth)
                aliases += (1 if selection.alias else 0) + inner.aliases
                cost += 1 + factor * inner.cost
            elif isinstance(selection, InlineFragmentNode):
                inner = self.selection_set(selection.selection_set)
                depth, aliases, cost = max(depth, inner.depth), aliases + inner.aliases, cost + inner.cost
            elif isinstance(selection, FragmentSpreadNode):
                inner = self.fragment(selection.name.value)
                depth, aliases, cost = max(depth, inner.depth), aliases + inner.aliases, cost + inner.cost
            aliases, cost = min(aliases, _CAP), min(cost, _CAP)
        return Measure(depth, aliases, cost)

    def fragment(self, name: str) -> Measure:
        known = self._memo.get(name)
        if known is not None:
            return known
        definition = self._fragments.get(name)
        if definition is None or name in self._visiting:  # unknown or cyclic: validation reports it
            return Measure(0, 0, 0)
        self._visiting.add(name)
        try:
            measured = self.selection_set(definition.selection_set)
        finally:
            self._visiting.discard(name)
        self._memo[name] = measured
        return measured


def measure(document: DocumentNode, operation_name: str | None, variables: dict[str, Any] | None) -> Measure:
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    chosen = [o for o in operations if operation_name is None or (o.name is not None and o.name.value == operation_name)]
    measurer = _Measurer(fragments, variables or {})
    worst = Measure(0, 0, 0)
    for operation in chosen or operations:
        m = measurer.selection_set(operation.selection_set)
        worst = Measure(max(worst.depth, m.depth), max(worst.aliases, m.aliases), max(worst.cost, m.cost))
    return worst


class QueryLimits(SchemaExtension):
    def __init__(self, *, max_depth: int, max_aliases: int, max_cost: int) -> None:
        self.max_depth = max_depth
        self.max_aliases = max_aliases
        self.max_cost = max_cost

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if context.graphql_document is not None:
            m = measure(context.graphql_document, context.operation_name, context.variables)
            if m.depth > self.max_depth:
                raise InvalidInput(f"the query depth is {m.depth} levels; at most {self.max_depth} are allowed")
            if m.aliases > self.max_aliases:
                raise InvalidInput(f"the query uses {m.aliases} aliases; at most {self.max_aliases} are allowed")
            if m.cost > self.max_cost:
                raise CapacityExceeded(
                    f"the query would return too many objects (estimated cost over {self.max_cost}); "
                    "ask for smaller pages or fewer nested lists"
                )
        yield
