"""What one API call is, and how the sync and async clients send it: retries, uploads, errors.

Each client operation is written once, as a generator that yields :class:`Call` objects and receives their
results (see :mod:`engineshed.client.operations`). The two drivers here run such a generator with
``httpx.Client`` or ``httpx.AsyncClient``, so the sync and async clients share every rule: which failures are
retried, how uploads are streamed, how errors become exceptions.

httpx is the HTTP library because it offers the same API synchronously and with asyncio, streams multipart
file parts from disk in chunks (a large upload never sits in memory), pools keep-alive connections across
threads and tasks, and it was already a dependency of the project's tests. A GraphQL client library (gql)
would add a transport abstraction and a schema layer we do not need for sending a POST, and would still
leave the error codes, retries and the upload spec to us.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import random
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx

from engineshed.client.connection import NO_TOKEN
from engineshed.client.errors import (
    ApiError,
    AuthenticationError,
    ConnectionFailed,
    InternalError,
    ServiceUnavailableError,
    StorageRefused,
    error_from,
)

T = TypeVar("T")

# HTTP statuses that mean "not now" rather than "not this": a proxy or load balancer in front of the gateway
# answers these without a GraphQL body while it restarts.
UNAVAILABLE_STATUSES = (502, 503, 504)


@dataclass(frozen=True, slots=True)
class Upload:
    """A file to send: a path (streamed from disk, reopened for each attempt) or bytes held in memory."""

    source: Path | bytes
    filename: str
    content_type: str

    @classmethod
    def of(cls, value: str | Path | bytes | Upload, *, filename: str | None = None, content_type: str | None = None) -> Upload:
        """An Upload from a path or bytes; the content type is guessed from the file name when not given."""
        if isinstance(value, Upload):
            return value
        if isinstance(value, (bytes, bytearray, memoryview)):
            name = filename or "upload.bin"
            return cls(bytes(value), name, content_type or mimetypes.guess_type(name)[0] or "application/octet-stream")
        path = Path(value)
        name = filename or path.name
        return cls(path, name, content_type or mimetypes.guess_type(name)[0] or "application/octet-stream")

    @contextmanager
    def opened(self) -> Iterator[IO[bytes] | bytes]:
        if isinstance(self.source, bytes):
            yield self.source
        else:
            with open(self.source, "rb") as fh:
                yield fh


@dataclass(slots=True)
class Call:
    """One request an operation needs: a GraphQL document, a REST call, or a pause between polls.

    ``idempotent``: sending it twice does no harm, so it is retried after a connection failure too (a failure
    after the request left may have let it run). ``service_unavailable`` is retried for every call: the
    server answers it when it did nothing.
    """

    query: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    uploads: dict[str, Upload] = field(default_factory=dict)  # variable path ("f", "i.file") -> file (multipart spec)
    idempotent: bool = False
    method: str | None = None  # REST: GET / POST / DELETE on `path`
    path: str | None = None
    json_body: Any = None
    sleep: float | None = None
    # A direct upload: PUT ``uploads["body"]`` to this presigned storage URL, without the API token.
    put_url: str | None = None
    # GraphQL with aliases: the whole reply ({data, errors}) rather than the first error raised.
    partial: bool = False


Operation = Generator[Call, Any, T]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry: exponential backoff with full jitter, capped, bounded in attempts.

    A ``Retry-After`` header from the server wins over the computed delay (still capped by ``max_delay``).
    """

    attempts: int = 6
    initial_delay: float = 0.25
    max_delay: float = 8.0

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be a whole number of at least 1 (1: no retries), not {self.attempts!r}")
        if not 0 <= self.initial_delay <= self.max_delay:
            raise ValueError(f"RetryPolicy delays must satisfy 0 <= initial_delay <= max_delay, not {self.initial_delay!r}, {self.max_delay!r}")

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(self.max_delay, max(0.0, retry_after))
        ceiling = min(self.max_delay, self.initial_delay * (2 ** attempt))
        return random.uniform(ceiling / 2, ceiling)


