"""GraphQL subscriptions over graphql-transport-ws (the protocol the gateway speaks on /v3/graphql).

The ``websockets`` library speaks WebSocket, sync and asyncio; the protocol on top is a handful of JSON
messages: ``connection_init`` (with the token) → ``connection_ack``, ``subscribe`` → ``next``… → ``complete``,
and ``ping``/``pong`` either way.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

from engineshed.client.errors import AuthenticationError, ConnectionFailed, EngineshedError, error_from

PROTOCOL = "graphql-transport-ws"
OPEN_TIMEOUT = 30.0
ACK_TIMEOUT = 30.0


def ws_url(graphql_url: str) -> str:
    if graphql_url.startswith("https://"):
        return "wss://" + graphql_url[len("https://"):]
    if graphql_url.startswith("http://"):
        return "ws://" + graphql_url[len("http://"):]
    return graphql_url


def _init(token: str | None) -> str:
    message: dict[str, Any] = {"type": "connection_init"}
    if token:
        message["payload"] = {"Authorization": f"Bearer {token}"}
    return json.dumps(message)


def _subscribe(query: str, variables: dict[str, Any]) -> str:
    return json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": variables}})


def _ack_or_raise(raw: str | bytes) -> None:
    message = json.loads(raw)
    if message.get("type") != "connection_ack":
        raise EngineshedError(f"the server did not accept the subscription connection: {message}")


def _closed(exc: ConnectionClosed) -> EngineshedError:
    code = exc.rcvd.code if exc.rcvd else None
    reason = exc.rcvd.reason if exc.rcvd else ""
    if code == 4403 or code == 4401:
        return AuthenticationError(reason or "the server refused the token", status=401)
    return ConnectionFailed(f"the subscription connection closed ({code} {reason})".strip())


def _payload(message: dict[str, Any], field: str) -> dict[str, Any] | None:
    """The update a ``next`` carries; raises the API error an ``error`` or errored ``next`` carries; None at ``complete``."""
    kind = message.get("type")
    if kind == "complete":
        return None
    if kind == "error":
        errors = message.get("payload") or [{"message": "subscription error"}]
        raise error_from(errors[0], errors=errors)
    payload = message.get("payload") or {}
    if payload.get("errors"):
        raise error_from(payload["errors"][0], errors=payload["errors"])
    return (payload.get("data") or {}).get(field)


def subscribe_sync(url: str, token: str | None, query: str, variables: dict[str, Any], field: str,
                   idle_timeout: float | None = None) -> Iterator[dict[str, Any]]:
    """Each update of a subscription until the server completes it (blocking)."""
    from websockets.sync.client import connect

    try:
        ws = connect(ws_url(url), subprotocols=[PROTOCOL], open_timeout=OPEN_TIMEOUT)  # type: ignore[list-item]
    except (OSError, InvalidStatus, InvalidURI, TimeoutError) as exc:
        raise ConnectionFailed(f"cannot open a subscription to {url}: {exc}") from None
    with ws:
        try:
            ws.send(_init(token))
            _ack_or_raise(ws.recv(timeout=ACK_TIMEOUT))
            ws.send(_subscribe(query, variables))
            while True:
                message = json.loads(ws.recv(timeout=idle_timeout))
                if message.get("type") == "ping":
                    ws.send(json.dumps({"type": "pong"}))
                    continue
                if message.get("type") == "pong":
                    continue
                update = _payload(message, field)
                if update is None:
                    return
                yield update
        except ConnectionClosed as exc:
            raise _closed(exc) from None


async def subscribe_async(url: str, token: str | None, query: str, variables: dict[str, Any], field: str,
                          idle_timeout: float | None = None) -> AsyncIterator[dict[str, Any]]:
    """Each update of a subscription until the server completes it (asyncio); TimeoutError when nothing arrives
    for ``idle_timeout`` seconds, as the blocking one."""
    from websockets.asyncio.client import connect

    try:
        ws = await connect(ws_url(url), subprotocols=[PROTOCOL], open_timeout=OPEN_TIMEOUT)  # type: ignore[list-item]
    except (OSError, InvalidStatus, InvalidURI, TimeoutError) as exc:
        raise ConnectionFailed(f"cannot open a subscription to {url}: {exc}") from None
    async with ws:
        try:
            await ws.send(_init(token))
            _ack_or_raise(await asyncio.wait_for(ws.recv(), ACK_TIMEOUT))
            await ws.send(_subscribe(query, variables))
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), idle_timeout))
                if message.get("type") == "ping":
                    await ws.send(json.dumps({"type": "pong"}))
                    continue
                if message.get("type") == "pong":
                    continue
                update = _payload(message, field)
                if update is None:
                    return
                yield update
        except ConnectionClosed as exc:
            raise _closed(exc) from None
