"""The claim loop: with the engine token, claim the engine's tasks (up to ``parallel`` at once) and run each as
:class:`~engineshed.engine.task.TaskRun` does; on Ctrl-C or SIGTERM stop claiming and hand back what it holds.

>>> runner = Runner(load_engine("my_engine:Engine"), url="http://127.0.0.1:8000", token=engine_token,
...                 engine_id="my-engine")                                                   # doctest: +SKIP
>>> asyncio.run(runner.serve())                                                             # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any

import httpx

from engineshed.client.errors import ConnectionFailed, ServiceUnavailableError
from engineshed.client.transport import RetryPolicy
from engineshed.engine.api import Limits, Session
from engineshed.engine.loader import LoadedEngine
from engineshed.engine.task import MAX_HEARTBEAT_SECONDS, Outcome, TaskRun

log = logging.getLogger("engineshed.engine")

CLAIM = """mutation($e: ID!, $n: Int) { claimTasks(engineId: $e, limit: $n) {
    token leaseExpiresDateTime task { id jobId engineId payload attempts } } }"""
MAX_IDLE_BACKOFF = 30.0


class Runner:
    """Runs an engine's tasks. ``token``: an engine token of ``engine_id``; ``parallel``: tasks at once (the engine's
    ``concurrencyLimit`` still bounds it on the server); ``poll_seconds``: the wait between claims that found nothing;
    ``transport``: an httpx transport for every request (a proxy, a test's fault injector)."""

    def __init__(self, engine: LoadedEngine, *, url: str, token: str, engine_id: str, limits: Limits | None = None,
                 retry: RetryPolicy | None = None, parallel: int = 1, poll_seconds: float = 2.0,
                 max_heartbeat_seconds: float = MAX_HEARTBEAT_SECONDS, transport: httpx.AsyncBaseTransport | None = None) -> None:
        if parallel < 1:
            raise ValueError(f"parallel must be at least 1, not {parallel!r}")
        self.engine = engine
        self.url = url
        self.token = token
        self.engine_id = engine_id
        self.limits = limits or Limits()
        self.retry = retry or RetryPolicy()
        self.parallel = parallel
        self.poll_seconds = poll_seconds
        self.max_heartbeat_seconds = max_heartbeat_seconds
        self.transport = transport
        self.outcomes: list[Outcome] = []
        self.interrupted = False
        self._stop = asyncio.Event()
        self._running: dict[str, asyncio.Task[Outcome]] = {}
        self._wake = asyncio.Event()

    def stop(self) -> None:
        """Stop claiming, and hand back the tasks being worked on (their claims are released at once)."""
        self.interrupted = True
        self._stop.set()
        for task in self._running.values():
            task.cancel()

    async def run(self, *, max_tasks: int | None = None) -> list[Outcome]:
        """Claim and run tasks until :meth:`stop`, or until ``max_tasks`` were run; what became of each of them.

        A token or engine the server refuses raises the client's error (AuthenticationError, NotFoundError,
        NotAllowedError): nothing would change by trying again."""
        session = Session(self.url, limits=self.limits, retry=self.retry, transport=self.transport)
        api = session.api(self.token)
        claimed_count = 0
        first = len(self.outcomes)
        idle = self.poll_seconds
        try:
            while not self._stop.is_set():
                if max_tasks is not None and claimed_count >= max_tasks:
                    break
                room = self.parallel - len(self._running)
                if max_tasks is not None:
                    room = min(room, max_tasks - claimed_count)
                claimed: list[dict[str, Any]] = []
                if room > 0:
                    try:
                        claimed = (await api.query(CLAIM, e=self.engine_id, n=room))["claimTasks"]
                        idle = self.poll_seconds
                    except (ConnectionFailed, ServiceUnavailableError) as exc:
                        log.warning("claiming failed (%s); trying again in %.0fs", exc, idle)
                        idle = min(MAX_IDLE_BACKOFF, idle * 2)
                for item in claimed:
                    claimed_count += 1
                    run = TaskRun(self.engine, session, item, max_heartbeat=self.max_heartbeat_seconds)
                    log.info("claimed task %s (job %s)", run.task_id, item["task"].get("jobId"))
                    task = asyncio.create_task(run.run(), name=f"task-{run.task_id}")
                    self._running[run.task_id] = task
                    task.add_done_callback(lambda t, tid=run.task_id: self._finished(tid, t))
                if claimed and len(self._running) < self.parallel:
                    continue  # room for more: claim again at once
                self._wake.clear()
                await self._pause(None if len(self._running) >= self.parallel else idle)
            if self._running:
                await asyncio.gather(*self._running.values(), return_exceptions=True)
        finally:
            await session.close()
        return self.outcomes[first:]

    def _finished(self, task_id: str, task: asyncio.Task[Outcome]) -> None:
        self._running.pop(task_id, None)
        if task.cancelled():
            self.outcomes.append(Outcome(task_id, None, "released"))
        elif task.exception() is not None:
            error = task.exception()
            log.error("task %s: %s", task_id, error)
            self.outcomes.append(Outcome(task_id, None, "failed", str(error)))
        else:
            self.outcomes.append(task.result())
        self._wake.set()

    async def _pause(self, seconds: float | None) -> None:
        """Wait for a stop, a finished task (when full), or the poll interval (when idle)."""
        waits = [asyncio.ensure_future(self._stop.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def serve(self, *, max_tasks: int | None = None) -> list[Outcome]:
        """:meth:`run` with Ctrl-C and SIGTERM handled: the first stops and releases the claims; a second exits at once."""
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)

        def on_signal() -> None:
            if self.interrupted:
                os._exit(130)
            log.info("stopping: releasing %d task(s); press Ctrl-C again to quit at once", len(self._running))
            self.stop()

        for number in signals:
            loop.add_signal_handler(number, on_signal)
        try:
            return await self.run(max_tasks=max_tasks)
        finally:
            for number in signals:
                loop.remove_signal_handler(number)

