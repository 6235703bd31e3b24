"""A document with several operations must say which one to run.

Strawberry runs the first operation when a request names none; the GraphQL spec ("GetOperation") makes
that a request error, and a client that forgot ``operationName`` should hear so rather than have the wrong
operation run. The HTTP view records whether the request named one (``Context.operation_name_sent``).
"""

from __future__ import annotations

from collections.abc import Iterator

from graphql import OperationDefinitionNode
from strawberry.extensions import SchemaExtension

from gateway.errors import InvalidInput


class OperationChoice(SchemaExtension):
    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        # WebSocket contexts do not record it; graphql-transport-ws subscribe messages carry their own name.
        if document is not None and not getattr(context.context, "operation_name_sent", True):
            operations = sum(isinstance(d, OperationDefinitionNode) for d in document.definitions)
            if operations > 1:
                raise InvalidInput(f"the document holds {operations} operations; name the one to run in operationName")
        yield
