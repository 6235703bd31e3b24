"""Gauges computed when /metrics is read: the queue per engine and the system models' pull state, from PostgreSQL.

Every process of every machine sees the same queue, so these are not per-process values: the process that
serves /metrics asks PostgreSQL once per scrape, on a connection of its own (the scrape runs on a thread of its
own, outside any event loop), and says so in ``engineshed_scrape_database_up`` when it cannot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import asyncpg
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.services.models.pull.catalogue import CATALOGUE
from storage.db import connection_name
from storage.queries import jobs as job_q
from storage.queries import models as model_q

log = logging.getLogger(__name__)

PULL_STATES = ("pending", "pulling", "ready", "failed")
# A version being validated is a pull that has not finished; a model with no version has not been pulled yet.
_FROM_STATUS = {"validating": "pulling", "ready": "ready", "failed": "failed"}
TIMEOUT_SECONDS = 5.0


async def _read(database_url: str) -> tuple[list[asyncpg.Record], dict[str, str]]:
    conn = await asyncpg.connect(database_url, timeout=TIMEOUT_SECONDS,
                                 server_settings={"application_name": connection_name("metrics")})
    try:
        queue = await job_q.queue_stats(conn)
        states = await model_q.system_model_states(conn, sorted(CATALOGUE))
    finally:
        await conn.close()
    return queue, states


class DatabaseCollector(Collector):
    """The queue depth, oldest waiting task and running tasks per engine, and each system model's pull state."""

    def __init__(self, database_url: str | None) -> None:
        self.database_url = database_url

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("engineshed_scrape_database_up", "1 when the queue gauges could be read from PostgreSQL")
        try:
            if not self.database_url:
                raise RuntimeError("no DATABASE_URL")
            queue, states = asyncio.run(asyncio.wait_for(_read(self.database_url), TIMEOUT_SECONDS * 2))
        except Exception as exc:  # a scrape answers even when PostgreSQL does not
            log.warning("metrics: the queue could not be read: %r", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        depth = GaugeMetricFamily("engineshed_queue_depth", "Tasks waiting to be claimed, by engine", labels=["engine"])
        oldest = GaugeMetricFamily("engineshed_queue_oldest_seconds",
                                   "How long the oldest waiting task has waited, by engine (0: none waits)",
                                   labels=["engine"])
        running = GaugeMetricFamily("engineshed_tasks_running", "Tasks running now, by engine", labels=["engine"])
        for row in queue:
            depth.add_metric([row["engine_id"]], row["queued"])
            oldest.add_metric([row["engine_id"]], row["oldest_seconds"])
            running.add_metric([row["engine_id"]], row["running"])
        yield from (depth, oldest, running)
        pull = GaugeMetricFamily("engineshed_model_pull_state",
                                 "1 for each system model's current state (pending, pulling, ready, failed)",
                                 labels=["model", "state"])
        for name in sorted(CATALOGUE):
            current = _FROM_STATUS.get(states.get(name, ""), "pending")
            for state in PULL_STATES:
                pull.add_metric([name, state], 1 if state == current else 0)
        yield pull
