"""A request ID for every HTTP request and WebSocket connection: in its log lines and in its reply.

The ID is the client's ``X-Request-ID`` when that is a sane token (letters, digits and ``-_.:+/=``, at most
128 characters: what request-ID and trace-ID schemes use), so a client or a proxy can follow its own ID into our
logs; anything else is replaced by a generated one rather than copied into logs and headers. The reply carries
it back in ``X-Request-ID`` whatever the log format.
"""

from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import logs

HEADER = b"x-request-id"
_SANE = re.compile(rb"[A-Za-z0-9\-_.:+/=]{1,128}")
# The messages that carry a reply's headers.
_STARTS = ("http.response.start", "websocket.accept", "websocket.http.response.start")


def request_id(scope: Scope) -> str:
    """The client's ID when it is a sane token, else a new one."""
    for name, value in scope.get("headers", ()):
        if name == HEADER and _SANE.fullmatch(value):
            return value.decode("ascii")
    return uuid.uuid4().hex


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = request_id(scope)
        header = (HEADER, rid.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] in _STARTS:
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != HEADER]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        # The organization is bound once the caller is authenticated (gateway/web/auth.py); cleared here so a
        # request never starts with one.
        with logs.bound(request_id=rid, organization_id=None):
            await self.app(scope, receive, send_with_id)