class _Retry(Exception):
    """Internal: this attempt failed in a way worth another try."""

    def __init__(self, error: Exception, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def graphql_url(base: str) -> str:
    """``http://host:port``, ``…/`` or ``…/v3/graphql``: the GraphQL endpoint."""
    base = base.rstrip("/")
    return base if base.endswith("/v3/graphql") else base + "/v3/graphql"


def base_url(url: str) -> str:
    url = url.rstrip("/")
    return url[: -len("/v3/graphql")] if url.endswith("/v3/graphql") else url


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _parse(response: httpx.Response, *, rest: bool = False, partial: bool = False) -> Any:
    """The data of a reply, or the exception it carries. Raises _Retry for what deserves another try."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code in UNAVAILABLE_STATUSES:
        message = _message_of(body) or f"the server answered HTTP {response.status_code}"
        raise _Retry(ServiceUnavailableError(message, status=response.status_code), _retry_after(response))
    if rest:
        if response.status_code >= 400 or not isinstance(body, (dict, list)):
            raise _rest_error(response, body)
        return body
    if not isinstance(body, dict):
        if response.status_code == 401:
            raise AuthenticationError("the server refused the token", status=401)
        raise InternalError(f"the server answered HTTP {response.status_code} without a GraphQL reply", status=response.status_code)
    errors = body.get("errors") or []
    if partial and errors and response.status_code == 200 and body.get("data") is not None and not any(
        ((e.get("extensions") or {}).get("code")) in ("service_unavailable", "authentication_error") for e in errors
    ):
        return body  # some aliases failed, others not: the caller reads each one's answer
    if errors:
        first = error_from(errors[0], status=response.status_code, errors=errors)
        if any(((e.get("extensions") or {}).get("code")) == "service_unavailable" for e in errors):
            unavailable = next(e for e in errors if (e.get("extensions") or {}).get("code") == "service_unavailable")
            raise _Retry(error_from(unavailable, status=response.status_code, errors=errors), _retry_after(response))
        raise first
    if response.status_code >= 400:
        raise InternalError(f"the server answered HTTP {response.status_code}", status=response.status_code)
    return body if partial else body.get("data")


def _parse_sent(response: httpx.Response, token: str | None, *, rest: bool = False, partial: bool = False) -> Any:
    """:func:`_parse`; a refusal of a request sent without a token says how to get one."""
    try:
        return _parse(response, rest=rest, partial=partial)
    except AuthenticationError as exc:
        if token is not None:
            raise
        raise AuthenticationError(f"{exc.message}: {NO_TOKEN}", code=exc.code, data=exc.data, path=exc.path,
                                  status=exc.status, errors=exc.errors) from None


def _message_of(body: Any) -> str | None:
    if isinstance(body, dict):
        if body.get("errors"):
            return str(body["errors"][0].get("message"))
        for key in ("error_msg", "message", "detail"):
            if body.get(key):
                return str(body[key])
    return None


def _rest_error(response: httpx.Response, body: Any) -> ApiError:
    """A REST route's JSON error: the GraphQL-style ``errors`` list, or ``{code|error_code, message|error_msg}``."""
    if isinstance(body, dict) and body.get("errors"):
        return error_from(body["errors"][0], status=response.status_code, errors=body["errors"])
    code = None
    if isinstance(body, dict):
        code = body.get("code") or body.get("error_code")
    if code is None:
        code = {400: "invalid_input", 401: "authentication_error", 403: "not_allowed", 404: "not_found",
                413: "invalid_input"}.get(response.status_code, "internal_error")
    message = _message_of(body) or f"HTTP {response.status_code}"
    return error_from({"message": message, "extensions": {"code": code}}, status=response.status_code)


def _json_request(call: Call) -> dict[str, Any]:
    return {"query": call.query, "variables": call.variables or None}


def _multipart(call: Call, stack: list[Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """The GraphQL multipart request spec: ``operations`` (file variables null), ``map``, then the file parts."""
    variables = json.loads(json.dumps(call.variables))  # a copy the placeholders can be written into
    mapping: dict[str, list[str]] = {}
    files: dict[str, Any] = {}
    for index, (path, upload) in enumerate(call.uploads.items()):
        node = variables
        keys = path.split(".")  # "f", or "i.file" for a file inside an input object
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = None
        mapping[str(index)] = [f"variables.{path}"]
        context = upload.opened()
        stack.append(context)
        files[str(index)] = (upload.filename, context.__enter__(), upload.content_type)
    data = {"operations": json.dumps({"query": call.query, "variables": variables}), "map": json.dumps(mapping)}
    return data, files


def _put_result(response: httpx.Response, url: str) -> None:
    """None when storage took the object; _Retry for what deserves another try; StorageRefused otherwise."""
    where = url.split("?", 1)[0]  # never the signature
    if response.status_code in (200, 201, 204):
        return
    if response.status_code in (429, 500, 502, 503, 504):
        raise _Retry(StorageRefused(f"storage answered HTTP {response.status_code} for {where}", response.status_code),
                     _retry_after(response))
    raise StorageRefused(f"storage refused the upload to {where}: HTTP {response.status_code} {response.text[:200]}",
                         response.status_code)


def _put_failed(exc: httpx.HTTPError, url: str) -> ConnectionFailed:
    return ConnectionFailed(f"cannot upload to {url.split('?', 1)[0]}: {exc.__class__.__name__}: {exc}".rstrip(": "))


def _close(stack: list[Any]) -> None:
    for context in reversed(stack):
        context.__exit__(None, None, None)


def _connection_failed(exc: httpx.HTTPError, url: str) -> ConnectionFailed:
    if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout)):
        # The server was reached (or the pool was busy): saying "cannot reach" would send people to the network.
        return ConnectionFailed(f"{url} did not answer in time ({exc.__class__.__name__}); raise the client's timeout "
                                "or try again")
    return ConnectionFailed(f"cannot reach {url}: {exc.__class__.__name__}: {exc}".rstrip(": "))


class SyncTransport:
    """Runs operations with an ``httpx.Client`` (thread-safe: one may be shared by a thread pool)."""

    def __init__(self, url: str, token: str | None, *, timeout: float, retry: RetryPolicy, http: httpx.Client | None = None) -> None:
        self.url = graphql_url(url)
        self.base = base_url(self.url)
        self.token = token
        self.retry = retry
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = http or httpx.Client(headers=headers, timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)))
        # Direct uploads go to storage, which must not see the API token: a pool of their own, without it.
        self.storage = httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
                                    limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))

    def close(self) -> None:
        self.http.close()
        self.storage.close()

    def run(self, operation: Operation[T]) -> T:
        try:
            call = next(operation)
            while True:
                try:
                    result = self.send(call)
                except Exception as exc:  # handed to the operation, which may handle it (e.g. not_found -> None)
                    call = operation.throw(exc)
                else:
                    call = operation.send(result)
        except StopIteration as stop:
            return stop.value

    def send(self, call: Call) -> Any:
        if call.sleep is not None:
            time.sleep(call.sleep)
            return None
        attempt = 0
        while True:
            try:
                return self._once(call)
            except _Retry as retry:
                if attempt + 1 >= self.retry.attempts:
                    raise retry.error from None
                time.sleep(self.retry.delay(attempt, retry.retry_after))
                attempt += 1

    def _once(self, call: Call) -> Any:
        stack: list[Any] = []
        if call.put_url is not None:
            body = call.uploads["body"]
            try:
                with body.opened() as content:
                    response = self.storage.put(call.put_url, content=content, headers={"Content-Type": body.content_type})
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.TransportError) as exc:
                raise _Retry(_put_failed(exc, call.put_url)) from None  # the same bytes to the same key: safe again
            return _put_result(response, call.put_url)
        try:
            if call.method is not None:
                response = self.http.request(call.method, self.base + (call.path or ""), json=call.json_body)
                return _parse_sent(response, self.token, rest=True)
            if call.uploads:
                data, files = _multipart(call, stack)
                response = self.http.post(self.url, data=data, files=files)
            else:
                response = self.http.post(self.url, json=_json_request(call))
            return _parse_sent(response, self.token, partial=call.partial)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # Nothing reached the server: safe to retry any call.
            raise _Retry(_connection_failed(exc, self.url)) from None
        except httpx.TransportError as exc:
            if call.idempotent:
                raise _Retry(_connection_failed(exc, self.url)) from None
            raise _connection_failed(exc, self.url) from None
        finally:
            _close(stack)


