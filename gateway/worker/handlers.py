"""Which handler runs a task, by the engine id it is queued under: one table, so the worker claims exactly the
engines it can run and never branches on an id.

Installed engines (engines.registry) train and recognize (gateway.worker.engine_tasks); the built-in engines
every worker serves run labeling tasks (gateway.worker.labeling) and generateEmbeddings tasks
(gateway.worker.embedding). Model trials are not tasks: they have their own queue (gateway.worker.trials).
"""

from __future__ import annotations

import concurrent.futures
import functools
from collections.abc import Mapping

from engines.interface import Engine
from gateway.services.queue import builtin
from gateway.worker import embedding, labeling
from gateway.worker.embedding import EmbeddingIngest
from gateway.worker.engine_tasks import EngineTasks
from gateway.worker.runner import Handler


def handler_table(
    engines: Mapping[str, Engine], decode_pool: concurrent.futures.Executor, ingest: EmbeddingIngest,
) -> dict[str, Handler]:
    """{engine id: handler}, installed engines first: the order the worker claims in."""
    table: dict[str, Handler] = {engine_id: EngineTasks(engine, decode_pool) for engine_id, engine in engines.items()}
    table[builtin.LABELING] = functools.partial(labeling.run_task, decode_pool)
    table[builtin.EMBEDDINGS] = functools.partial(embedding.run_task, ingest)
    return table
