"""The worker process: claims tasks of its installed engines, runs them, keeps the queue healthy.

Wakes on NOTIFY when work arrives, polls as the fallback, and every few seconds also reaps tasks whose
worker died and deletes S3 objects whose rows are gone. SIGTERM/SIGINT: stop claiming, hand running
tasks back to the queue, exit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import time
import uuid

from engines.runtime import provider_summary
from gateway.observability.process import observed
from gateway.resources import Resources, open_resources
from gateway.services import housekeeping
from gateway.services.queue import dispatch
from gateway.settings import Settings
from gateway.worker.embedding import EmbeddingIngest
from gateway.worker.errors import TRANSIENT
from gateway.worker.handlers import handler_table
from gateway.worker.runner import TaskRun
from gateway.worker.trials import Trials
from gateway.worker.webhooks import WebhookSender
from storage.db import connection_name, listen
from storage.queries.jobs import CANCEL_CHANNEL, WAKE_CHANNEL
from storage.queries.vectors import EMBED_CHANNEL

log = logging.getLogger("engineshed.worker")

HOUSEKEEPING_SECONDS = housekeeping.INTERVAL_SECONDS


class Worker:
    def __init__(self, res: Resources, decode_pool: concurrent.futures.Executor, owner: str) -> None:
        self.res = res
        self.owner = owner
        self.running: dict[uuid.UUID, TaskRun] = {}
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.ingest = EmbeddingIngest(res, decode_pool, owner)  # the embedding queue, beside the tasks
        self.handlers = handler_table(res.engines, decode_pool, self.ingest)
        self.trials = Trials(res, owner, self.wake.set)  # model trial inferences, beside the tasks

    def on_notify(self, channel: str, payload: str) -> None:
        if channel == EMBED_CHANNEL:
            self.ingest.wake.set()
        elif channel == CANCEL_CHANNEL:
            for task_id, run in self.running.items():
                if str(task_id) == payload:
                    run.wake.set()
        else:
            self.wake.set()

    async def claim_round(self) -> int:
        free = self.res.settings.worker_concurrency - len(self.running)
        claimed = 0
        for engine_id, handler in self.handlers.items():
            if free <= 0:
                break
            tasks = await dispatch.claim(
                self.res, engine_id, owner=self.owner, limit=free, lease_seconds=self.res.settings.lease_seconds
            )
            for task in tasks:
                run = TaskRun(self.res, self.owner, task, handler)
                self.running[task.id] = run
                job = asyncio.create_task(self._run(run))
                self._tasks.add(job)
                job.add_done_callback(self._tasks.discard)
            free -= len(tasks)
            claimed += len(tasks)
        if free > 0:
            claimed += await self.trials.claim_one()
        return claimed

    async def _run(self, run: TaskRun) -> None:
        with run.log_context():
            log.info("task %s (%s) started, attempt %d", run.task.id, run.task.engine_id, run.task.attempts)
            try:
                await run.run()
            finally:
                self.running.pop(run.task.id, None)
                self.wake.set()  # a slot is free

    async def loop(self) -> None:
        last_housekeeping = 0.0
        while not self.stopping.is_set():
            try:
                if time.monotonic() - last_housekeeping > HOUSEKEEPING_SECONDS:
                    last_housekeeping = time.monotonic()
                    await housekeeping.run_once(self.res)
                claimed = await self.claim_round()
            except TRANSIENT as exc:
                log.warning("database or S3 unavailable, retrying: %r", exc)
                claimed = 0
                await asyncio.sleep(1.0)
            except Exception:  # never let one bad round end the worker; the next round starts fresh
                log.exception("claim round failed")
                claimed = 0
                await asyncio.sleep(1.0)
            if claimed:
                continue  # more may be waiting
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=self.res.settings.poll_seconds)
            except asyncio.TimeoutError:
                pass
            self.wake.clear()

    async def shutdown(self) -> None:
        for run in list(self.running.values()):
            run.interrupt("shutdown")
        self.trials.cancel()
        if self._tasks or self.trials.running:
            await asyncio.wait(self._tasks | self.trials.running, timeout=15)


def make_decode_pool(settings: Settings) -> concurrent.futures.ProcessPoolExecutor:
    # Decoding is CPU-bound and GIL-bound in threads: processes. Spawn, because fork after threads and
    # an event loop are running is unsafe.
    processes = settings.decode_processes or os.cpu_count() or 2
    return concurrent.futures.ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn"))


async def run_worker(settings: Settings, *, worker_id: str | None = None) -> None:
    owner = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    loop = asyncio.get_running_loop()
    pool = make_decode_pool(settings)
    try:
        async with open_resources(settings, role="worker") as res, observed(settings, "worker", res.pool):
            worker = Worker(res, pool, owner)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, worker.stopping.set)
            async with listen(
                settings.database_url, [WAKE_CHANNEL, CANCEL_CHANNEL, EMBED_CHANNEL], worker.on_notify,
                application_name=connection_name("worker"),
            ):
                log.info("worker %s ready with engines: %s; %s", owner, ", ".join(sorted(res.engines)) or "none",
                         await asyncio.to_thread(provider_summary, settings.onnx_provider))
                ingest = asyncio.create_task(worker.ingest.loop(worker.stopping))
                # Webhook deliveries, beside the tasks; a try cut short by shutdown is retried once its lease ends.
                webhooks = asyncio.create_task(WebhookSender(res, owner).loop(worker.stopping))
                main = asyncio.create_task(worker.loop())
                stop = asyncio.create_task(worker.stopping.wait())
                await asyncio.wait({main, stop}, return_when=asyncio.FIRST_COMPLETED)
                worker.stopping.set()
                worker.wake.set()
                await main
                # A batch cut short here is claimed again once its leases run out.
                ingest.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await ingest
                await worker.shutdown()
                webhooks.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await webhooks
            log.info("worker %s stopped", owner)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
