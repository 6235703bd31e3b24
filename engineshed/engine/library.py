"""What a ``train`` function receives: the library (its entities and their identifiers, read through the API page by
page) and the model being trained (its IDs, its config, progress and cancellation).

Every method has a blocking form for a plain ``def train`` (which runs in a thread of its own) and an awaitable one
for ``async def train``: ``identifier.read()`` / ``await identifier.aread()``, ``for`` / ``async for`` over
``library.files()``. Reading a file or reporting progress after the job was cancelled raises :class:`Cancelled`,
so an engine that reads its data or reports progress stops promptly without checking anything itself.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from engineshed.engine.api import Session

T = TypeVar("T")


class Cancelled(Exception):
    """The job was cancelled while the engine trained: stop. The runner reports it; nothing else is needed."""


class TrainingFailed(Exception):
    """Raise it to fail the training with ``message`` (stored as the model's ``jsondata.error``).

    ``retry``: the cause may pass (a service the engine needs is down): the task goes back to the queue while
    attempts remain, instead of failing for good."""

    def __init__(self, message: str, *, retry: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retry = retry


@dataclass(frozen=True, slots=True)
class Artifact:
    """What ``train`` returns: the trained model's file (bytes or a path, streamed) with its content type, and the
    metadata stored as the model's ``jsondata``. A web-API engine that keeps its model elsewhere returns jsondata
    alone (``Artifact(jsondata={"collectionId": ...})``). The mapping from the engine's own IDs back to entity and
    identifier IDs belongs in one of them, so that what the engine recognizes later names library objects."""

    data: bytes | Path | None = None
    content_type: str = "application/octet-stream"
    jsondata: dict[str, Any] = field(default_factory=dict)
    filename: str = "model.bin"
    accuracy: float | None = None

    @classmethod
    def of(cls, value: Any) -> Artifact:
        """An Artifact from what ``train`` returned: an Artifact, bytes, a path, or a dict (jsondata alone)."""
        if isinstance(value, Artifact):
            return value
        if isinstance(value, (bytes, bytearray, memoryview)):
            return cls(data=bytes(value))
        if isinstance(value, Path):
            return cls(data=value, filename=value.name)
        if isinstance(value, dict):
            return cls(jsondata=value)
        raise TrainingFailed(
            f"train returned {'nothing' if value is None else type(value).__name__}: return an Artifact "
            "(the model file with its content type, and jsondata), bytes, a pathlib.Path, or a dict of jsondata")


class _Bridge:
    """Runs the library's coroutines on the runner's event loop, from the train thread or the loop itself."""

    def __init__(self, loop: asyncio.AbstractEventLoop, session: Session, cancelled: threading.Event) -> None:
        self.loop = loop
        self.session = session
        self.cancelled = cancelled

    def check(self) -> None:
        if self.cancelled.is_set():
            raise Cancelled("the training job was cancelled")

    def wait(self, coroutine: Awaitable[T]) -> T:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            close = getattr(coroutine, "close", None)
            if close is not None:
                close()
            raise RuntimeError("this is the blocking form, for a plain `def train`; in `async def train` await the "
                               "a-prefixed form (await identifier.aread(), async for ... in library.files())")
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Identifier:
    """One file of an entity: a face photo, an image, a recording. ``url`` is where its content can be read."""

    id: str
    entity_id: str
    identifier_type_id: str
    url: str | None
    content_type: str | None
    title: str | None
    jsondata: Any
    _bridge: _Bridge = field(repr=False, compare=False)

    async def stream(self) -> AsyncIterator[bytes]:
        """The file in chunks, without holding it whole."""
        if not self.url:
            raise TrainingFailed(f"identifier {self.id} has no url to read")
        self._bridge.check()
        async with self._bridge.session.slots:
            async for chunk in self._bridge.session.stream(self.url):
                yield chunk

    async def aread(self) -> bytes:
        self._bridge.check()
        if not self.url:
            raise TrainingFailed(f"identifier {self.id} has no url to read")
        async with self._bridge.session.slots:
            return await self._bridge.session.read(self.url)

    def read(self) -> bytes:
        """The whole file (from a plain ``def train``)."""
        return self._bridge.wait(self.aread())


@dataclass(frozen=True, slots=True)
class Entity:
    """A person, an object or a speaker of the library, with the identifiers the engine consumes."""

    id: str
    name: str
    jsondata: Any
    identifiers: tuple[Identifier, ...]


class Files:
    """The library's identifiers with their content, in order, fetched a few at a time ahead of the reader
    (``Limits.concurrency``); iterate with ``for`` in a plain ``def train`` or ``async for`` in an async one.
    Each file read moves the task's progress along, up to ``share`` of the whole."""

    def __init__(self, identifiers: list[Identifier], bridge: _Bridge, model: Model, share: float) -> None:
        self._identifiers = identifiers
        self._bridge = bridge
        self._model = model
        self._share = share

    def __len__(self) -> int:
        return len(self._identifiers)

    async def _generate(self) -> AsyncIterator[tuple[Identifier, bytes]]:
        ahead = self._bridge.session.limits.concurrency
        pending: list[asyncio.Task[bytes]] = []
        total = len(self._identifiers)
        position = 0
        try:
            for index in range(total):
                while position < total and len(pending) < ahead:
                    pending.append(asyncio.ensure_future(self._identifiers[position].aread()))
                    position += 1
                data = await pending.pop(0)
                self._model.progress(self._share * (index + 1) / total, f"read {index + 1} of {total} files")
                yield self._identifiers[index], data
        finally:
            for task in pending:
                task.cancel()

    def __aiter__(self) -> AsyncIterator[tuple[Identifier, bytes]]:
        return self._generate()

    def __iter__(self) -> Iterator[tuple[Identifier, bytes]]:
        generator = self._generate()
        done = object()

        async def step() -> Any:
            try:
                return await generator.__anext__()
            except StopAsyncIteration:
                return done

        try:
            while (item := self._bridge.wait(step())) is not done:
                yield item
        finally:
            self._bridge.wait(generator.aclose())


@dataclass(frozen=True, slots=True)
class Library:
    """The library a task trains on, as read for this task (entities that have identifiers of the engine's types)."""

    id: str
    name: str
    version: int | None
    identifier_type_ids: tuple[str, ...]
    entities: tuple[Entity, ...]
    _bridge: _Bridge = field(repr=False, compare=False)
    _model: Model = field(repr=False, compare=False)

    def identifiers(self) -> list[Identifier]:
        return [identifier for entity in self.entities for identifier in entity.identifiers]

    def entity(self, entity_id: str) -> Entity:
        return next(e for e in self.entities if e.id == entity_id)

    def files(self, *, share: float = 0.8) -> Files:
        """Every identifier with its content (``for identifier, data in library.files()``)."""
        return Files(self.identifiers(), self._bridge, self._model, share)


class Model:
    """The library engine model being trained: its IDs, the job's config, progress and cancellation."""

    def __init__(self, *, id: str, library_id: str, engine_id: str, task_id: str, job_id: str, config: dict[str, Any],
                 cancelled: threading.Event) -> None:
        self.id = id
        self.library_id = library_id
        self.engine_id = engine_id
        self.task_id = task_id
        self.job_id = job_id
        self.config = config
        self._cancelled = cancelled
        self._lock = threading.Lock()
        self._progress: tuple[float, str | None] | None = None

    def __repr__(self) -> str:
        return f"Model(id={self.id!r}, library_id={self.library_id!r}, engine_id={self.engine_id!r})"

    @property
    def cancelled(self) -> bool:
        """Whether the job was cancelled: a long computation that reads nothing should look now and then."""
        return self._cancelled.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if the job was cancelled."""
        if self._cancelled.is_set():
            raise Cancelled("the training job was cancelled")

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress (0 to 1); sent with the next heartbeat. Raises :class:`Cancelled` after a cancel."""
        self.check()
        with self._lock:
            self._progress = (min(1.0, max(0.0, float(fraction))), message)

    def take_progress(self) -> tuple[float, str | None] | None:
        with self._lock:
            reported, self._progress = self._progress, None
        return reported
