"""graphql-transport-ws on /v3/graphql through Strawberry's view, with our context and authentication.

The client authenticates in ``connection_init`` (``{"Authorization": "Bearer …"}``) or with the upgrade
request's Authorization header; the subscription resolvers check it before sending anything.
"""

from __future__ import annotations

from typing import Any

from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL

from gateway.schema.context import Context


class SubscriptionView(GraphQL):
    def __init__(self, schema: Any, allowed_origins: tuple[str, ...] = ()) -> None:
        super().__init__(
            schema,
            graphql_ide=None,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
            allowed_origins=allowed_origins,
        )

    async def get_context(self, request: Any, response: Any) -> Context:
        return Context(resources=request.app.state.resources, request=request, response=response)
