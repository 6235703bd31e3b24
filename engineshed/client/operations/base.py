"""What every operation is made of: the :func:`op` decorator, :func:`graphql` (the request an operation yields)
and :class:`OperationsBase`, whose ``_run`` each client defines.

An operation is a generator: it yields the :class:`~engineshed.client.transport.Call` objects it needs and
receives their data (or, thrown into it, their exception). ``Client`` runs them with blocking I/O, and
``AsyncClient`` with asyncio; the methods therefore return the documented value from ``Client`` and an
awaitable of it from ``AsyncClient``. An operation that needs another one runs it with
``yield from Mixin.name.__wrapped__(self, ...)``, so both stay one generator driven by one client.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar, cast

from engineshed.client.transport import Call, Operation, Upload

T = TypeVar("T")
P = ParamSpec("P")


def op(fn: Callable[P, Operation[T]]) -> Callable[P, T]:
    """Turn an operation (a generator method) into a method the client runs with its transport.

    Typed as the sync client sees it (the parameters kept, the operation's result returned); the async client's
    methods return an awaitable of that result.
    """

    @functools.wraps(fn)
    def method(self: OperationsBase, *args: Any, **kwargs: Any) -> Any:
        return self._run(fn(self, *args, **kwargs))  # type: ignore[arg-type]

    return cast(Callable[P, T], method)


def graphql(query: str, *, idempotent: bool, uploads: Mapping[str, Upload] | None = None, **variables: Any) -> Call:
    """The GraphQL request ``query`` with ``variables``; ``idempotent``: whether it may be sent again after a
    connection failure; ``uploads``: files sent as multipart parts, by variable path."""
    return Call(query=query, variables=dict(variables), uploads=dict(uploads or {}), idempotent=idempotent)


class OperationsBase:
    """What the operation mixins share: the client runs their generators."""

    def _run(self, operation: Operation[Any]) -> Any:  # pragma: no cover - each client defines it
        raise NotImplementedError
