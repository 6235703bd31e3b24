"""graphql-transport-ws on /v3/graphql through Strawberry's view, with our context and authentication.

The client authenticates in ``connection_init`` (``{"Authorization": "Bearer …"}``) or with the upgrade
request's Authorization header (``auth.py``). A connection whose token is missing or unknown is refused right
there, as the protocol expects: the socket closes with 4403 Forbidden instead of being acknowledged (graphql-ws,
the legacy protocol, answers ``connection_error`` and closes). The resolvers still check the token's scope and
tenancy.
"""

from __future__ import annotations

from typing import Any

from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.types.unset import UNSET, UnsetType

from gateway.errors import AuthenticationError
from gateway.schema.context import Context
from gateway.services.access.principal import Principal
from gateway.web import auth
from storage.db import CONNECTION_LOST


class ConnectionContext(Context):
    """One WebSocket connection's context: its caller comes from the connection_init payload."""

    async def authenticate_connection(self) -> Principal:
        self.principal_ = await auth.authenticate(self.request, self.connection_params)
        return self.principal_


class SubscriptionView(GraphQL):
    def __init__(self, schema: Any, allowed_origins: tuple[str, ...] = ()) -> None:
        super().__init__(
            schema,
            graphql_ide=None,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
            allowed_origins=allowed_origins,
        )

    async def get_context(self, request: Any, response: Any) -> ConnectionContext:
        return ConnectionContext(resources=request.app.state.resources, request=request, response=response)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        try:
            await context.authenticate_connection()
        except AuthenticationError as exc:
            raise ConnectionRejectionError({"message": exc.message, "code": exc.code}) from None
        except CONNECTION_LOST:
            # The token could not be checked (PostgreSQL away): not a refusal. The connection is acknowledged and
            # each subscription answers service_unavailable as it checks the token again.
            pass
        return UNSET
