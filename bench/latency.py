"""Latency and throughput of API calls: GraphQL reads (one gateway process against N), recognize, and
createJob → running."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bench.client import Client
from bench.images import make_image
from bench.processes import answering_pids
from bench.scenarios import FINAL, TASK_FULL, Library, bounded, parse_time, start_training, wait_task
from bench.stack import BenchError
from bench.stats import ratio, summary_ms
from sampledata.published import published_operation

async def latency_run(
    requests: int, concurrency: int, call: Callable[[], Awaitable[Any]], warmup: int = 5
) -> dict[str, Any]:
    """``requests`` calls with ``concurrency`` clients in flight: latency percentiles and calls/s."""
    for _ in range(warmup):
        await call()
    latencies: list[float] = []

    async def one(_: int) -> None:
        t = time.perf_counter()
        await call()
        latencies.append(time.perf_counter() - t)

    started = time.perf_counter()
    await bounded(list(range(requests)), concurrency, one)
    wall = time.perf_counter() - started
    result: dict[str, Any] = {"concurrency": concurrency, **summary_ms(latencies)}
    result["per_second"] = round(requests / wall, 1)
    result["wall_s"] = round(wall, 3)
    return result


async def reads(client: Client, library_id: str, requests: int, levels: Sequence[int]) -> dict[str, Any]:
    operation = published_operation(library_id)
    sql: dict[str, Any] = {}
    for limit in (5, 30):
        # The first request of a token also authenticates it (cached afterwards): count the second.
        first = await client.query(operation, identifierTypeId="face", limit=limit)
        first.ok()
        reply = await client.query(operation, identifierTypeId="face", limit=limit)
        data = reply.ok()
        entities = data["library"]["entities"]
        sql[str(limit)] = {
            "sql_statements": reply.sql_statements,
            "sql_statements_first_request": first.sql_statements,
            "entities": entities["count"],
            "identifiers": sum(e["identifiers"]["count"] for e in entities["records"]),
        }

    async def call() -> None:
        reply = await client.query(operation, identifierTypeId="face", limit=30)
        reply.ok()

    latency = {str(c): await latency_run(requests, c, call) for c in levels}
    return {"page_size_for_latency": 30, "latency": latency, "sql_per_request": sql}


async def reads_by_processes(
    gateways: dict[int, str], token: str, library_id: str, requests: int, concurrency: int = 32, rounds: int = 3
) -> dict[str, Any]:
    """GetIdentifiers pages with ``concurrency`` clients against gateways of 1 and N processes (same database
    and S3, same library), alternating ``rounds`` times so that a slow minute of the machine hits both."""
    import psutil

    operation = published_operation(library_id)
    runs: dict[str, list[dict[str, Any]]] = {str(n): [] for n in gateways}
    pids: dict[str, set[int]] = {}
    for n, url in gateways.items():
        pids[str(n)] = await answering_pids(url, n)
    seen = {n: len(p) for n, p in pids.items()}
    me = psutil.Process()

    def cpu_seconds(processes: list[psutil.Process]) -> float:
        total = 0.0
        for proc in processes:
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total

    def machine_busy() -> float:
        times = psutil.cpu_times()
        return sum(times) - times.idle - getattr(times, "iowait", 0.0)

    for _ in range(rounds):
        for n, url in gateways.items():
            servers = [psutil.Process(pid) for pid in pids[str(n)]]
            client = Client(url, token, connections=max(64, concurrency))
            try:
                async def call(client: Client = client) -> None:
                    (await client.query(operation, identifierTypeId="face", limit=30)).ok()

                for _ in range(2 * n + 5):  # warm-up: every process parses and validates the query once
                    await call()
                before = (cpu_seconds(servers), cpu_seconds([me]), machine_busy())
                run = await latency_run(requests, concurrency, call, warmup=0)
                after = (cpu_seconds(servers), cpu_seconds([me]), machine_busy())
            finally:
                await client.aclose()
            # Where the cores went during the run: the gateway processes, the bench's own clients, everything.
            wall = run["wall_s"]
            run["gateway_busy_cores"] = round((after[0] - before[0]) / wall, 2)
            run["client_busy_cores"] = round((after[1] - before[1]) / wall, 2)
            run["machine_busy_cores"] = round((after[2] - before[2]) / wall, 2)
            run["per_gateway_core"] = round(run["per_second"] / run["gateway_busy_cores"], 1) if run["gateway_busy_cores"] else None
            runs[str(n)].append(run)
    levels = {}
    for n, level_runs in runs.items():
        rates = sorted(r["per_second"] for r in level_runs)
        levels[n] = {
            "processes": int(n),
            "processes_answering": seen[n],
            "per_second": rates[len(rates) // 2] if len(rates) % 2 else round(sum(rates) / len(rates), 1),
            "p50_ms": sorted(r["p50_ms"] for r in level_runs)[len(level_runs) // 2],
            "gateway_busy_cores": sorted(r["gateway_busy_cores"] for r in level_runs)[len(level_runs) // 2],
            "per_gateway_core": sorted(r["per_gateway_core"] or 0 for r in level_runs)[len(level_runs) // 2],
            "runs": level_runs,
        }
    one, many = min(gateways), max(gateways)
    return {
        "concurrency": concurrency,
        "requests_per_run": requests,
        "rounds": rounds,
        "page_size": 30,
        "levels": levels,
        "cpu_count": psutil.cpu_count(),
        "n_over_1": round(ratio(levels[str(many)]["per_second"], levels[str(one)]["per_second"]) or 0, 3),
    }


async def recognize(client: Client, model_id: str, library: Library, calls: int, batch_calls: int, concurrency: int) -> dict[str, Any]:
    query = f'query {{ recognize(libraryEngineModelId: "{model_id}", topK: 1) {{ matches {{ entityId score }} }} }}'
    # Fresh images of known entities (never uploaded), so every call does the full work.
    images = [make_image(library.entity_seeds[i % len(library.entity_ids)], 10_000 + i) for i in range(max(calls, batch_calls) + 10)]
    counter = iter(range(10**9))
    hits = 0

    async def call() -> None:
        nonlocal hits
        data, content_type = images[next(counter) % len(images)]
        matches = (await client.upload_form(query, data, content_type)).ok()["recognize"]["matches"]
        hits += bool(matches)

    single = await latency_run(calls, 1, call, warmup=5)
    batch = await latency_run(batch_calls, concurrency, call, warmup=0)
    batch["images_per_s"] = batch.pop("per_second")
    return {"single": single, "batch": batch, "calls_with_a_match": hits}


async def dispatch(client: Client, library_id: str, jobs: int, poll_interval: float, timeout: float) -> dict[str, Any]:
    """createJob → task running, one job at a time on an idle worker."""
    observed: list[float] = []
    server: list[float] = []
    missed_running = 0
    for _ in range(jobs):
        await asyncio.sleep(0.05)  # the worker is back waiting for work
        _, task_id, t0 = await start_training(client, library_id)
        status, t_seen = await wait_task(client, task_id, interval=poll_interval, timeout=timeout, until=("running",))
        observed.append(t_seen - t0)
        if status != "running":
            missed_running += 1
        if status not in FINAL:
            status, _ = await wait_task(client, task_id, interval=0.01, timeout=timeout)
        task = (await client.data(TASK_FULL, id=task_id))["task"]
        if status != "complete":
            raise BenchError(f"dispatch job {task_id} ended {status}: {task.get('failureMessage')}")
        created, started = parse_time(task["createdDateTime"]), parse_time(task["startedDateTime"])
        if created and started:
            server.append((started - created).total_seconds())
    return {
        "jobs": jobs,
        "poll_interval_ms": poll_interval * 1000,
        "client_observed": summary_ms(observed),
        "server_timestamps": summary_ms(server),
        "already_past_running_when_seen": missed_running,
    }
