"""The HTTP side of an external engine: GraphQL calls with one token, the documented multipart model upload, and
identifier file downloads, each rate-limited and retried the way the API asks.

It speaks only HTTP (httpx), like an engine written in any other language would: nothing here knows the server's
code. ``service_unavailable`` (and HTTP 502/503/504, and a connection that never reached the server) is retried
with the client's backoff; every other error is raised as the client's exception for its code.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiolimiter import AsyncLimiter

from engineshed.client.errors import (
    ApiError,
    ConnectionFailed,
    InternalError,
    ServiceUnavailableError,
    error_from,
)
from engineshed.client.transport import RetryPolicy, graphql_url

log = logging.getLogger("engineshed.engine")

UNAVAILABLE_STATUSES = (502, 503, 504)
CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """How hard an engine may press the API: requests per second (all calls and downloads together) and how many
    pages or files are in flight at once. The established docs advise a moderate page size (30) and bounded
    concurrency for large libraries."""

    page_size: int = 30
    concurrency: int = 4
    requests_per_second: float = 20.0

    def __post_init__(self) -> None:
        if not 1 <= self.page_size <= 1000:
            raise ValueError(f"page_size must be between 1 and 1000, not {self.page_size!r}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {self.concurrency!r}")
        if self.requests_per_second <= 0:
            raise ValueError(f"requests_per_second must be positive, not {self.requests_per_second!r}")


class _Unavailable(Exception):
    def __init__(self, error: Exception, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def _retry_after(response: httpx.Response) -> float | None:
    try:
        value = response.headers.get("retry-after")
        return float(value) if value is not None else None
    except ValueError:
        return None


def _data_of(response: httpx.Response) -> Any:
    """A GraphQL reply's data, or the error it carries (``_Unavailable`` for what deserves another try)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code in UNAVAILABLE_STATUSES:
        raise _Unavailable(ServiceUnavailableError(f"the server answered HTTP {response.status_code}",
                                                   status=response.status_code), _retry_after(response))
    if not isinstance(body, dict):
        raise InternalError(f"the server answered HTTP {response.status_code} without a GraphQL reply", status=response.status_code)
    errors = body.get("errors") or []
    for entry in errors:
        if (entry.get("extensions") or {}).get("code") == "service_unavailable":
            raise _Unavailable(error_from(entry, status=response.status_code, errors=errors), _retry_after(response))
    if errors:
        raise error_from(errors[0], status=response.status_code, errors=errors)
    return body.get("data")


class Api:
    """GraphQL with one bearer token. Clients made from one :class:`Session` share its connections and limits."""

    def __init__(self, session: Session, token: str) -> None:
        self.session = session
        self.token = token
        self._headers = {"Authorization": f"Bearer {token}"}

    async def query(self, query: str, **variables: Any) -> Any:
        """The data of ``query``, retried while the API says it is unavailable."""
        return await self.session.send(lambda: self.session.http.post(
            self.session.url, json={"query": query, "variables": variables}, headers=self._headers))

    async def upload(self, query: str, variables: dict[str, Any], source: Path | bytes, filename: str, content_type: str) -> Any:
        """The documented multipart request: a ``query`` part, a ``variables`` part and ONE part named ``file``
        whose Content-Type is the file's. A path is streamed from disk, reopened for each attempt."""

        async def post() -> httpx.Response:
            form = {"query": query, "variables": json.dumps(variables)}
            if isinstance(source, bytes):
                return await self.session.http.post(self.session.url, data=form, headers=self._headers,
                                                    files={"file": (filename, source, content_type)})
            with open(source, "rb") as fh:
                return await self.session.http.post(self.session.url, data=form, headers=self._headers,
                                                    files={"file": (filename, fh, content_type)})

        return await self.session.send(post)


class Session:
    """One connection pool, one rate limiter and one concurrency bound for everything an engine process sends."""

    def __init__(self, url: str, *, limits: Limits | None = None, retry: RetryPolicy | None = None,
                 transport: httpx.AsyncBaseTransport | None = None, timeout: float = 300.0) -> None:
        self.url = graphql_url(url)
        self.limits = limits or Limits()
        self.retry = retry or RetryPolicy()
        self.limiter = AsyncLimiter(self.limits.requests_per_second, 1.0)
        self.slots = asyncio.Semaphore(self.limits.concurrency)
        self.http = httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)))
        # Identifier files are presigned storage URLs: they get no bearer token.
        self.files = httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
                                       follow_redirects=True)

    def api(self, token: str) -> Api:
        return Api(self, token)

    async def close(self) -> None:
        await self.http.aclose()
        await self.files.aclose()

    async def send(self, post: Any) -> Any:
        attempt = 0
        while True:
            try:
                async with self.limiter:
                    try:
                        response = await post()
                    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                        raise _Unavailable(ConnectionFailed(f"cannot reach {self.url}: {exc.__class__.__name__}: {exc}")) from None
                    except httpx.TransportError as exc:
                        raise ConnectionFailed(f"{self.url} failed mid-request: {exc.__class__.__name__}: {exc}") from None
                return _data_of(response)
            except _Unavailable as unavailable:
                if attempt + 1 >= self.retry.attempts:
                    raise unavailable.error from None
                delay = self.retry.delay(attempt, unavailable.retry_after)
                log.info("%s; retrying in %.2fs", unavailable.error, delay)
                await asyncio.sleep(delay)
                attempt += 1

    async def stream(self, url: str) -> AsyncIterator[bytes]:
        """An identifier's file in chunks, rate-limited like every other request."""
        async with self.limiter:
            pass
        try:
            async with self.files.stream("GET", url) as response:
                if response.status_code >= 400:
                    raise ApiError(f"fetching an identifier's file answered HTTP {response.status_code}", code="service_failure",
                                   status=response.status_code)
                async for chunk in response.aiter_bytes(CHUNK):
                    yield chunk
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"fetching an identifier's file failed: {exc.__class__.__name__}: {exc}") from None

    async def read(self, url: str) -> bytes:
        """An identifier's file, whole; a connection failure is retried (a GET is safe to repeat)."""
        for attempt in range(self.retry.attempts):
            try:
                return b"".join([chunk async for chunk in self.stream(url)])
            except ConnectionFailed:
                if attempt + 1 >= self.retry.attempts:
                    raise
                await asyncio.sleep(self.retry.delay(attempt))
        raise AssertionError("unreachable")