class AsyncTransport:
    """Runs operations with an ``httpx.AsyncClient`` on the caller's event loop."""

    def __init__(self, url: str, token: str | None, *, timeout: float, retry: RetryPolicy, http: httpx.AsyncClient | None = None) -> None:
        self.url = graphql_url(url)
        self.base = base_url(self.url)
        self.token = token
        self.retry = retry
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = http or httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)))
        self.timeout = timeout
        # Direct uploads go to storage, without the API token, on aiohttp: httpx's asyncio PUTs of small objects
        # ran at a fifth of aiohttp's rate against the same store (bench/direct_upload.py), and every file pays one.
        self._storage: Any = None

    async def close(self) -> None:
        await self.http.aclose()
        if self._storage is not None:
            await self._storage.close()

    def _storage_session(self) -> Any:
        import aiohttp

        if self._storage is None:
            self._storage = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64), auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=self.timeout, sock_connect=min(self.timeout, 15.0)),
            )
        return self._storage

    async def _put(self, call: Call) -> None:
        import aiohttp

        body = call.uploads["body"]
        url = call.put_url or ""
        try:
            with body.opened() as content:
                data = content if isinstance(content, bytes) else content.read()
            async with self._storage_session().put(url, data=data, headers={"Content-Type": body.content_type}) as reply:
                text = await reply.text(errors="replace")
                status = reply.status
                retry_after = reply.headers.get("retry-after")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Retry(ConnectionFailed(f"cannot upload to {url.split('?', 1)[0]}: {exc.__class__.__name__}: {exc}"
                                          .rstrip(": "))) from None
        _put_result(httpx.Response(status, text=text, headers={"retry-after": retry_after} if retry_after else {}), url)

    async def run(self, operation: Operation[T]) -> T:
        try:
            call = next(operation)
            while True:
                try:
                    result = await self.send(call)
                except Exception as exc:
                    call = operation.throw(exc)
                else:
                    call = operation.send(result)
        except StopIteration as stop:
            return stop.value

    async def send(self, call: Call) -> Any:
        if call.sleep is not None:
            await asyncio.sleep(call.sleep)
            return None
        attempt = 0
        while True:
            try:
                return await self._once(call)
            except _Retry as retry:
                if attempt + 1 >= self.retry.attempts:
                    raise retry.error from None
                await asyncio.sleep(self.retry.delay(attempt, retry.retry_after))
                attempt += 1

    async def _once(self, call: Call) -> Any:
        stack: list[Any] = []
        if call.put_url is not None:
            return await self._put(call)
        try:
            if call.method is not None:
                response = await self.http.request(call.method, self.base + (call.path or ""), json=call.json_body)
                return _parse_sent(response, self.token, rest=True)
            if call.uploads:
                data, files = _multipart(call, stack)
                response = await self.http.post(self.url, data=data, files=files)
            else:
                response = await self.http.post(self.url, json=_json_request(call))
            return _parse_sent(response, self.token, partial=call.partial)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _Retry(_connection_failed(exc, self.url)) from None
        except httpx.TransportError as exc:
            if call.idempotent:
                raise _Retry(_connection_failed(exc, self.url)) from None
            raise _connection_failed(exc, self.url) from None
        finally:
            _close(stack)


__all__ = ["Call", "Upload", "RetryPolicy", "SyncTransport", "AsyncTransport", "Operation", "graphql_url", "base_url"]
