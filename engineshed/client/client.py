"""The sync and async clients: the operations of :mod:`engineshed.client.operations` over one HTTP connection pool.

>>> from engineshed.client import Client
>>> with Client("http://127.0.0.1:8000", token) as client:          # doctest: +SKIP
...     library = client.create_library("staff", "people")
...     job = client.train(library["id"])
...     for update in client.watch_job(job["id"]):
...         print(update["status"])
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from engineshed.client import bulk, subscriptions
from engineshed.client.connection import resolve
from engineshed.client.errors import ApiError
from engineshed.client.operations import Operations
from engineshed.client.operations.fields import JOB_FIELDS
from engineshed.client.training import TrainingJob
from engineshed.client.transport import (
    AsyncTransport,
    Operation,
    RetryPolicy,
    SyncTransport,
)

JOB_UPDATED = f"subscription($id: ID!) {{ jobUpdated(id: $id) {{ {JOB_FIELDS} }} }}"
TASK_UPDATED = ("subscription($id: ID!) { taskUpdated(jobId: $id) { id jobId engineId status progress progressMessage "
                "failureReason failureMessage } }")
DEFAULT_TIMEOUT = 300.0  # a large upload or a slow recognition on a busy worker takes a while


class Client(Operations):
    """The blocking client. Thread-safe: one client may serve a thread pool (``engineshed import`` does).

    ``url``: the gateway (``http://host:port`` or its ``/v3/graphql``); ``token``: an API token. Either None:
    ENGINESHED_URL / ENGINESHED_TOKEN, else the local ``engineshed dev`` and its admin token file.
    ``retry``: how ``service_unavailable`` (and connection failures of idempotent calls) are retried.
    """

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = DEFAULT_TIMEOUT,
                 retry: RetryPolicy | None = None, data_dir: Path | None = None, http: httpx.Client | None = None) -> None:
        found = resolve(url, token, data_dir=data_dir) if url is None or token is None else None
        self.url = url or (found.url if found else "")
        self.token = token if token is not None else (found.token if found else None)
        self._transport = SyncTransport(self.url, self.token, timeout=timeout, retry=retry or RetryPolicy(), http=http)
        self.graphql_url = self._transport.url

    def _run(self, operation: Operation[Any]) -> Any:
        return self._transport.run(operation)

    def __repr__(self) -> str:  # never the token
        return f"Client({self.graphql_url!r}, token={'set' if self.token else 'none'})"

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query(self, query: str, variables: dict[str, Any] | None = None, *, idempotent: bool = False) -> Any:
        """Any GraphQL document; its ``data``, or the API error raised. ``idempotent``: retry connection failures too."""
        from engineshed.client.transport import Call

        def one() -> Operation[Any]:
            return (yield Call(query=query, variables=variables or {}, idempotent=idempotent))

        return self._run(one())

    def watch_job(self, job_id: str, idle_timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """``jobUpdated``: the job now, then each change of it or its tasks, until it is complete, failed or cancelled."""
        return subscriptions.subscribe_sync(self.graphql_url, self.token, JOB_UPDATED, {"id": job_id}, "jobUpdated", idle_timeout)

    def watch_tasks(self, job_id: str, idle_timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """``taskUpdated``: the job's tasks now, then each task whose status or progress changes."""
        return subscriptions.subscribe_sync(self.graphql_url, self.token, TASK_UPDATED, {"id": job_id}, "taskUpdated", idle_timeout)

    def training_job(self, display_name: str | None = None, labels: dict[str, str] | None = None) -> TrainingJob:
        """A Vertex-style training job, not yet run (:meth:`TrainingJob.run` starts it)."""
        return TrainingJob(self, display_name=display_name, labels=labels)

    def upload_identifiers(self, files: Sequence[Mapping[str, Any]], *, direct: bool = True,
                           concurrency: int = 8) -> list[dict[str, Any] | ApiError]:
        """Several files as identifiers: each ``{"file": path or bytes, "entityId", "identifierTypeId", …}`` (other
        keys: CreateEntityIdentifier's fields, ``filename``); each identifier, or the error its file got, in order.

        ``direct`` (the default): writable URLs in batches of 30, each file PUT straight to storage (``concurrency``
        at a time), and each batch's identifiers made in one request (:mod:`engineshed.client.bulk`); a file's name
        is its identifier's default ``uniqueName``, as in a multipart upload. ``direct=False``: one multipart
        upload each, through the gateway.
        """
        if not direct:
            return self.upload_identifiers_multipart(files)
        return bulk.upload_sync(self, files, concurrency)


class AsyncClient(Operations):
    """The asyncio client: the same operations as :class:`Client`, each returning an awaitable.

    Use ``async with AsyncClient(...) as client:`` or ``await client.aclose()``.
    """

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = DEFAULT_TIMEOUT,
                 retry: RetryPolicy | None = None, data_dir: Path | None = None, http: httpx.AsyncClient | None = None) -> None:
        found = resolve(url, token, data_dir=data_dir) if url is None or token is None else None
        self.url = url or (found.url if found else "")
        self.token = token if token is not None else (found.token if found else None)
        self._transport = AsyncTransport(self.url, self.token, timeout=timeout, retry=retry or RetryPolicy(), http=http)
        self.graphql_url = self._transport.url

    def _run(self, operation: Operation[Any]) -> Any:
        return self._transport.run(operation)

    def __repr__(self) -> str:  # never the token
        return f"AsyncClient({self.graphql_url!r}, token={'set' if self.token else 'none'})"

    async def aclose(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def query(self, query: str, variables: dict[str, Any] | None = None, *, idempotent: bool = False) -> Any:
        """Any GraphQL document; its ``data``, or the API error raised."""
        from engineshed.client.transport import Call

        def one() -> Operation[Any]:
            return (yield Call(query=query, variables=variables or {}, idempotent=idempotent))

        return await self._run(one())

    def watch_job(self, job_id: str, idle_timeout: float | None = None) -> AsyncIterator[dict[str, Any]]:
        """``jobUpdated`` as an async iterator (``async for update in client.watch_job(id)``)."""
        return subscriptions.subscribe_async(self.graphql_url, self.token, JOB_UPDATED, {"id": job_id}, "jobUpdated", idle_timeout)

    def watch_tasks(self, job_id: str, idle_timeout: float | None = None) -> AsyncIterator[dict[str, Any]]:
        """``taskUpdated`` as an async iterator."""
        return subscriptions.subscribe_async(self.graphql_url, self.token, TASK_UPDATED, {"id": job_id}, "taskUpdated", idle_timeout)

    def training_job(self, display_name: str | None = None, labels: dict[str, str] | None = None) -> TrainingJob:
        """A Vertex-style training job whose I/O methods return awaitables."""
        return TrainingJob(self, display_name=display_name, labels=labels)

    async def upload_identifiers(self, files: Sequence[Mapping[str, Any]], *, direct: bool = True,
                                 concurrency: int = 8) -> list[dict[str, Any] | ApiError]:
        """:meth:`Client.upload_identifiers`, with the PUTs as tasks."""
        if not direct:
            return await self.upload_identifiers_multipart(files)
        return await bulk.upload_async(self, files, concurrency)


def default_client() -> Client:
    """The client of the environment's connection (ENGINESHED_URL / ENGINESHED_TOKEN, else the local dev stack), for
    objects made without one (``TrainingJob.get``). One per connection for the process: the objects keep using it
    after the call that made them, so it is never closed under them, and its connections are reused."""
    found = resolve()
    return _shared_client(found.url, found.token)


@functools.cache
def _shared_client(url: str, token: str | None) -> Client:
    return Client(url, token)

