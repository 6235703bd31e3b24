"""The per-request context: resources, the caller, fresh DataLoaders, and a plain-form file part."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from strawberry.types import Info as StrawberryInfo

from gateway.errors import AuthenticationError
from gateway.resources import Resources
from gateway.schema.loaders import Loaders
from gateway.services.access.principal import Principal


@dataclass
class Context:
    resources: Resources
    request: Any = None
    response: Any = None
    principal_: Principal | None = None
    form_file: Any = None  # the `file` part of a plain multipart form (curl -F file=@x)
    connection_params: dict[str, Any] | None = None  # graphql-transport-ws connection_init payload
    # Whether the request named its operation. Strawberry runs the first operation of a document when
    # none is named; the GraphQL spec makes that an error once there are several (see OperationChoice).
    operation_name_sent: bool = True
    # Made on first use: most requests (an upload, a mutation) touch no loader, and building the
    # thirty-odd DataLoaders was a twentieth of an upload's gateway CPU (py-spy, bench scenario 0).
    _loaders: Loaders | None = field(default=None, init=False, repr=False)

    @property
    def loaders(self) -> Loaders:
        if self._loaders is None:
            self._loaders = Loaders(self)
        return self._loaders

    @loaders.setter
    def loaders(self, value: Loaders) -> None:
        self._loaders = value

    @property
    def principal(self) -> Principal:
        if self.principal_ is None:
            raise AuthenticationError()
        return self.principal_

    async def authenticate_connection(self) -> Principal:
        """The caller of a subscription. An HTTP request was authenticated before its operation ran; a WebSocket
        connection's context (the web layer's) resolves its token from the connection_init payload here."""
        return self.principal


Info = StrawberryInfo[Context, None]
