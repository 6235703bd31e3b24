"""The request body limit (HTTP 413 while streaming), and a refusal that every client can read.

A client that sends its whole body before it reads the answer (Python's ``urllib``, ``requests``, httpx
without ``Expect: 100-continue``) never sees a 413 sent early: the server closes the connection with the
rest of the body unread in its socket, the kernel answers that with a TCP reset, and the client reports
a reset instead of the reply. So before a 413 goes out, the rest of the body is read and thrown away,
up to a bound (``ENGINESHED_MAX_DISCARD_BYTES``); past the bound, or when the client never sends it, the
413 goes out with ``Connection: close`` and uvicorn closes the connection.

``BodyLimitMiddleware`` does this for a whole mount: a declared Content-Length over the limit is refused before
the app runs, and a body that grows past it while streaming is refused when the app reads that far.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import PayloadTooLarge
from gateway.settings import Settings
from gateway.web.errors import ErrorShape, error_response

# A client that stops sending in the middle of a refused body is not waited for longer than this.
DISCARD_IDLE_SECONDS = 10.0


class BodyLimit:
    """An ASGI receive that counts body bytes as they arrive and stops at the limit, before anything is stored."""

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self.limit = limit
        self.seen = 0
        self.complete = False  # the last body message has arrived
        self.disconnected = False

    async def __call__(self) -> dict[str, Any]:
        message = await self._receive()
        self._note(message)
        if message["type"] == "http.request" and self.seen > self.limit:
            raise PayloadTooLarge(f"the request body is larger than the limit of {self.limit} bytes")
        return message

    def _note(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            self.complete = not message.get("more_body", False)
        elif message["type"] == "http.disconnect":
            self.disconnected = True

    async def discard_rest(self, bound: int, *, content_length: int | None, expects_continue: bool) -> bool:
        """Read and drop the rest of a refused body; True when it all arrived (the connection may be reused).

        Nothing is read when a client waits for ``100 Continue`` before sending (curl does): reading would
        ask it for the body, and it reads the 413 as it is. Nothing is read either when the declared length
        already says the body is larger than the bound.
        """
        if self.complete or self.disconnected:
            return self.complete
        if expects_continue and self.seen == 0:
            return False
        if content_length is not None and content_length - self.seen > bound:
            return False
        discarded = 0
        while discarded <= bound:
            try:
                message = await asyncio.wait_for(self._receive(), DISCARD_IDLE_SECONDS)
            except asyncio.TimeoutError:
                return False
            self._note(message)
            if message["type"] != "http.request":
                return False
            discarded += len(message.get("body", b""))
            if self.complete:
                return discarded <= bound
        return False


class BodyLimitMiddleware:
    """Holds a mount's request bodies to a limit and answers 413, in the mount's error shape, once the body
    has been drained (see above).

    ``limit`` gives the limit of one request from its headers and the settings (an upload mount allows more to
    a multipart body than to JSON). The app reads its body through ``BodyLimit`` and lets ``PayloadTooLarge``
    out of it; the reply is this middleware's.
    """

    def __init__(self, app: ASGIApp, *, limit: Callable[[Headers, Settings], int], shape: ErrorShape) -> None:
        self.app = app
        self.limit = limit
        self.shape = shape

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings: Settings = scope["app"].state.resources.settings
        headers = Headers(scope=scope)
        limit = self.limit(headers, settings)
        body = BodyLimit(receive, limit)
        declared = headers.get("content-length")
        started = False

        async def send_started(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        if declared is not None and not declared.isdigit():
            refusal = error_response(400, "invalid_input", "Content-Length must be a number", shape=self.shape)
            await refusal(scope, receive, send)
            return
        try:
            if declared is not None and int(declared) > limit:
                raise PayloadTooLarge(f"the request body is larger than the limit of {limit} bytes")
            await self.app(scope, body, send_started)
            return
        except PayloadTooLarge as exc:
            if started:
                raise
            response = error_response(413, exc.code, exc.message, shape=self.shape)
        if not await body.discard_rest(
            settings.discard_bytes,
            content_length=int(declared) if declared is not None else None,
            expects_continue=headers.get("expect", "").lower() == "100-continue",
        ):
            response.headers["Connection"] = "close"
        await response(scope, receive, send)
