"""Fans task-change notifications from PostgreSQL out to this process's subscribers."""

from __future__ import annotations

import asyncio
from collections import defaultdict


class EventHub:
    """Subscribers get a queue per job; the LISTEN callback puts a marker in each on every change."""

    def __init__(self) -> None:
        self._queues: dict[str, set[asyncio.Queue[None]]] = defaultdict(set)

    def subscribe(self, job_id: str) -> asyncio.Queue[None]:
        queue: asyncio.Queue[None] = asyncio.Queue(maxsize=100)
        self._queues[job_id].add(queue)
        return queue

    def unsubscribe(self, job_id: str, queue: asyncio.Queue[None]) -> None:
        queues = self._queues.get(job_id)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self._queues[job_id]

    def publish(self, _channel: str, job_id: str) -> None:
        for queue in self._queues.get(job_id, ()):
            if not queue.full():  # a full queue already means "something changed"
                queue.put_nowait(None)
